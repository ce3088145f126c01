"""TransformerLens interop: compiled, densified and trained model files <-> HookedTransformer, exactly.

The only module that imports ``transformer_lens`` (TransformerLens 3.9, whose ``HookedTransformer``
the 4.x line removed), and only inside :func:`to_hooked_transformer` / :func:`from_hooked_transformer`:
the exported directory is written and read without it.

Mapping (TransformerLens names; D = d_model, H heads of size K, M = MLP width):
- compiled (Tracr layout): ``token_embed/embeddings [V, D]`` -> ``embed.W_E``; ``pos_embed/embeddings``
  -> ``pos_embed.W_pos``; ``attn/{query,key,value}/w [D, H*K]`` -> ``W_{Q,K,V} [H, D, K]``, biases
  ``[H*K]`` -> ``[H, K]``; ``attn/linear/w [H*K, D]`` -> ``W_O [H, K, D]``; ``mlp/linear_1``, ``linear_2``
  -> ``mlp.W_in``, ``W_out``; the explicit ``unembed [D, O]`` -> ``unembed.W_U`` with ``b_U = 0`` (not
  TransformerLens's Tracr demo's identity, which is wrong unless the output variable sorts first).
  ReLU, no normalisation, ``d_head = key_size``; BOS is the model's own first input token.
- trained (``transformer/trained.py``): the parameters already carry TransformerLens's names and layouts;
  LayerNorm -> ``normalization_type="LN"``, GELU -> ``gelu_new`` (GPT-2's tanh approximation).
- causal -> ``attention_dir="causal"``, else ``"bidirectional"``; ``default_prepend_bos=False``
  (inputs carry their BOS, as our forward passes take them).

An exported directory holds ``model.safetensors`` (the HookedTransformer state dict, float32) and
``config.json``: ``{"format": "metamodels.transformer-lens", "transformer_lens": <config kwargs>,
"metamodels": <what our model file's header holds>}``, so import gives back identical tensors.
"""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from metamodels import artifacts
from metamodels.errors import MetamodelsError
from metamodels.transformer import modelfile, trained
from metamodels.transformer.compiled import CompiledModel
from metamodels.transformer.trained import TrainedModel

EXPORT_FORMAT = "metamodels.transformer-lens"
CONFIG, WEIGHTS = "config.json", "model.safetensors"
Model = CompiledModel | TrainedModel


class LensError(MetamodelsError):
    """A model or directory that cannot be expressed in (or read from) TransformerLens's layout."""


def lens_config(model: Model) -> dict[str, Any]:
    """``HookedTransformerConfig`` keyword arguments of ``model``."""
    if isinstance(model, TrainedModel):
        c = model.config
        norm, act = ("LN" if c.norm == "layernorm" else None), ("gelu_new" if c.activation == "gelu" else "relu")
        shapes = c.shapes()
        d_vocab, n_ctx = shapes["embed.W_E"][0], shapes["pos_embed.W_pos"][0]
        sizes = dict(n_layers=c.n_layers, d_model=c.d_model, d_head=c.d_head, n_heads=c.n_heads, d_mlp=c.d_mlp,
                     d_vocab=d_vocab, d_vocab_out=len(c.output_vocab), n_ctx=n_ctx)  # fmt: skip
        causal = c.causal
    else:
        if model.mlp_hidden < 1:
            raise LensError("a compiled model without MLP units has no TransformerLens form (d_mlp must be >= 1)")
        norm, act, causal = None, "relu", model.settings.causal
        sizes = dict(n_layers=model.n_layers, d_model=model.d_model, d_head=model.key_size, n_heads=model.n_heads,
                     d_mlp=model.mlp_hidden, d_vocab=len(model.input_values),
                     d_vocab_out=model.params["unembed"].shape[1], n_ctx=model.settings.max_seq_len + 1)  # fmt: skip
    return {**sizes, "act_fn": act, "normalization_type": norm, "attention_dir": "causal" if causal else "bidirectional",
            "positional_embedding_type": "standard", "default_prepend_bos": False, "eps": trained.LN_EPS}  # fmt: skip


def lens_state(model: Model) -> dict[str, np.ndarray]:
    """``model``'s parameters under TransformerLens state-dict names and layouts (float32)."""
    if isinstance(model, TrainedModel):
        return {k: np.asarray(v, dtype=np.float32) for k, v in model.params.items()}
    h, k, p = model.n_heads, model.key_size, model.params
    out = {"embed.W_E": p["token_embed/embeddings"], "pos_embed.W_pos": p["pos_embed/embeddings"]}
    for layer in range(model.n_layers):
        b, get = f"blocks.{layer}.", lambda key: model.layer(layer, key)  # noqa: B023 - used in this iteration
        for ours, x in (("query", "Q"), ("key", "K"), ("value", "V")):
            out[b + f"attn.W_{x}"] = get(f"attn/{ours}/w").reshape(-1, h, k).transpose(1, 0, 2)
            out[b + f"attn.b_{x}"] = get(f"attn/{ours}/b").reshape(h, k)
        out[b + "attn.W_O"] = get("attn/linear/w").reshape(h, k, -1)
        out[b + "attn.b_O"] = get("attn/linear/b")
        out |= {b + "mlp.W_in": get("mlp/linear_1/w"), b + "mlp.b_in": get("mlp/linear_1/b"),
                b + "mlp.W_out": get("mlp/linear_2/w"), b + "mlp.b_out": get("mlp/linear_2/b")}  # fmt: skip
    out |= {"unembed.W_U": p["unembed"], "unembed.b_U": np.zeros(p["unembed"].shape[1], dtype=np.float32)}
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in out.items()}


def from_lens_state(state: dict[str, np.ndarray], header: dict) -> Model:
    """Our model from a TransformerLens state dict and the model-file header it was exported with."""
    state = {k: v for k, v in state.items() if not k.endswith(("attn.mask", "attn.IGNORE"))}  # buffers
    if header.get("format") == modelfile.TRAINED_FORMAT:
        return modelfile.from_header(header, dict(state), "TransformerLens state")
    config = json.loads(header["config"])
    h, k = int(config["n_heads"]), int(config["key_size"])
    params = {"token_embed/embeddings": state["embed.W_E"], "pos_embed/embeddings": state["pos_embed.W_pos"],
              "unembed": state["unembed.W_U"]}  # fmt: skip
    if np.any(state["unembed.b_U"]):
        raise LensError("a compiled model has no unembedding bias, but this one is non-zero")
    for layer in range(int(config["n_layers"])):
        b, ours = f"blocks.{layer}.", f"transformer/layer_{layer}/"
        for name, x in (("query", "Q"), ("key", "K"), ("value", "V")):
            params[ours + f"attn/{name}/w"] = state[b + f"attn.W_{x}"].transpose(1, 0, 2).reshape(-1, h * k)
            params[ours + f"attn/{name}/b"] = state[b + f"attn.b_{x}"].reshape(h * k)
        params[ours + "attn/linear/w"] = state[b + "attn.W_O"].reshape(h * k, -1)
        params[ours + "attn/linear/b"] = state[b + "attn.b_O"]
        params |= {ours + "mlp/linear_1/w": state[b + "mlp.W_in"], ours + "mlp/linear_1/b": state[b + "mlp.b_in"],
                   ours + "mlp/linear_2/w": state[b + "mlp.W_out"], ours + "mlp/linear_2/b": state[b + "mlp.b_out"]}  # fmt: skip
    params = {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in params.items()}
    return modelfile.from_header(header, params, "TransformerLens state")


def export(model: Model, out_dir: str | Path) -> Path:
    """Write ``model`` as a TransformerLens directory (state dict + config); returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = modelfile.header(model)
    config = {"format": EXPORT_FORMAT, "transformer_lens": lens_config(model), "metamodels": header}
    tensors = lens_state(model)
    artifacts.atomic_write(out / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    artifacts.write_text(out / CONFIG, json.dumps(config, indent=1))
    return out


def read_export(directory: str | Path) -> Model:
    """The model of an exported TransformerLens directory (LensError naming the file if it is not one)."""
    d = Path(directory)
    config = _read_json(d / CONFIG)
    if config.get("format") != EXPORT_FORMAT or not isinstance(config.get("metamodels"), dict):
        raise LensError(f"{d / CONFIG}: not a metamodels TransformerLens export (format {config.get('format')!r})")
    try:
        state = load_file(str(d / WEIGHTS))
    except (OSError, SafetensorError) as e:
        raise LensError(f"{d / WEIGHTS}: cannot read ({e})") from None
    try:
        return from_lens_state(state, config["metamodels"])
    except (KeyError, ValueError, json.JSONDecodeError) as e:
        raise LensError(f"{d / WEIGHTS}: does not match its config ({type(e).__name__}: {e})") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LensError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(data, dict):
        raise LensError(f"{path}: expected a JSON object")
    return data


def _lens() -> Any:
    try:
        import transformer_lens
    except ImportError:
        raise LensError('TransformerLens is not installed: pip install -e ".[lens]" (TransformerLens 3.9)') from None
    if not hasattr(transformer_lens, "HookedTransformer"):
        version = importlib.metadata.version("transformer-lens")
        raise LensError(f"TransformerLens {version} has no HookedTransformer (use 3.9)")
    return transformer_lens


def to_hooked_transformer(model: Model) -> Any:
    """A ``HookedTransformer`` computing exactly ``model`` (float32, CPU); our header in ``.metamodels``."""
    import torch

    tl = _lens()
    with warnings.catch_warnings():  # 3.9 deprecates HookedTransformer in favour of 4.x's TransformerBridge
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        ht = tl.HookedTransformer(tl.HookedTransformerConfig(**lens_config(model), device="cpu", dtype=torch.float32))
    state = {k: torch.from_numpy(v.copy()) for k, v in lens_state(model).items()}
    missing, unexpected = ht.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith(("attn.mask", "attn.IGNORE"))]
    if missing or unexpected:
        raise LensError(f"TransformerLens layout mismatch: missing {missing[:4]}, unexpected {unexpected[:4]}")
    ht.metamodels = modelfile.header(model)
    return ht


def from_hooked_transformer(ht: Any, header: dict | None = None) -> Model:
    """Our model from a HookedTransformer made by :func:`to_hooked_transformer` (or with that ``header``)."""
    header = header or getattr(ht, "metamodels", None)
    if header is None:
        raise LensError("this HookedTransformer carries no metamodels header (vocabularies, settings); pass one")
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in ht.state_dict().items()}
    return from_lens_state(state, header)


def residual_stream(ht: Any, ids: np.ndarray) -> list[np.ndarray]:
    """TransformerLens's residual stream of token ids ``[B, T]``: after the embedding and every sublayer.

    ``[B, T, D]`` arrays in the order of :func:`metamodels.transformer.forward.residuals` (1 + 2 n_layers).
    """
    import torch

    _, cache = ht.run_with_cache(torch.from_numpy(np.asarray(ids, dtype=np.int64)))
    out = [cache["blocks.0.hook_resid_pre"]]
    for layer in range(ht.cfg.n_layers):
        out += [cache[f"blocks.{layer}.hook_resid_mid"], cache[f"blocks.{layer}.hook_resid_post"]]
    return [x.detach().numpy() for x in out]
