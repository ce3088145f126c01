"""numpy forward pass of a CompiledModel (no JAX), matching Tracr's model.

Sequences are run unpadded, batched by length: Tracr's compiled model does not
mask PAD, so padding would change numerical Aggregates that attend everywhere.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from metamodels.transformer import compiled, trained
from metamodels.transformer.compiled import CompiledModel, InputError, Value


def show(value: object) -> str:
    """A decoded output value as printed: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def encode(model: CompiledModel, tokens: Sequence[Value]) -> np.ndarray:
    """Token ids with BOS prepended: [len(tokens) + 1] int64."""
    settings = model.settings
    if len(tokens) > settings.max_seq_len:
        raise InputError(f"input has {len(tokens)} tokens; the model takes at most {settings.max_seq_len}")
    row = {value: i for i, value in enumerate(model.input_values)}
    unknown = [t for t in tokens if t not in row or t in (settings.bos, settings.pad)]
    if unknown:
        vocab = [v for v in model.input_values if v not in (settings.bos, settings.pad)]
        raise InputError(f"token(s) {unknown!r} not in the model's vocabulary {vocab!r}")
    return np.array([row[settings.bos]] + [row[t] for t in tokens], dtype=np.int64)


def parse_tokens(model: CompiledModel | trained.TrainedModel, words: Sequence[str]) -> list[Value]:
    """Input tokens typed as text (``3 1 2``, ``a b``) -> the model's vocabulary values; InputError if unknown."""
    vocab = model.config.input_vocab if isinstance(model, trained.TrainedModel) else model.settings.vocab
    by_text = {str(v): v for v in vocab}
    if unknown := [w for w in words if w not in by_text]:
        raise InputError(f"token(s) {unknown} not in the model's vocabulary {list(vocab)}")
    return [by_text[w] for w in words]


CHUNK = 2048  # sequences per forward batch: memory stays bounded however many inputs are run


def residuals(model: CompiledModel, ids: np.ndarray) -> list[np.ndarray]:
    """Residual stream after the embedding and after every sublayer.

    ids: [B, T] token ids (BOS first). Returns 1 + 2 * n_layers arrays of [B, T, D].
    """
    return list(_stream(model, ids))


def final_residual(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """The residual stream after the last sublayer, [B, T, D], holding one layer's activations at a time."""
    return collections.deque(_stream(model, ids), maxlen=1)[0]


def _stream(model: CompiledModel, ids: np.ndarray):
    """Yields the residual stream [B, T, D] after the embedding and after every sublayer."""
    b, t = ids.shape
    x = model.params["token_embed/embeddings"][ids] + model.params["pos_embed/embeddings"][np.arange(t)][None]
    yield x
    for layer in range(model.n_layers):
        p = {key: model.layer(layer, key) for key in compiled.LAYER_KEYS}
        weights, v = attention(model, layer, x)
        attn = np.einsum("bhtT,bThd->bthd", weights, v).reshape(b, t, model.n_heads * model.key_size)
        x = x + attn @ p["attn/linear/w"] + p["attn/linear/b"]
        yield x
        hidden = np.maximum(x @ p["mlp/linear_1/w"] + p["mlp/linear_1/b"], 0)
        x = x + hidden @ p["mlp/linear_2/w"] + p["mlp/linear_2/b"]
        yield x


def attention(model: CompiledModel, layer: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layer ``layer``'s attention on the residual stream x [B, T, D] (BOS first): (weights [B, H, T, T], value
    vectors [B, T, H, K]); causal models mask later keys."""
    b, t, _ = x.shape
    h, k = model.n_heads, model.key_size
    q, kk, v = ((x @ model.layer(layer, f"attn/{n}/w") + model.layer(layer, f"attn/{n}/b")).reshape(b, t, h, k)
                for n in ("query", "key", "value"))  # fmt: skip
    logits = np.einsum("bthd,bThd->bhtT", q, kk) / np.sqrt(k).astype(np.float32)  # [B, H, T, T]
    if model.settings.causal:
        logits = np.where(np.tril(np.ones((t, t), dtype=bool)), logits, np.float32(-1e30))
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights, v


def logits(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """Read-out of the final residual: ids [B, T] -> [B, T, O] (O = 1 for a numerical output)."""
    return final_residual(model, ids) @ model.params["unembed"]


def categorical_blocks(model: CompiledModel) -> list[np.ndarray]:
    """Residual directions of each categorical variable (labels ``name:value``), one index array per variable.

    Empty without residual labels (a model outside Tracr's basis).
    """
    blocks: dict[str, list[int]] = {}
    for i, label in enumerate(model.residual_labels or ()):
        name, sep, _ = label.partition(":")
        if sep:
            blocks.setdefault(name, []).append(i)
    return [np.asarray(b) for b in blocks.values()]


def well_defined(model: CompiledModel, final: np.ndarray) -> np.ndarray | None:
    """Per sequence, whether every categorical variable holds one clean value at every position.

    final: [B, T, D] final residual (BOS first). A categorical variable of a Tracr model is one-hot in its
    block; an Aggregate that averaged several different values, or selected nothing, leaves a fractional or
    empty block: the model itself is undefined there. Returns [B] bool, or None when the model has no
    residual labels (nothing can be said).
    """
    blocks = categorical_blocks(model)
    if not blocks:
        return None
    ok = np.ones(final.shape[0], dtype=bool)
    for block in blocks:
        values = np.abs(final[:, 1:, block])  # [B, T-1, |block|]
        top = values.max(axis=-1)
        ok &= ((top >= 0.9) & (values.sum(axis=-1) - top <= 0.1)).all(axis=-1)
    return ok


def decode(model: CompiledModel, scores: np.ndarray) -> list[list[Value]]:
    """Read-out scores [B, T, O] -> decoded values per sequence, BOS position dropped."""
    if model.output_encoding == "numerical":
        return [[float(v) for v in row[1:, 0]] for row in scores]
    return [[model.output_values[i] for i in row[1:]] for row in scores.argmax(-1)]


def run(model: CompiledModel | trained.TrainedModel, inputs: Sequence[Sequence[Value]]) -> list[list[Value]]:
    """Decoded outputs of the model (compiled or trained) on each input sequence (no BOS), in input order."""
    if isinstance(model, trained.TrainedModel):
        return trained.run(model, inputs)
    return _run(model, inputs, check=False)[0]


DECIDED = 0.01  # a categorical read-out decides where its top score leads by this (as densification.fidelity counts)


def run_checked(
    model: CompiledModel, inputs: Sequence[Sequence[Value]]
) -> tuple[list[list[Value]], list[bool | None], list[list[bool]]]:
    """(decoded outputs, :func:`well_defined` per input, per position whether the read-out decides a value) in
    input order. Deciding needs no residual labels: a Tracr model's categorical read-out is one-hot where the output
    is defined and empty where it is not; a numerical read-out always gives a number."""
    return _run(model, inputs, check=True)


def _run(
    model: CompiledModel, inputs: Sequence[Sequence[Value]], check: bool
) -> tuple[list[list[Value]], list[bool | None], list[list[bool]]]:
    """Batched by length, in chunks of :data:`CHUNK` sequences; ``check``: also :func:`well_defined` per input and
    the read-out's decided positions (else None and empty lists)."""
    results: list[list[Value] | None] = [None] * len(inputs)
    defined: list[bool | None] = [None] * len(inputs)
    decided: list[list[bool]] = [[] for _ in inputs]
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for same_length in by_length.values():
        for start in range(0, len(same_length), CHUNK):
            indices = same_length[start : start + CHUNK]
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                final = final_residual(model, np.stack([encode(model, inputs[i]) for i in indices]))
            if not np.isfinite(final).all():
                raise InputError("the model's activations are not finite (NaN or infinity): its weights overflow")
            clean = well_defined(model, final) if check else None
            scores = final @ model.params["unembed"]
            categorical = check and model.output_encoding == "categorical"
            leads = margin(scores)[:, 1:] > DECIDED if categorical else None
            for j, (i, decoded) in enumerate(zip(indices, decode(model, scores))):
                results[i], defined[i] = decoded, None if clean is None else bool(clean[j])
                if check:
                    decided[i] = [True] * len(decoded) if leads is None else leads[j].tolist()
    return results, defined, decided  # type: ignore[return-value]


def margin(scores: np.ndarray) -> np.ndarray:
    """Lead of the top read-out score over the second: [B, T, O] -> [B, T] (its size when O = 1)."""
    if scores.shape[-1] == 1:
        return np.abs(scores[..., 0])
    top2 = np.sort(scores, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def outputs_match(model_out: Sequence[Value], reference: Sequence[Value], *, atol: float = 1e-3) -> bool:
    """Elementwise agreement of a model output with the RASP reference.

    Positions where the reference is None (undefined) are ignored; numerical
    values agree within ``atol`` (scaled by magnitude).
    """
    if len(model_out) != len(reference):
        return False
    for got, want in zip(model_out, reference):
        if want is None:
            continue
        if isinstance(got, float) or isinstance(want, float):
            if not (isinstance(want, (int, float)) and isinstance(got, (int, float))):
                return False
            if abs(float(got) - float(want)) > atol * max(1.0, abs(float(want))):
                return False
        elif got != want:
            return False
    return True
