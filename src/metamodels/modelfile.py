"""Model files: a compiled transformer in one self-contained safetensors file.

Tensors: every parameter of :class:`~metamodels.compiled.CompiledModel` under its
layout key (see that module), float32, the read-out ``unembed`` included.
Metadata (safetensors' string map): ``format`` = ``metamodels.compiled-transformer``,
``format_version``, and ``config``, a JSON object with the architecture
(``n_layers``, ``n_heads``, ``key_size``, ``mlp_hidden``), the input vocabulary in
embedding-row order (``input_values``, BOS and PAD included), the compile
``settings``, ``output_encoding`` and the decoding table ``output_values``,
``residual_labels``, ``layer_of``, the source ``program_text`` when known,
``densified`` (how a dense model was made, see densify.py) and
``versions``. Loading never executes code and checks every shape and value.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from metamodels.compiled import CompiledModel, CompileSettings

FORMAT = "metamodels.compiled-transformer"
FORMAT_VERSION = "1"


class ModelFileError(ValueError):
    """A model file that cannot be read: names the file and the problem."""


def versions() -> dict[str, str]:
    """Versions of the packages that made an artifact."""
    out = {}
    for package in ("metamodels", "tracr-pypi", "jax", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


def save(model: CompiledModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` (safetensors)."""
    config = {**model.config(), "settings": dataclasses.asdict(model.settings), "versions": versions()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(config)}
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.params.items()}, str(path), metadata=metadata
    )


def load(path: str | Path) -> CompiledModel:
    """Read and validate a model file; ModelFileError says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            params = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a metamodels model file (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {metadata.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        config = json.loads(metadata["config"])
        settings = config["settings"]
        model = CompiledModel.from_config(
            params, CompileSettings(**{**settings, "vocab": tuple(settings["vocab"])}), config
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: invalid metadata ({type(e).__name__}: {e})") from None
    check(model, str(path))
    return model


def check(model: CompiledModel, where: str = "model") -> None:
    """Raise ModelFileError if parameters are missing, extra, misshapen or not finite."""
    if "token_embed/embeddings" not in model.params:
        raise ModelFileError(f"{where}: missing parameter 'token_embed/embeddings'")
    expected = model.expected_shapes()
    missing, extra = sorted(set(expected) - set(model.params)), sorted(set(model.params) - set(expected))
    if missing or extra:
        raise ModelFileError(
            f"{where}: parameters do not match the configuration (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    for key, shape in expected.items():
        array = model.params[key]
        if tuple(array.shape) != shape:
            raise ModelFileError(f"{where}: parameter {key!r} has shape {tuple(array.shape)}, expected {shape}")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{where}: parameter {key!r} contains NaN or infinite values")
    if model.output_encoding not in ("categorical", "numerical"):
        raise ModelFileError(f"{where}: unknown output encoding {model.output_encoding!r}")
    settings = model.settings
    if settings.bos not in model.input_values or settings.pad not in model.input_values:
        raise ModelFileError(
            f"{where}: the input vocabulary lacks the BOS/PAD tokens {settings.bos!r}/{settings.pad!r}"
        )
    if any(isinstance(v, float) and not math.isfinite(v) for v in model.output_values):
        raise ModelFileError(f"{where}: output decoding table contains non-finite values")
