"""Hugging Face GPT-2-style checkpoints (``config.json`` + ``model.safetensors``) read as trained models.

No ``transformers`` at run time: the config and the tensors are read directly. GPT-2's layout:
``wte [V, D]`` (tied to the LM head unless ``lm_head.weight`` is present), ``wpe [n_positions, D]``,
per block ``ln_1``, ``attn.c_attn`` (a Conv1D ``[D, 3D]``: Q, K and V side by side, split here into
heads), ``attn.c_proj [D, D]``, ``ln_2``, ``mlp.c_fc [D, M]``, ``mlp.c_proj [M, D]``; ``ln_f``.
Pre-LayerNorm, causal, activation ``gelu_new`` (GPT-2's tanh GELU) or ``relu``. The result is a
:class:`~metamodels.transformer.trained.TrainedModel` without a prepended BOS (the checkpoint's
own vocabulary holds whatever BOS it was trained with) whose classifier is the next-token head
over the same vocabulary. What our forward pass cannot express (another activation or LayerNorm
epsilon, attention scaled by layer index, ...) is refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from metamodels import options
from metamodels.errors import MetamodelsError
from metamodels.transformer import trained
from metamodels.transformer.trained import GPTConfig, TrainedModel

ACTIVATIONS: dict[str, Literal["relu", "gelu"]] = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}


class HuggingFaceError(MetamodelsError):
    """A checkpoint directory this reader cannot take; names the file and the reason."""


def is_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` looks like a Hugging Face GPT-2 checkpoint (its config says gpt2)."""
    try:
        return json.loads((Path(directory) / "config.json").read_text()).get("model_type") == "gpt2"
    except (OSError, ValueError, AttributeError):
        return False


def read_vocab(path: Path) -> tuple:
    """A token list file: one token per line, line ``i`` = token id ``i`` (numbers read as numbers)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HuggingFaceError(f"{path}: cannot read the token list ({e})") from None
    return tuple(options.parse_value(line) for line in lines)


def load_gpt2(directory: str | Path, vocab: tuple | None = None) -> TrainedModel:
    """The GPT-2 checkpoint in ``directory`` as a TrainedModel (``vocab``: token of each id; default the ids)."""
    d = Path(directory)
    config = _config(d / "config.json")
    try:
        state = load_file(str(d / "model.safetensors"))
    except (OSError, SafetensorError) as e:
        raise HuggingFaceError(f"{d / 'model.safetensors'}: cannot read ({e})") from None
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    D, H, L = int(config["n_embd"]), int(config["n_head"]), int(config["n_layer"])
    V, T = int(config["vocab_size"]), int(config.get("n_positions", config.get("n_ctx", 1024)))
    M = int(config.get("n_inner") or 4 * D)
    tokens = vocab if vocab is not None else tuple(range(V))
    if len(tokens) != V:
        raise HuggingFaceError(f"{d}: the token list has {len(tokens)} entries, the model's vocabulary {V}")
    spec = GPTConfig(d_model=D, n_layers=L, n_heads=H, d_mlp=M, activation=ACTIVATIONS[config["activation_function"]],
                     norm="layernorm", input_vocab=tokens, output_vocab=tokens, max_seq_len=T, causal=True,
                     prepend_bos=False)  # fmt: skip
    k = D // H
    try:
        p = {"embed.W_E": state["wte.weight"], "pos_embed.W_pos": state["wpe.weight"],
             "ln_final.w": state["ln_f.weight"], "ln_final.b": state["ln_f.bias"]}  # fmt: skip
        for layer in range(L):
            h, b = f"h.{layer}.", f"blocks.{layer}."
            w, bias = state[h + "attn.c_attn.weight"], state[h + "attn.c_attn.bias"]  # [D, 3D], [3D]
            for i, x in enumerate("QKV"):
                p[b + f"attn.W_{x}"] = w[:, i * D : (i + 1) * D].reshape(D, H, k).transpose(1, 0, 2)
                p[b + f"attn.b_{x}"] = bias[i * D : (i + 1) * D].reshape(H, k)
            p[b + "attn.W_O"] = state[h + "attn.c_proj.weight"].reshape(H, k, D)
            p[b + "attn.b_O"] = state[h + "attn.c_proj.bias"]
            for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
                p[b + f"{ours}.w"], p[b + f"{ours}.b"] = state[h + f"{theirs}.weight"], state[h + f"{theirs}.bias"]
            p[b + "mlp.W_in"], p[b + "mlp.b_in"] = state[h + "mlp.c_fc.weight"], state[h + "mlp.c_fc.bias"]
            p[b + "mlp.W_out"], p[b + "mlp.b_out"] = state[h + "mlp.c_proj.weight"], state[h + "mlp.c_proj.bias"]
    except KeyError as e:
        raise HuggingFaceError(f"{d / 'model.safetensors'}: missing tensor {e} of a GPT-2 checkpoint") from None
    head = state.get("lm_head.weight", state["wte.weight"])  # [V, D]; tied to wte unless stored
    p["unembed.W_U"], p["unembed.b_U"] = head.T, np.zeros(V, dtype=np.float32)
    params = {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in p.items()}
    try:
        return TrainedModel(spec, params, {"source": str(d), "format": "huggingface-gpt2"})
    except MetamodelsError as e:
        raise HuggingFaceError(f"{d}: {e}") from None


def _config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HuggingFaceError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        raise HuggingFaceError(f"{path}: not a GPT-2 config (model_type {config.get('model_type')!r})")
    act = config.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise HuggingFaceError(f"{path}: activation {act!r} is outside the spec (one of {sorted(ACTIVATIONS)})")
    if abs(float(config.get("layer_norm_epsilon", 1e-5)) - trained.LN_EPS) > 1e-12:
        raise HuggingFaceError(f"{path}: layer_norm_epsilon {config['layer_norm_epsilon']} (our forward uses 1e-5)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            raise HuggingFaceError(f"{path}: {flag} is not supported")
    if config.get("scale_attn_weights") is False:
        raise HuggingFaceError(f"{path}: unscaled attention (scale_attn_weights false) is not supported")
    return {**config, "activation_function": act}
