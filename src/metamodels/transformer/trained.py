"""Trained transformers: the base-model spec of the zoos and its numpy forward pass.

A GPT-style encoder (paper 002, §3.1): token and position embeddings, ``n_layers`` blocks of
multi-head attention and an MLP (ReLU, or GPT-2's tanh-approximated GELU), optionally pre-LayerNorm
with a final LayerNorm, bidirectional or causal, and one classifier over the output values at every
position. The input is ``[BOS] + tokens``: embedding row 0 is BOS, row ``1 + i`` is
``input_vocab[i]``; the classifier's column ``c`` is ``output_vocab[c]``; the output at BOS is not read.

The model file is :mod:`~metamodels.transformer.modelfile`'s (``metamodels.trained-transformer``).
Parameters use TransformerLens's names and layouts (``embed.W_E [V_in, D]``, ``pos_embed.W_pos [T, D]``,
``blocks.{l}.attn.W_Q [H, D, K]``, ``W_O [H, K, D]``, ``blocks.{l}.mlp.W_in [D, M]``, ``W_out [M, D]``,
``ln1``/``ln2``/``ln_final`` ``w``/``b`` when normalised, ``unembed.W_U [D, V_out]``, ``b_U``), so the
interop adapters map names one to one. The torch trainer (``zoo/trainer.py``) computes exactly this
function; ``tests/zoo/test_trainer.py`` re-checks every trained view's held-out accuracy with this forward.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.transformer.compiled import InputError, Value

LN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A base model's sizes and choices, without its vocabularies (a zoo batch shares one)."""

    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 64
    activation: Literal["relu", "gelu"] = "relu"
    norm: Literal["none", "layernorm"] = "none"

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_mlp"):
            _positive(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise MetamodelsError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.activation not in ("relu", "gelu"):
            raise MetamodelsError(f"activation must be relu or gelu, got {self.activation!r}")
        if self.norm not in ("none", "layernorm"):
            raise MetamodelsError(f"norm must be none or layernorm, got {self.norm!r}")


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MetamodelsError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPTConfig(Architecture):
    """The whole config of one trained base model (what its model file's ``config`` holds).

    ``input_vocab`` and ``output_vocab`` are the values in embedding-row and classifier-column order
    (BOS excluded); ``max_seq_len`` counts input tokens (BOS excluded). ``prepend_bos``: the input is
    ``[BOS] + tokens`` (embedding row 0, its output not read; the zoos' models); without it the input
    is the tokens alone and row ``i`` is ``input_vocab[i]`` (an imported GPT-2, whose vocabulary holds
    whatever BOS it was trained with).
    """

    input_vocab: tuple[Value, ...]
    output_vocab: tuple[Value, ...]
    max_seq_len: int
    causal: bool = False
    prepend_bos: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("max_seq_len", self.max_seq_len)
        if not self.input_vocab or not self.output_vocab:
            raise MetamodelsError("input_vocab and output_vocab must be non-empty")
        if len(set(map(value_key, self.input_vocab))) != len(self.input_vocab):
            raise MetamodelsError("input_vocab has repeated values")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in a fixed order."""
        d, h, k, m = self.d_model, self.n_heads, self.d_head, self.d_mlp
        bos = int(self.prepend_bos)
        out: dict[str, tuple[int, ...]] = {
            "embed.W_E": (len(self.input_vocab) + bos, d),
            "pos_embed.W_pos": (self.max_seq_len + bos, d),
        }
        for layer in range(self.n_layers):
            p = f"blocks.{layer}."
            if self.norm == "layernorm":
                out |= {p + "ln1.w": (d,), p + "ln1.b": (d,)}
            out |= {p + f"attn.W_{x}": (h, d, k) for x in "QKV"} | {p + f"attn.b_{x}": (h, k) for x in "QKV"}
            out |= {p + "attn.W_O": (h, k, d), p + "attn.b_O": (d,)}
            if self.norm == "layernorm":
                out |= {p + "ln2.w": (d,), p + "ln2.b": (d,)}
            out |= {p + "mlp.W_in": (d, m), p + "mlp.b_in": (m,), p + "mlp.W_out": (m, d), p + "mlp.b_out": (d,)}
        if self.norm == "layernorm":
            out |= {"ln_final.w": (d,), "ln_final.b": (d,)}
        return out | {"unembed.W_U": (d, len(self.output_vocab)), "unembed.b_U": (len(self.output_vocab),)}

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes().values())

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "input_vocab": list(self.input_vocab),
                "output_vocab": list(self.output_vocab)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> GPTConfig:
        if not isinstance(data, dict):
            raise MetamodelsError(f"a trained-model config must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = (
            sorted(set(data) - fields),
            sorted({"input_vocab", "output_vocab", "max_seq_len"} - set(data)),
        )
        if unknown or missing:
            raise MetamodelsError(f"trained-model config: unknown fields {unknown}, missing {missing}")
        vocab = {k: tuple(_hashable(v) for v in data[k]) for k in ("input_vocab", "output_vocab")}
        return cls(**{**data, **vocab})


def _hashable(v: object) -> Value:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v  # type: ignore[return-value]


def value_key(v: object) -> tuple[str, str]:
    """Values equal under ``==`` share a key (1, 1.0 and True are one token or output class), others never do."""
    if isinstance(v, (int, float)):
        return ("number", repr(float(v)))
    return (type(v).__name__, repr(v))


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trained base model: its config, named float32 parameters (:meth:`GPTConfig.shapes`) and metadata.

    ``metadata`` holds the training record (steps, accuracies, seed) and, only when saved with the
    source, ``program_text``.
    """

    config: GPTConfig
    params: dict[str, np.ndarray]
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        want = self.config.shapes()
        if set(self.params) != set(want):
            extra, missing = sorted(set(self.params) - set(want)), sorted(set(want) - set(self.params))
            raise MetamodelsError(f"trained model: unexpected parameters {extra[:5]}, missing {missing[:5]}")
        for name, shape in want.items():
            if tuple(self.params[name].shape) != shape:
                raise MetamodelsError(f"trained model: {name} has shape {self.params[name].shape}, expected {shape}")

    @property
    def n_params(self) -> int:
        return self.config.n_params


def encode(config: GPTConfig, inputs: Sequence[Sequence[Value]]) -> np.ndarray:
    """Token ids ``[batch, 1 + n]`` (BOS first; ``[batch, n]`` without prepend_bos) of equal-length inputs.

    InputError names an unknown value or a bad length.
    """
    bos = int(config.prepend_bos)
    index = {value_key(v): i + bos for i, v in enumerate(config.input_vocab)}
    rows = []
    for xs in inputs:
        if not 1 <= len(xs) <= config.max_seq_len:
            raise InputError(f"input length {len(xs)} is outside 1..{config.max_seq_len}")
        try:
            rows.append([0] * bos + [index[value_key(v)] for v in xs])
        except KeyError:
            bad = next(v for v in xs if value_key(v) not in index)
            raise InputError(f"{bad!r} is not in the model's input vocabulary {list(config.input_vocab)}") from None
    return np.asarray(rows, dtype=np.int64)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


def gelu(x: np.ndarray) -> np.ndarray:
    """GPT-2's GELU (tanh approximation; torch's ``gelu(approximate="tanh")``)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def logits(model: TrainedModel, ids: np.ndarray) -> np.ndarray:
    """Classifier scores ``[batch, 1 + n, V_out]`` of token ids ``[batch, 1 + n]`` (float32 throughout)."""
    c, p = model.config, model.params
    x = collections.deque(_stream(model, ids), maxlen=1)[0]
    if c.norm == "layernorm":
        x = _layer_norm(x, p["ln_final.w"], p["ln_final.b"])
    return (x @ p["unembed.W_U"] + p["unembed.b_U"]).astype(np.float32)


def residuals(model: TrainedModel, ids: np.ndarray) -> list[np.ndarray]:
    """The residual stream ``[batch, t, d]`` after the embedding and after every sublayer (1 + 2 n_layers)."""
    return list(_stream(model, ids))


def _stream(model: TrainedModel, ids: np.ndarray):
    c, p = model.config, model.params
    t = ids.shape[1]
    x = p["embed.W_E"][ids] + p["pos_embed.W_pos"][:t]  # [batch, t, d]
    yield x
    mask = np.tril(np.ones((t, t), dtype=bool)) if c.causal else np.ones((t, t), dtype=bool)
    act = gelu if c.activation == "gelu" else (lambda z: np.maximum(z, 0.0))
    for layer in range(c.n_layers):
        b = f"blocks.{layer}."
        h = _layer_norm(x, p[b + "ln1.w"], p[b + "ln1.b"]) if c.norm == "layernorm" else x
        q, k, v = (np.einsum("btd,hdk->bhtk", h, p[b + f"attn.W_{n}"]) + p[b + f"attn.b_{n}"][:, None] for n in "QKV")
        scores = np.where(mask, q @ k.transpose(0, 1, 3, 2) / math.sqrt(c.d_head), -np.inf)  # [batch, h, t, t]
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        z = (weights / weights.sum(-1, keepdims=True)) @ v  # [batch, h, t, k]
        x = x + np.einsum("bhtk,hkd->btd", z, p[b + "attn.W_O"]) + p[b + "attn.b_O"]
        yield x
        h = _layer_norm(x, p[b + "ln2.w"], p[b + "ln2.b"]) if c.norm == "layernorm" else x
        x = x + act(h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]) @ p[b + "mlp.W_out"] + p[b + "mlp.b_out"]
        yield x


CHUNK = 2048  # sequences per forward batch


def run(model: TrainedModel, inputs: Sequence[Sequence[Value]]) -> list[list[Value]]:
    """The model's output value at every input position (argmax of the classifier), in input order."""
    out: list[list[Value] | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, xs in enumerate(inputs):
        by_length.setdefault(len(xs), []).append(i)
    for same in by_length.values():
        for start in range(0, len(same), CHUNK):
            chunk = same[start : start + CHUNK]
            scores = logits(model, encode(model.config, [inputs[i] for i in chunk]))
            best = scores[:, int(model.config.prepend_bos) :].argmax(-1)
            for i, row in zip(chunk, best):
                out[i] = [model.config.output_vocab[j] for j in row]
    return out  # type: ignore[return-value]


def token_accuracy(
    model: TrainedModel, inputs: Sequence[Sequence[Value]], targets: Sequence[Sequence[Value | None]]
) -> float:
    """Fraction of defined target positions (not None) where the model's output equals the target."""
    right = total = 0
    for got, want in zip(run(model, inputs), targets):
        for g, w in zip(got, want):
            if w is not None:
                total += 1
                right += g == w
    return right / total if total else 0.0
