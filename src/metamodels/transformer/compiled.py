"""CompiledModel: the weights and metadata of a compiled transformer.

This is the boundary object between the compiler (the only stage that touches
Tracr's compiler and JAX) and everything downstream (forward pass, model files,
datasets, meta-model encoders). It holds plain numpy arrays and JSON-able
metadata only.

Weight layout (Tracr's assembled-model layout, flattened keys; D = d_model,
H = n_heads, K = key_size, M = mlp_hidden, V = len(input_values),
O = number of output columns):

- ``token_embed/embeddings`` [V, D]; ``pos_embed/embeddings`` [max_seq_len + 1, D]
  (row 0 is the BOS position)
- per layer l, ``transformer/layer_{l}/attn/{query,key,value}/w`` [D, H*K] and
  ``/b`` [H*K]; ``attn/linear/w`` [H*K, D], ``/b`` [D];
  ``mlp/linear_1/w`` [D, M], ``/b`` [M]; ``mlp/linear_2/w`` [M, D], ``/b`` [D]
- ``unembed`` [D, O]: the read-out Tracr leaves implicit (a projection onto the
  output variable's residual directions), materialised here.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Literal

import numpy as np

from metamodels.errors import MetamodelsError

Value = int | float | str | bool


class InputError(MetamodelsError):
    """An input sequence the model cannot read (unknown token, too long)."""


LAYER_KEYS: tuple[str, ...] = (
    "attn/query/w",
    "attn/query/b",
    "attn/key/w",
    "attn/key/b",
    "attn/value/w",
    "attn/value/b",
    "attn/linear/w",
    "attn/linear/b",
    "mlp/linear_1/w",
    "mlp/linear_1/b",
    "mlp/linear_2/w",
    "mlp/linear_2/b",
)


@dataclasses.dataclass(frozen=True)
class CompileSettings:
    """How a program was compiled; stored with every model so it can be rebuilt."""

    vocab: tuple[Value, ...]
    max_seq_len: int
    causal: bool = False
    mlp_exactness: int = 100
    bos: str = "compiler_bos"
    pad: str = "compiler_pad"


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledModel:
    """A compiled transformer: weights (float32) plus what is needed to run and read it.

    Invariants: ``input_values[i]`` is the token embedded by row i of
    ``token_embed/embeddings`` (BOS and PAD included); for a categorical output,
    column j of ``unembed`` decodes to ``output_values[j]``; for a numerical
    output ``unembed`` has one column and ``output_values`` is empty.
    ``layer_of`` maps each sequence operation's name to its sublayer index
    (0 = attention of layer 0, 1 = MLP of layer 0, 2 = attention of layer 1, ...).
    ``residual_labels`` is empty once the residual basis is no longer Tracr's.
    """

    params: dict[str, np.ndarray]
    settings: CompileSettings
    n_layers: int
    n_heads: int
    key_size: int
    mlp_hidden: int
    input_values: tuple[Value, ...]
    output_encoding: Literal["categorical", "numerical"]
    output_values: tuple[Value, ...]
    residual_labels: tuple[str, ...] = ()
    layer_of: dict[str, int] = dataclasses.field(default_factory=dict)
    program_text: str | None = None
    densified: dict | None = None  # how the residual stream was compressed/rotated (see densification.py)

    @property
    def d_model(self) -> int:
        return int(self.params["token_embed/embeddings"].shape[1])

    @property
    def n_params(self) -> int:
        """Number of weights, the read-out included."""
        return int(sum(a.size for a in self.params.values()))

    def describe(self) -> str:
        """Size and settings in one line."""
        s = self.settings
        return f"{self.n_layers} layers, d_model {self.d_model}, {self.n_params} weights, vocab {list(s.vocab)}, max_seq_len {s.max_seq_len}"

    def config(self) -> dict:
        """JSON-able metadata (everything but the weights and the compile settings)."""
        return {
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "key_size": self.key_size,
            "mlp_hidden": self.mlp_hidden,
            "input_values": list(self.input_values),
            "output_encoding": self.output_encoding,
            "output_values": list(self.output_values),
            "residual_labels": list(self.residual_labels),
            "layer_of": self.layer_of,
            "program_text": self.program_text,
            "densified": self.densified,
        }

    @classmethod
    def from_config(cls, params: dict[str, np.ndarray], settings: CompileSettings, config: dict) -> CompiledModel:
        """Inverse of :meth:`config` (KeyError/TypeError/ValueError on malformed metadata)."""
        return cls(
            params=params,
            settings=settings,
            n_layers=int(config["n_layers"]),
            n_heads=int(config["n_heads"]),
            key_size=int(config["key_size"]),
            mlp_hidden=int(config["mlp_hidden"]),
            input_values=tuple(config["input_values"]),
            output_encoding=config["output_encoding"],
            output_values=tuple(config["output_values"]),
            residual_labels=tuple(config.get("residual_labels", ())),
            layer_of={str(k): int(v) for k, v in config.get("layer_of", {}).items()},
            program_text=config.get("program_text"),
            densified=config.get("densified"),
        )

    def layer(self, index: int, key: str) -> np.ndarray:
        """``params[f"transformer/layer_{index}/{key}"]``."""
        return self.params[f"transformer/layer_{index}/{key}"]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every parameter must have, from the configuration alone."""
        d = self.d_model
        shapes: dict[str, tuple[int, ...]] = {
            "token_embed/embeddings": (len(self.input_values), d),
            "pos_embed/embeddings": (self.settings.max_seq_len + 1, d),
            "unembed": (d, len(self.output_values) if self.output_encoding == "categorical" else 1),
        }
        per_layer = layer_shapes(d, self.n_heads * self.key_size, self.mlp_hidden)
        for layer in range(self.n_layers):
            shapes.update({f"transformer/layer_{layer}/{k}": s for k, s in per_layer.items()})
        return shapes


def layer_shapes(d_model: int, heads_by_key: int, mlp_hidden: int) -> dict[str, tuple[int, ...]]:
    """Shapes of one layer's parameters, keyed as in LAYER_KEYS (``heads_by_key`` = H*K)."""
    d, hk, m = d_model, heads_by_key, mlp_hidden
    return dict(
        zip(LAYER_KEYS, [(d, hk), (hk,), (d, hk), (hk,), (d, hk), (hk,), (hk, d), (d,), (d, m), (m,), (m, d), (d,)])
    )


def direction_label(name: str, value: object = None) -> str:
    """A residual direction's label: ``name`` (no value), else ``name:value`` as Tracr prints its directions, with
    a string quoted where the plain text would read back as another value (``'0'``, ``'True'``, ``'(1, 2)'``):
    binary strings of ``'0'``/``'1'`` are not the integers 0 and 1. Read back by :func:`label_value`."""
    if value is None:
        return name
    text = str(value)
    return f"{name}:{value!r}" if isinstance(value, str) and label_value(text) != value else f"{name}:{text}"


def label_value(raw: str) -> object:
    """The value in a residual label's ``value`` part: an int, float, bool, tuple, quoted string, else the text."""
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    if quoted or (raw.startswith("(") and raw.endswith(")")):  # a quoted string, or a tuple as Tracr prints it
        try:
            value = ast.literal_eval(raw)
            if isinstance(value, str if quoted else tuple):
                return value
        except (ValueError, SyntaxError):
            pass
    return {"True": True, "False": False}.get(raw, raw)
