"""Meta-models that read a CNN's weights and predict how it was trained: one classification head per hyperparameter.

Every model maps its input batch to ``{label: logits [batch, classes of label]}``.

- :class:`NeuronTransformer` (ours): one token per output channel or neuron (its fan-in weights and bias, tagged by
  layer; no positions, so the order of channels within a layer does not matter), a [CLS] token first, a
  Transformer encoder without mask, heads on [CLS].
- :class:`ChunkTransformer` (paper 000, App. A): the flat weights cut into equal chunks, one token each with a
  learned position, a Transformer encoder without mask, heads at position 0.
- :class:`FlatMLP`: an MLP on the flat weights.
- :class:`SliceCNN` (EJR, Eilertsen et al. 2020): a 1-D CNN over a random slice of consecutive weights.
"""

from __future__ import annotations

import torch
from torch import nn

from metamodels.hparams import encoding


class _Heads(nn.Module):
    def __init__(self, d: int, classes: dict[str, int]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({label: nn.Linear(d, n) for label, n in classes.items()})

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:  # [batch, d] -> {label: [batch, n]}
        return {label: head(h) for label, head in self.heads.items()}


def _encoder(d: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class NeuronTransformer(nn.Module):
    """Neuron tokens ``[batch, n, NEURON_FEATURES]`` with ``tags [batch, n]``, layer summary tokens
    ``[batch, m, SUMMARY_FEATURES]`` with ``layer_tags [batch, m]`` (tags: the layer; -1 = padding) -> logits per label.
    """

    neuron_mean: torch.Tensor  # buffers [NEURON_FEATURES] and [SUMMARY_FEATURES]: the input standardisation
    neuron_std: torch.Tensor
    layer_mean: torch.Tensor
    layer_std: torch.Tensor

    def __init__(self, classes: dict[str, int], d: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.0,
                 wide: bool = True):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(encoding.NEURON_FEATURES, d)
        # wide: every layer slot's summary, side by side, also sets the [CLS] token (as StatNN reads them)
        self.wide = nn.Linear((encoding.MAX_LAYERS + 1) * encoding.SUMMARY_FEATURES, d) if wide else None
        self.summarise = nn.Linear(encoding.SUMMARY_FEATURES, d)
        self.tag = nn.Embedding(encoding.MAX_LAYERS + 1, d)
        self.kind = nn.Parameter(torch.zeros(2, d))  # neuron token, layer summary token
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder, self.norm, self.out = _encoder(d, layers, heads, dropout), nn.LayerNorm(d), _Heads(d, classes)
        # Feature standardisation, fitted on training data (fit_inputs) and saved with the weights: raw weights and
        # their statistics differ in scale by orders of magnitude.
        for name, width in (("neuron", encoding.NEURON_FEATURES), ("layer", encoding.SUMMARY_FEATURES)):
            self.register_buffer(f"{name}_mean", torch.zeros(width))
            self.register_buffer(f"{name}_std", torch.ones(width))

    def fit_inputs(self, tokens: torch.Tensor, tags: torch.Tensor, summaries: torch.Tensor,
                   layer_tags: torch.Tensor) -> None:  # fmt: skip
        """Set the standardisation from a batch of inputs (padding left out)."""
        for name, x, mask in (("neuron", tokens, tags >= 0), ("layer", summaries, layer_tags >= 0)):
            real = x[mask]  # [real tokens, features]
            getattr(self, f"{name}_mean").copy_(real.mean(0))
            getattr(self, f"{name}_std").copy_(real.std(0).clamp(min=1e-6))

    def forward(self, tokens: torch.Tensor, tags: torch.Tensor, summaries: torch.Tensor,
                layer_tags: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        tokens = (tokens - self.neuron_mean) / self.neuron_std
        summaries = (summaries - self.layer_mean) / self.layer_std
        neurons = self.embed(tokens) + self.tag(tags.clamp(min=0)) + self.kind[0]  # [batch, n, d]
        layer_sums = self.summarise(summaries) + self.tag(layer_tags.clamp(min=0)) + self.kind[1]  # [batch, m, d]
        cls = self.cls.expand(len(tokens), -1, -1)  # [batch, 1, d]
        if self.wide is not None:
            slots = summaries.new_zeros(len(tokens), encoding.MAX_LAYERS + 1, summaries.shape[-1])
            rows, cols = torch.nonzero(layer_tags >= 0, as_tuple=True)
            slots[rows, layer_tags[rows, cols]] = summaries[rows, cols]  # [batch, slots, SUMMARY_FEATURES]
            cls = cls + self.wide(slots.flatten(1))[:, None]
        h = torch.cat([cls, neurons, layer_sums], 1)  # [batch, 1 + n + m, d]
        pad = torch.cat([torch.zeros_like(tags[:, :1], dtype=torch.bool), tags < 0, layer_tags < 0], 1)
        return self.out(self.norm(self.encoder(h, src_key_padding_mask=pad)[:, 0]))


class ChunkTransformer(nn.Module):
    """``chunks [batch, n_chunks, chunk]`` -> logits per label (position 0 is a [CLS] token)."""

    def __init__(self, classes: dict[str, int], n_chunks: int, chunk: int, d: int = 64, layers: int = 2,
                 heads: int = 4, dropout: float = 0.0):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(chunk, d)
        self.pos = nn.Parameter(torch.zeros(1, n_chunks + 1, d))
        nn.init.normal_(self.pos, std=0.02)
        self.encoder, self.norm, self.out = _encoder(d, layers, heads, dropout), nn.LayerNorm(d), _Heads(d, classes)

    def forward(self, chunks: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(chunks)  # [batch, n_chunks, d]
        h = torch.cat([torch.zeros_like(h[:, :1]), h], 1) + self.pos  # [batch, 1 + n_chunks, d]
        return self.out(self.norm(self.encoder(h)[:, 0]))


class FlatMLP(nn.Module):
    """``flat [batch, length]`` -> logits per label."""

    def __init__(self, classes: dict[str, int], length: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(length, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout))  # fmt: skip
        self.out = _Heads(hidden, classes)

    def forward(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.out(self.body(flat))


class SliceCNN(nn.Module):
    """``weights [batch, size]`` (a slice of consecutive weights) -> logits per label, through a 1-D CNN."""

    def __init__(self, classes: dict[str, int], channels: int = 32):
        super().__init__()
        convs: list[nn.Module] = []
        for i in range(4):
            convs += [nn.Conv1d(1 if i == 0 else channels, channels, 7, stride=2, padding=3), nn.ReLU()]
        self.body = nn.Sequential(*convs)
        self.out = _Heads(2 * channels, classes)

    def forward(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(weights[:, None])  # [batch, channels, size / 16]
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], -1))
