"""Paper 002's model-mapping architecture (§3.3), the baseline ``--arch graph-t5``.

Encoder: the trained transformer as a chain graph, one vertex per layer (features: :func:`~metamodels.mapping.data.
vertex_features`), through a fully-connected layer, a graph convolution, a second fully-connected layer and a second
graph convolution (Kipf & Welling's ``D^-1/2 (A + I) D^-1/2 X W`` over the chain i -- i+1), giving one
``d_model`` vector per vertex. Decoder: a 3-layer T5-style decoder (pre-RMSNorm without biases, causal self-attention
with T5's bucketed relative position bias shared by the layers, cross-attention over the vertices, ReLU feed-forward of
width 32, 8 heads, output head tied to the token embedding), trained end to end with the causal LM loss.

Where §3.3 is silent (written down here): ``d_model`` 256 with 8 heads of 32; ReLU between the encoder layers;
dropout 0.1; T5's 32 buckets up to distance 128.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class GraphT5Config:
    features: int  # values per vertex
    vocab_size: int  # target tokens
    d_model: int = 256
    n_layers: int = 3
    n_heads: int = 8
    d_ff: int = 32
    dropout: float = 0.1
    max_len: int = 256  # longest target decoded
    buckets: int = 32
    max_distance: int = 128


class RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class GCN(nn.Module):
    """One graph convolution over chain graphs: ``[B, N, d_in]`` (vertex mask ``[B, N]``) -> ``[B, N, d_out]``."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        i = torch.arange(n, device=x.device)
        chain = ((i[:, None] - i[None, :]).abs() <= 1).to(x.dtype)  # self-loops and the edges i -- i+1
        m = mask.to(x.dtype)
        a = chain[None] * m[:, :, None] * m[:, None, :]  # [B, N, N]
        d = a.sum(-1).clamp(min=1).rsqrt()
        a = d[:, :, None] * a * d[:, None, :]
        return a @ self.linear(x)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, d]`` attends to ``memory`` ``[B, S, d]`` with additive ``bias`` ``[B or 1, H or 1, T, S]``."""
        b, t, d = x.shape
        split = lambda y: y.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(memory)), split(self.v(memory)),
                                             attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)  # fmt: skip
        return self.o(out.transpose(1, 2).reshape(b, t, d))


class DecoderLayer(nn.Module):
    def __init__(self, c: GraphT5Config) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = RMSNorm(c.d_model), RMSNorm(c.d_model), RMSNorm(c.d_model)
        self.self_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.cross_attn = Attention(c.d_model, c.n_heads, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff, bias=False), nn.ReLU(), nn.Dropout(c.dropout),
                                nn.Linear(c.d_ff, c.d_model, bias=False))  # fmt: skip
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, memory, self_bias, cross_bias):
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, self_bias))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, cross_bias))
        return x + self.drop(self.ff(self.norm3(x)))


def relative_bucket(distance: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's unidirectional bucket of ``distance`` = query - key >= 0: exact below ``buckets // 2``, then log-spaced."""
    exact = buckets // 2
    n = distance.clamp(min=0)
    far = (
        exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (buckets - exact)).long()
    )
    return torch.where(n < exact, n, far.clamp(max=buckets - 1))


class GraphT5(nn.Module):
    """Graph encoder + T5-style decoder.

    ``forward({"graph": [B, N, F], "mask": [B, N] bool}, tokens [B, T]) -> logits [B, T, vocab_size]``:
    position t predicts token t + 1.
    """

    def __init__(self, c: GraphT5Config) -> None:
        super().__init__()
        self.config = c
        self.fc1, self.gcn1 = nn.Linear(c.features, c.d_model), GCN(c.d_model, c.d_model)
        self.fc2, self.gcn2 = nn.Linear(c.d_model, c.d_model), GCN(c.d_model, c.d_model)
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.position_bias = nn.Embedding(c.buckets, c.n_heads)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``graph [B, N, F]``, ``mask [B, N]`` -> vertex states ``[B, N, d_model]`` and the mask."""
        graph, mask = inputs["graph"], inputs["mask"]
        h = F.relu(self.gcn1(F.relu(self.fc1(graph)), mask))
        return self.gcn2(F.relu(self.fc2(h)), mask), mask

    def decode(self, memory: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Vertex states ``[B, N, d]`` (mask ``[B, N]``) and tokens ``[B, T]`` -> logits ``[B, T, vocab_size]``."""
        t = tokens.shape[1]
        i = torch.arange(t, device=tokens.device)
        distance = i[:, None] - i[None, :]
        bias = self.position_bias(relative_bucket(distance, self.config.buckets, self.config.max_distance))
        self_bias = bias.permute(2, 0, 1)[None].masked_fill((distance < 0)[None, None], float("-inf"))
        cross_bias = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], device=tokens.device)
        cross_bias = cross_bias.masked_fill(~mask[:, None, None, :], float("-inf"))
        x = self.drop(self.embed(tokens))
        for layer in self.layers:
            x = layer(x, memory, self_bias, cross_bias)
        return self.norm(x) @ self.embed.weight.T * self.config.d_model**-0.5

    def forward(self, inputs: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(inputs), tokens)


def collate(batch: list[dict[str, np.ndarray]], blind: bool = False) -> dict[str, torch.Tensor]:
    """Graphs ``[B, N, F]`` float32 (zero-padded vertices; ``blind``: all zero) and the vertex mask ``[B, N]``."""
    n = max(f["graph"].shape[0] for f in batch)
    graph = np.zeros((len(batch), n, batch[0]["graph"].shape[1]), np.float32)
    mask = np.zeros((len(batch), n), bool)
    for b, f in enumerate(batch):
        if not blind:
            graph[b, : f["graph"].shape[0]] = f["graph"]
        mask[b, : f["graph"].shape[0]] = True
    return {"graph": torch.from_numpy(graph), "mask": torch.from_numpy(mask)}
