"""Ours (``--arch circuits``): an encoder of a trained transformer that respects the symmetries of its weights.

Instead of raw parameters (which change under any permutation of heads or MLP units and any rotation of the residual
stream), each model is read as *circuits over its inputs*: the rows ``S`` of the token and position embeddings
(``[V_in + 1 + T + 1, d]``: BOS included; through the layer's LayerNorm when it has one, as that LayerNorm would
normalise a single embedding) composed with each weight matrix, and the output side through the unembedding
``U`` (final LayerNorm gain folded in):

- a **head** token per attention head: its QK circuit ``(S W_Q + b_Q)(S W_K + b_K)^T / sqrt(d_head)`` (which input
  attends to which) and its OV circuit ``(S W_V + b_V) W_O U`` (what each input, once attended to, writes towards each
  output value);
- an **MLP** token per layer: each hidden unit as the vector ``(S W_in[:, u] + b_in[u], W_out[u] U)``, encoded by a
  shared network and averaged over units (a set: invariant to their order);
- a **direct** token: the embeddings read straight out, ``S U``, and whether the model is causal.

These are first-order (they ignore composition through earlier layers) and exact invariants of head and unit
permutations and, without LayerNorm, of residual rotations. Each token's values are divided by their RMS (its log
kept as a feature). Tokens carry layer and kind embeddings but no order among heads, so a transformer encoder over
them (2 layers) is permutation-equivariant; the decoder is the same T5-style decoder as the graph-T5 baseline.

Shapes: inputs are padded to ``SOURCES`` sources (16 token rows + 16 position rows) and ``OUTPUTS`` output values.
A model with more input values, positions or output values than that (a GPT-2 with a 150-token vocabulary and
context, say) is read on an evenly spaced subset of them (:func:`grid`; BOS always kept; output values the kept
input values share first): the circuits between the kept rows are the same numbers, only fewer of them, so the
encoder sees a coarser picture of the same model rather than refusing it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from metamodels.errors import MetamodelsError
from metamodels.mapping import graph_t5
from metamodels.transformer.trained import LN_EPS, GPTConfig, TrainedModel, value_key

TOKENS, POSITIONS, OUTPUTS = 16, 16, 32
SOURCES = TOKENS + POSITIONS
HEAD = 2 * SOURCES * max(SOURCES, OUTPUTS) + 1  # QK [S, S] and OV [S, O] padded to [S, max], then log-RMS
UNIT = SOURCES + OUTPUTS
DIRECT = SOURCES * OUTPUTS + 2
MAX_LAYERS = 8


def _ln_rows(s: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = s.mean(-1, keepdims=True)
    return (s - mu) / np.sqrt(((s - mu) ** 2).mean(-1, keepdims=True) + LN_EPS) * w + b


def grid(n: int, keep: int, first: int = 0) -> np.ndarray:
    """Indices of ``keep`` of ``n`` rows: all when ``n <= keep``, else rows ``0..first-1`` (e.g. BOS) and the rest
    evenly spaced, the last included. ``[min(n, keep)]``, increasing."""
    if n <= keep:
        return np.arange(n)
    rest = first + np.round(np.linspace(0, n - 1 - first, keep - first)).astype(int)
    return np.concatenate([np.arange(first), rest])


def kept_outputs(config: GPTConfig) -> np.ndarray:
    """The classifier columns read (``[min(V_out, OUTPUTS)]``, increasing): all when they fit; else the columns of
    the kept input values (a next-token head's vocabulary is its input's), then evenly spaced others."""
    n = len(config.output_vocab)
    if n <= OUTPUTS:
        return np.arange(n)
    column = {value_key(v): i for i, v in enumerate(config.output_vocab)}
    bos = int(config.prepend_bos)
    rows = grid(len(config.input_vocab) + bos, TOKENS, bos)[bos:] - bos
    shared = [column[k] for k in (value_key(config.input_vocab[r]) for r in rows) if k in column]
    others = np.setdiff1d(np.arange(n), shared)
    fill = others[grid(len(others), OUTPUTS - len(shared))]
    return np.sort(np.concatenate([np.asarray(shared, int), fill]))


def _sources(model: TrainedModel) -> tuple[np.ndarray, np.ndarray]:
    """Embedding rows ``[SOURCES, d]`` (zero where padded) and which rows exist ``[SOURCES]``: the kept token rows
    (:func:`grid`) then the kept position rows."""
    c, p = model.config, model.params
    bos = int(c.prepend_bos)
    e = p["embed.W_E"][grid(p["embed.W_E"].shape[0], TOKENS, bos)]
    pos = p["pos_embed.W_pos"][grid(p["pos_embed.W_pos"].shape[0], POSITIONS, bos)]
    s = np.zeros((SOURCES, c.d_model), np.float32)
    present = np.zeros(SOURCES, bool)
    s[: e.shape[0]], present[: e.shape[0]] = e, True
    s[TOKENS : TOKENS + pos.shape[0]], present[TOKENS : TOKENS + pos.shape[0]] = pos, True
    return s, present


def _normed(x: np.ndarray) -> np.ndarray:
    """``x`` flattened, divided by its RMS, with log(RMS) appended."""
    flat = x.ravel().astype(np.float32)
    rms = float(np.sqrt((flat**2).mean()) + 1e-8)
    return np.concatenate([flat / rms, [math.log(rms)]]).astype(np.float32)


def features(model: TrainedModel) -> dict[str, np.ndarray]:
    """``heads [n_layers * n_heads, HEAD]``, ``head_layer [n_heads_total]``, ``units [n_layers, d_mlp, UNIT]``,
    ``direct [DIRECT]`` (float16 arrays, int8 layer ids)."""
    c, p = model.config, model.params
    if c.n_layers > MAX_LAYERS:
        raise MetamodelsError(f"the circuits encoder reads up to {MAX_LAYERS} layers; this model has {c.n_layers}")
    s, present = _sources(model)
    ln = c.norm == "layernorm"
    u = (p["unembed.W_U"] * (p["ln_final.w"][:, None] if ln else 1.0))[:, kept_outputs(c)]
    u_pad = np.zeros((c.d_model, OUTPUTS), np.float32)
    u_pad[:, : u.shape[1]] = u
    width = max(SOURCES, OUTPUTS)
    heads, layers, units = [], [], []
    for layer in range(c.n_layers):
        b = f"blocks.{layer}."
        s1 = np.where(present[:, None], _ln_rows(s, p[b + "ln1.w"], p[b + "ln1.b"]) if ln else s, 0.0)
        for h in range(c.n_heads):
            q = (s1 @ p[b + "attn.W_Q"][h] + p[b + "attn.b_Q"][h]) * present[:, None]
            k = (s1 @ p[b + "attn.W_K"][h] + p[b + "attn.b_K"][h]) * present[:, None]
            v = (s1 @ p[b + "attn.W_V"][h] + p[b + "attn.b_V"][h]) * present[:, None]
            both = np.zeros((2, SOURCES, width), np.float32)
            both[0, :, :SOURCES] = q @ k.T / math.sqrt(c.d_head)
            both[1, :, :OUTPUTS] = v @ p[b + "attn.W_O"][h] @ u_pad
            heads.append(_normed(both))
            layers.append(layer)
        s2 = np.where(present[:, None], _ln_rows(s, p[b + "ln2.w"], p[b + "ln2.b"]) if ln else s, 0.0)
        unit_in = (s2 @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]) * present[:, None]  # [SOURCES, d_mlp]
        unit_out = p[b + "mlp.W_out"] @ u_pad  # [d_mlp, OUTPUTS]
        raw = np.concatenate([unit_in.T, unit_out], 1)
        units.append(raw / (np.sqrt((raw**2).mean()) + 1e-8))
    direct = np.concatenate([_normed(s * present[:, None] @ u_pad), [float(c.causal)]])
    return {"heads": np.stack(heads).astype(np.float16), "head_layer": np.asarray(layers, np.int8),
            "units": np.stack(units).astype(np.float16), "direct": direct.astype(np.float16)}  # fmt: skip


def collate(batch: list[dict[str, np.ndarray]], blind: bool = False) -> dict[str, torch.Tensor]:
    """Pad a batch: ``heads [B, H, HEAD]``, ``head_layer [B, H]``, ``head_mask [B, H]``, ``units [B, L, U, UNIT]``,
    ``unit_mask [B, L, U]``, ``layer_mask [B, L]``, ``direct [B, DIRECT]`` (``blind``: every value zero)."""
    n = len(batch)
    h = max(f["heads"].shape[0] for f in batch)
    n_layers = max(f["units"].shape[0] for f in batch)
    n_units = max(f["units"].shape[1] for f in batch)
    out = {"heads": np.zeros((n, h, HEAD), np.float32), "head_layer": np.zeros((n, h), np.int64),
           "head_mask": np.zeros((n, h), bool), "units": np.zeros((n, n_layers, n_units, UNIT), np.float32),
           "unit_mask": np.zeros((n, n_layers, n_units), bool), "layer_mask": np.zeros((n, n_layers), bool),
           "direct": np.zeros((n, DIRECT), np.float32)}  # fmt: skip
    for i, f in enumerate(batch):
        k, (layers, units, _) = f["heads"].shape[0], f["units"].shape
        if not blind:
            out["heads"][i, :k] = f["heads"]
            out["units"][i, :layers, :units] = f["units"]
            out["direct"][i] = f["direct"]
        out["head_layer"][i, :k] = f["head_layer"]
        out["head_mask"][i, :k] = True
        out["unit_mask"][i, :layers, :units] = True
        out["layer_mask"][i, :layers] = True
    return {k: torch.from_numpy(v) for k, v in out.items()}


class Circuits(graph_t5.GraphT5):
    """Circuit tokens -> permutation-equivariant encoder -> the T5-style decoder of :class:`GraphT5`."""

    def __init__(self, c: graph_t5.GraphT5Config) -> None:
        super().__init__(c)
        del self.fc1, self.gcn1, self.fc2, self.gcn2
        d = c.d_model
        self.head_in = nn.Linear(HEAD, d)
        self.unit_in = nn.Sequential(nn.Linear(UNIT, d), nn.ReLU(), nn.Linear(d, d))
        self.direct_in = nn.Linear(DIRECT, d)
        self.layer_embed = nn.Embedding(MAX_LAYERS, d)
        self.kind_embed = nn.Embedding(3, d)  # head, mlp, direct
        layer = nn.TransformerEncoderLayer(d, c.n_heads, 2 * d, c.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Collated inputs -> memory ``[B, H + L + 1, d]`` and its mask."""
        heads = self.head_in(inputs["heads"]) + self.layer_embed(inputs["head_layer"]) + self.kind_embed.weight[0]
        m = inputs["unit_mask"].unsqueeze(-1).float()
        pooled = (self.unit_in(inputs["units"]) * m).sum(2) / m.sum(2).clamp(min=1)  # [B, L, d]
        layer_ids = torch.arange(pooled.shape[1], device=pooled.device)
        mlps = pooled + self.layer_embed(layer_ids)[None] + self.kind_embed.weight[1]
        direct = (self.direct_in(inputs["direct"]) + self.kind_embed.weight[2])[:, None]
        memory = torch.cat([heads, mlps, direct], 1)
        mask = torch.cat([inputs["head_mask"], inputs["layer_mask"], torch.ones_like(inputs["head_mask"][:, :1])], 1)
        return self.encoder(memory, src_key_padding_mask=~mask), mask
