"""numpy forward pass of a CompiledModel (no JAX), matching Tracr's model.

Sequences are run unpadded, batched by length: Tracr's compiled model does not
mask PAD, so padding would change numerical Aggregates that attend everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metamodels import compiled
from metamodels.compiled import CompiledModel, Value


class InputError(ValueError):
    """An input sequence the model cannot read (unknown token, too long)."""


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


def residuals(model: CompiledModel, ids: np.ndarray) -> list[np.ndarray]:
    """Residual stream after the embedding and after every sublayer.

    ids: [B, T] token ids (BOS first). Returns 1 + 2 * n_layers arrays of [B, T, D].
    """
    b, t = ids.shape
    x = model.params["token_embed/embeddings"][ids] + model.params["pos_embed/embeddings"][np.arange(t)][None]
    out = [x]
    h, k = model.n_heads, model.key_size
    mask = np.tril(np.ones((t, t), dtype=bool)) if model.settings.causal else np.ones((t, t), dtype=bool)
    for layer in range(model.n_layers):
        p = {key: model.layer(layer, key) for key in compiled.LAYER_KEYS}
        q = (x @ p["attn/query/w"] + p["attn/query/b"]).reshape(b, t, h, k)
        kk = (x @ p["attn/key/w"] + p["attn/key/b"]).reshape(b, t, h, k)
        v = (x @ p["attn/value/w"] + p["attn/value/b"]).reshape(b, t, h, k)
        logits = np.einsum("bthd,bThd->bhtT", q, kk) / np.sqrt(k).astype(np.float32)  # [B, H, T, T]
        logits = np.where(mask, logits, np.float32(-1e30))
        logits -= logits.max(axis=-1, keepdims=True)
        weights = np.exp(logits)
        weights /= weights.sum(axis=-1, keepdims=True)
        attn = np.einsum("bhtT,bThd->bthd", weights, v).reshape(b, t, h * k)
        x = x + attn @ p["attn/linear/w"] + p["attn/linear/b"]
        out.append(x)
        hidden = np.maximum(x @ p["mlp/linear_1/w"] + p["mlp/linear_1/b"], 0)
        x = x + hidden @ p["mlp/linear_2/w"] + p["mlp/linear_2/b"]
        out.append(x)
    return out


def logits(model: CompiledModel, ids: np.ndarray) -> np.ndarray:
    """Read-out of the final residual: ids [B, T] -> [B, T, O] (O = 1 for a numerical output)."""
    return residuals(model, ids)[-1] @ model.params["unembed"]


def decode(model: CompiledModel, scores: np.ndarray) -> list[list[Value]]:
    """Read-out scores [B, T, O] -> decoded values per sequence, BOS position dropped."""
    if model.output_encoding == "numerical":
        return [[float(v) for v in row[1:, 0]] for row in scores]
    return [[model.output_values[i] for i in row[1:]] for row in scores.argmax(-1)]


def run(model: CompiledModel, inputs: Sequence[Sequence[Value]]) -> list[list[Value]]:
    """Decoded outputs of the model on each input sequence (no BOS), in input order."""
    results: list[list[Value] | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for indices in by_length.values():
        ids = np.stack([encode(model, inputs[i]) for i in indices])
        for i, decoded in zip(indices, decode(model, logits(model, ids))):
            results[i] = decoded
    return results  # type: ignore[return-value]


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
