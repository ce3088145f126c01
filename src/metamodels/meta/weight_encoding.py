"""Compiled weights -> meta-model input tokens (the preprocessing stage).

Two encodings, both producing :class:`WeightTokens` (a sequence of fixed-width
value vectors, each with four small integer tags the meta-model embeds):

``flat`` (paper 000, Appendix B): every weight in a fixed canonical order,
flattened into one vector, symlog-transformed, padded with 0.05 to
``flat_size`` and cut into ``flat_size / width`` chunks. Tags: the chunk number.

``rows`` (ours, structure-aware): one token per *residual direction* of each
matrix that reads or writes the residual stream, holding that direction's row of
the matrix along its other axis (a query row over the layer's head dimensions,
an embedding column over the input vocabulary, an MLP input row over the hidden
units, ...). All-zero rows are skipped (Tracr's weights are sparse: most
directions are not read or written by most sublayers), rows longer than
``width`` continue in further tokens (all-zero pieces skipped), and each token is tagged with its role
(which matrix), layer, residual direction and chunk number, so the meta-model
can match "direction 17 is written by layer 2's MLP" with "direction 17 is read
by layer 3's query". A fifth tag gives the direction's *rank within its
writer's block*: the directions written by the same embedding or sublayer, in
residual order. Tracr orders a categorical variable's directions by value, so
the rank says "the 3rd smallest value of this variable" — what reading a lookup
table needs — and it survives renaming variables (which reorders whole blocks,
never the values inside one). Sequences are ~100 tokens instead of the flat
encoding's fixed 128 padded chunks, and nothing is padding.

``basis="canonical"`` first re-expresses the weights in the residual basis
read off the writers themselves (:mod:`metamodels.transformer.residual_basis`), so any
rotation of the residual stream encodes exactly as the unrotated model, and a
PCA-compressed one nearly so (dense weights, paper 000 section 3.2). Compressed
weights are not sparse: ``min_row`` skips rows whose largest entry is below that
fraction of their matrix's largest (leaks of other variables into a direction).

Shape-agnostic: any d_model, vocabulary size, sequence length, number of heads
or layers the tag tables cover (see ``LIMITS``); beyond them,
:class:`EncodingError` says which limit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.transformer import residual_basis
from metamodels.transformer.compiled import LAYER_KEYS

EncodingName = Literal["rows", "flat"]
BASES: tuple[str, ...] = ("stored", "canonical")
ENCODINGS: tuple[str, ...] = ("rows", "flat")
# Roles of the rows encoding. "Residual axis" is the axis of size d_model.
ROLES: tuple[str, ...] = (
    "token_embed",
    "pos_embed",
    "query",
    "key",
    "value",
    "attn_out",
    "mlp_in",
    "mlp_out",
    "unembed",
    "query_bias",
    "key_bias",
    "value_bias",
    "attn_out_bias",
    "mlp_in_bias",
    "mlp_out_bias",
)
_LAYER_ROLES = dict(
    zip(
        LAYER_KEYS,
        ("query", "query_bias", "key", "key_bias", "value", "value_bias")
        + ("attn_out", "attn_out_bias", "mlp_in", "mlp_in_bias", "mlp_out", "mlp_out_bias"),
    )
)
# Matrices stored [other, d_model] (residual axis last) rather than [d_model, other].
_RESIDUAL_LAST = {"token_embed", "pos_embed", "attn_out", "mlp_out"}
_RESIDUAL_BIAS = {"attn_out_bias", "mlp_out_bias"}  # biases over the residual axis
VERSION = 4  # bump when an encoding's output changes (keys encoded-data caches)
FLAT_PAD = 0.05  # the flat encoding's padding value (paper 000)
LIMITS = {"layers": 30, "residual": 2047, "chunks": 128, "rank": 255}
# Longest rows sequence a meta-model reads when decompiling (the tags carry no position, so any length fits the
# model; training keeps its own ``max_tokens``). 8,192 tokens is a d_model ~1,000, 10-layer model, ~1 GB of
# attention cache at beam 32.
MAX_DECOMPILE_TOKENS = 8192
N_TAGS = 5


class EncodingError(MetamodelsError):
    """A model the encoder cannot represent (too many layers, too wide, ...); says which limit."""


@dataclasses.dataclass(frozen=True)
class EncodingConfig:
    """Which encoding and its sizes (stored in every checkpoint's config)."""

    name: EncodingName = "rows"
    width: int = 32  # values per token
    flat_size: int = 65536  # flat only: length the flattened weights are padded to
    max_tokens: int = 512  # longest weight-token sequence accepted
    writer_rank: bool = True  # rows only: fill the fifth tag (checkpoints from before it existed read False)
    basis: str = "stored"  # rows only: "canonical" reads the weights in their canonical residual basis (dense models)
    min_row: float = 0.0  # rows only: skip rows below this fraction of their matrix's largest entry

    def __post_init__(self) -> None:
        if self.name not in ENCODINGS:
            raise MetamodelsError(f"unknown weight encoding {self.name!r}; expected one of {ENCODINGS}")
        if self.name == "flat" and self.flat_size % self.width:
            raise MetamodelsError(f"flat_size {self.flat_size} must be a multiple of width {self.width}")
        if self.basis not in BASES:
            raise MetamodelsError(f"unknown residual basis {self.basis!r}; expected one of {BASES}")
        if self.name == "flat" and (self.basis != "stored" or self.min_row):
            raise MetamodelsError("the flat encoding reads the weights as stored (basis and min_row are rows options)")


@dataclasses.dataclass(frozen=True)
class WeightTokens:
    """One model's weights as meta-model input.

    ``values`` [n_tokens, width] float32 (symlog-transformed weights);
    ``tags`` [n_tokens, 5] int64: (role + 1, layer + 1, residual direction + 1,
    chunk, rank of the direction in its writer's block + 1), 0 meaning "not applicable".
    """

    values: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


def symlog(x: np.ndarray) -> np.ndarray:
    """Identity on [-2, 2], logarithmic outside (continuous: sign(x)·(2 + ln(|x|/2)))."""
    a = np.abs(x)
    return np.where(a <= 2, x, np.sign(x) * (2 + np.log(np.maximum(a, 2) / 2))).astype(np.float32)


def canonical_order(params: Mapping[str, np.ndarray]) -> list[str]:
    """Parameter names in a fixed order: embeddings, layers (Tracr's order inside), unembedding."""
    names = ["token_embed/embeddings", "pos_embed/embeddings"]
    names += [f"transformer/layer_{i}/{k}" for i in range(residual_basis.n_layers(params)) for k in LAYER_KEYS]
    names.append("unembed")
    missing = [n for n in names if n not in params]
    if missing or len(names) != len(params):
        extra = sorted(set(params) - set(names))
        raise EncodingError(f"unexpected weight layout: missing {missing[:3]}, unexpected {extra[:3]}")
    return names


def for_decompiling(config: EncodingConfig) -> EncodingConfig:
    """``config`` as used to read a model to decompile: a rows encoding accepts up to ``MAX_DECOMPILE_TOKENS``."""
    if config.name != "rows":
        return config  # flat: a fixed number of chunks
    return dataclasses.replace(config, max_tokens=max(config.max_tokens, MAX_DECOMPILE_TOKENS))


def encode(params: Mapping[str, np.ndarray], config: EncodingConfig) -> WeightTokens:
    """Weights in :mod:`metamodels.transformer.compiled`'s layout -> WeightTokens; EncodingError if out of range."""
    out = _encode_flat(params, config) if config.name == "flat" else _encode_rows(params, config)
    if len(out) > config.max_tokens:
        raise EncodingError(
            f"the model's weights make {len(out)} {config.name} tokens; this meta-model reads at most {config.max_tokens}"
        )
    return out


def _encode_flat(params: Mapping[str, np.ndarray], config: EncodingConfig) -> WeightTokens:
    flat = np.concatenate([np.asarray(params[n], np.float32).ravel() for n in canonical_order(params)])
    if flat.size > config.flat_size:
        raise EncodingError(f"the model has {flat.size} weights; the flat encoding holds at most {config.flat_size}")
    padded = np.full(config.flat_size, FLAT_PAD, np.float32)
    padded[: flat.size] = symlog(flat)
    n = config.flat_size // config.width
    tags = np.zeros((n, N_TAGS), np.int64)
    tags[:, 3] = np.arange(n)
    if n > LIMITS["chunks"]:
        raise EncodingError(f"flat encoding with {n} chunks exceeds the chunk limit {LIMITS['chunks']}")
    return WeightTokens(padded.reshape(n, config.width), tags)


def writer_ranks(params: Mapping[str, np.ndarray]) -> np.ndarray:
    """[d_model] int: each residual direction's rank among the directions its writer writes (-1: never written).

    The writer of a direction is the set of matrices (embeddings, attention and
    MLP outputs of each layer) with a non-zero entry for it.
    """
    writers = [name for name in canonical_order(params) if _role_and_layer(name)[0] in _RESIDUAL_LAST]
    d = params["unembed"].shape[0]
    keys = [tuple(name for name in writers if np.any(params[name][:, i] != 0)) for i in range(d)]
    seen: dict[tuple, int] = {}
    ranks = np.full(d, -1, np.int64)
    for i, key in enumerate(keys):
        if key:
            ranks[i] = seen.get(key, 0)
            seen[key] = ranks[i] + 1
    return ranks


def _encode_rows(params: Mapping[str, np.ndarray], config: EncodingConfig) -> WeightTokens:
    if config.basis == "canonical":
        params = residual_basis.canonicalize(params)
    values: list[np.ndarray] = []
    tags: list[tuple[int, ...]] = []
    ranks = writer_ranks(params)
    for name in canonical_order(params):
        role, layer = _role_and_layer(name)
        w = np.asarray(params[name], np.float32)
        if role in _RESIDUAL_BIAS:  # [d_model]: one 1-wide row per non-zero direction
            rows, directions = w.reshape(-1, 1), np.arange(w.size)
        elif w.ndim == 1:  # a bias over hidden units: rows with no residual direction
            rows, directions = w.reshape(1, -1), np.array([-1])
        else:
            rows = w.T if role in _RESIDUAL_LAST else w  # [d_model, other]
            directions = np.arange(len(rows))
        largest = np.abs(rows).max(axis=1)
        keep = largest > config.min_row * largest.max(initial=0.0)
        for row, direction in zip(rows[keep], directions[keep]):
            _check(layer, direction, math.ceil(row.size / config.width))
            for chunk in range(0, row.size, config.width):
                piece = np.zeros(config.width, np.float32)
                piece[: min(config.width, row.size - chunk)] = row[chunk : chunk + config.width]
                if not piece.any():  # zero stretches of a long row are skipped like zero rows
                    continue
                values.append(piece)
                ranked = config.writer_rank and direction >= 0
                rank = min(int(ranks[direction]), LIMITS["rank"] - 1) + 1 if ranked else 0
                tags.append((ROLES.index(role) + 1, layer + 1, direction + 1, chunk // config.width, rank))
    if not values:
        raise EncodingError("the model's weights are all zero")
    return WeightTokens(symlog(np.stack(values)), np.asarray(tags, np.int64))


def _role_and_layer(name: str) -> tuple[str, int]:
    if name == "token_embed/embeddings":
        return "token_embed", -1
    if name == "pos_embed/embeddings":
        return "pos_embed", -1
    if name == "unembed":
        return "unembed", -1
    _, layer, key = name.split("/", 2)
    return _LAYER_ROLES[key], int(layer.removeprefix("layer_"))


def _check(layer: int, direction: int, n_chunks: int) -> None:
    if layer >= LIMITS["layers"]:
        raise EncodingError(f"the model has more than {LIMITS['layers']} layers")
    if direction >= LIMITS["residual"]:
        raise EncodingError(f"the model's residual stream is wider than {LIMITS['residual']}")
    if n_chunks > LIMITS["chunks"]:
        raise EncodingError(f"a weight row is longer than {LIMITS['chunks']} tokens")
