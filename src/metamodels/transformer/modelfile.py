"""Model files: a compiled (or a trained) transformer in one self-contained safetensors file.

A trained base model (:mod:`~metamodels.transformer.trained`) is stored under ``format`` =
``metamodels.trained-transformer``: its parameters by their names, and as ``config`` its
:class:`~metamodels.transformer.trained.GPTConfig` fields plus ``metadata`` (the training record;
``program_text`` only when saved ``with_source``). The rest of this docstring is the compiled format.

Tensors: every parameter of :class:`~metamodels.transformer.compiled.CompiledModel` under its
layout key (see that module), float32, the read-out ``unembed`` included.
Metadata (safetensors' string map): ``format`` = ``metamodels.compiled-transformer``,
``format_version``, and ``config``, a JSON object with the architecture
(``n_layers``, ``n_heads``, ``key_size``, ``mlp_hidden``), the input vocabulary in
embedding-row order (``input_values``, BOS and PAD included), the compile
``settings``, ``output_encoding`` and the decoding table ``output_values``,
``residual_labels``, and only when saved ``with_source`` (provenance: a model file
handed to a decompiler must not carry the answer) ``layer_of`` and the source ``program_text``;
``densified`` (how a dense model was made, see densify.py) and
``versions``. Loading never executes code and checks every shape and value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from metamodels import artifacts
from metamodels.errors import MetamodelsError
from metamodels.transformer import trained
from metamodels.transformer.compiled import CompiledModel, CompileSettings

FORMAT = "metamodels.compiled-transformer"
FORMAT_VERSION = "1"
TRAINED_FORMAT = "metamodels.trained-transformer"  # a trained base model (transformer/trained.py)
VERSIONS = {FORMAT: FORMAT_VERSION, TRAINED_FORMAT: "1"}


class ModelFileError(MetamodelsError):
    """A model file that cannot be read: names the file and the problem."""


def header(model: CompiledModel | trained.TrainedModel, *, with_source: bool = False) -> dict[str, str]:
    """The metadata a model file carries (``format``, ``format_version``, ``config`` as JSON text)."""
    if isinstance(model, trained.TrainedModel):
        meta = {k: v for k, v in model.metadata.items() if with_source or k != "program_text"}
        config = {**model.config.to_json(), "metadata": meta}
        kind = TRAINED_FORMAT
    else:
        if not with_source:
            model = dataclasses.replace(model, program_text=None, layer_of={})
        config, kind = {**model.config(), "settings": dataclasses.asdict(model.settings)}, FORMAT
    config["versions"] = artifacts.versions()
    return {"format": kind, "format_version": VERSIONS[kind], "config": json.dumps(config)}


def save(model: CompiledModel | trained.TrainedModel, path: str | Path, *, with_source: bool = False) -> None:
    """Write a compiled or trained ``model`` to ``path``; ``with_source`` keeps its program text (and sublayer map)."""
    metadata = header(model, with_source=with_source)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.params.items()}
    path = Path(path)
    if not path.parent.is_dir():
        raise ModelFileError(f"{path}: the directory {path.parent} does not exist")
    try:
        artifacts.atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except SafetensorError as e:
        raise ModelFileError(f"{path}: cannot write ({e})") from None


def load_any(path: str | Path) -> CompiledModel | trained.TrainedModel:
    """A compiled or a trained model file (``metamodels run`` takes either); ModelFileError says what is wrong."""
    return _read(Path(path), trained_ok=True)


def load(path: str | Path) -> CompiledModel:
    """Read and validate a compiled model file; ModelFileError says what is wrong."""
    model = _read(Path(path), trained_ok=False)
    assert isinstance(model, CompiledModel)
    return model


def _read(path: Path, trained_ok: bool) -> CompiledModel | trained.TrainedModel:
    """Open once; the metadata says which kind of model file it is, then that kind's tensors are read."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            kind = _kind(metadata, str(path))
            if kind == TRAINED_FORMAT and not trained_ok:
                raise ModelFileError(f"{path}: a trained transformer, not a compiled one; `metamodels run` runs "
                                     "it, but decompiling and verifying trained models is not supported yet")  # fmt: skip
            if kind == TRAINED_FORMAT:
                return _trained(path, f, metadata)
            params = {key: f.get_tensor(key) for key in f.keys()}
    except ModelFileError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({e})") from None
    return _compiled(metadata, params, str(path))


def _kind(metadata: dict, where: str) -> str:
    kind = metadata.get("format")
    if kind not in VERSIONS:
        raise ModelFileError(f"{where}: not a metamodels model file (format {kind!r}, expected {FORMAT!r})")
    if metadata.get("format_version") != VERSIONS[kind]:
        raise ModelFileError(f"{where}: format version {metadata.get('format_version')!r} is not supported "
                             f"(expected {VERSIONS[kind]})")  # fmt: skip
    return str(kind)


def from_header(metadata: dict, params: dict[str, np.ndarray], where: str) -> CompiledModel | trained.TrainedModel:
    """The model that a model-file header (:func:`header`) and its tensors describe, checked as a file is."""
    if _kind(metadata, where) == FORMAT:
        return _compiled(metadata, params, where)
    config, record = _trained_config(metadata, where)
    try:
        model = trained.TrainedModel(config, {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}, record)
    except MetamodelsError as e:
        raise ModelFileError(f"{where}: {e}") from None
    if not all(np.isfinite(v).all() for v in model.params.values()):
        raise ModelFileError(f"{where}: parameters are not finite")
    return model


def _compiled(metadata: dict, params: dict[str, np.ndarray], path: str) -> CompiledModel:
    try:
        config = json.loads(metadata["config"])
        settings = config["settings"]
        model = CompiledModel.from_config(
            params, CompileSettings(**{**settings, "vocab": tuple(settings["vocab"])}), config
        )
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: invalid metadata ({type(e).__name__}: {str(e)[:200]})") from None
    check(model, str(path))
    return model


def _check_sizes(model: CompiledModel, where: str) -> None:
    """The configuration's sizes against the tensors actually present (a 16 KB file may claim a billion layers)."""
    layers = {key.split("/")[1] for key in model.params if key.startswith("transformer/layer_")}
    sizes = {"n_layers": model.n_layers, "n_heads": model.n_heads, "key_size": model.key_size,
             "mlp_hidden": model.mlp_hidden, "max_seq_len": model.settings.max_seq_len}  # fmt: skip
    bad = [f"{k}={v!r}" for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad or model.n_layers != len(layers):
        raise ModelFileError(f"{where}: the configuration's sizes ({', '.join(bad) or f'n_layers={model.n_layers}'}) "
                             f"do not match the {len(layers)} layers of tensors in the file")  # fmt: skip
    query = model.params.get("transformer/layer_0/attn/query/w")
    if query is not None and query.shape[-1] != model.n_heads * model.key_size:
        raise ModelFileError(
            f"{where}: n_heads * key_size = {model.n_heads * model.key_size} but the query width is {query.shape[-1]}"
        )
    if model.settings.max_seq_len + 1 != len(model.params.get("pos_embed/embeddings", ())):
        raise ModelFileError(
            f"{where}: max_seq_len {model.settings.max_seq_len} does not match the position embeddings"
        )
    values = [*model.input_values, *model.output_values, *model.settings.vocab]
    if any(not isinstance(v, (int, float, str)) for v in values):
        raise ModelFileError(f"{where}: vocabulary values must be numbers or strings")


def check(model: CompiledModel, where: str = "model") -> None:
    """Raise ModelFileError if parameters are missing, extra, misshapen or not finite."""
    if "token_embed/embeddings" not in model.params:
        raise ModelFileError(f"{where}: missing parameter 'token_embed/embeddings'")
    _check_sizes(model, where)  # before anything is built from the sizes the metadata claims
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


def _trained_config(header: dict, where: object) -> tuple[trained.GPTConfig, dict]:
    """A trained model's config and training record from its header."""
    try:
        data = json.loads(header.get("config", ""))
        data.pop("versions", None)
        metadata = data.pop("metadata", {})
        return trained.GPTConfig.from_json(data), metadata if isinstance(metadata, dict) else {}
    except (json.JSONDecodeError, TypeError, AttributeError, RecursionError) as e:
        raise ModelFileError(f"{where}: malformed trained-model config ({type(e).__name__}: {e})") from None
    except MetamodelsError as e:
        raise ModelFileError(f"{where}: {e}") from None


def _trained(path: Path, handle: safe_open, header: dict) -> trained.TrainedModel:
    """The trained model in an open file whose metadata says it is one; every shape checked before reading."""
    config, metadata = _trained_config(header, path)
    try:
        shapes = config.shapes()
        if set(handle.keys()) != set(shapes):
            raise MetamodelsError(f"tensors {sorted(handle.keys())[:6]}... do not match the config")
        for name, shape in shapes.items():
            if tuple(handle.get_slice(name).get_shape()) != shape:
                raise MetamodelsError(f"{name} has shape {handle.get_slice(name).get_shape()}, expected {shape}")
        params = {name: handle.get_tensor(name).astype(np.float32) for name in shapes}
    except MetamodelsError as e:
        raise ModelFileError(f"{path}: {e}") from None
    if not all(np.isfinite(v).all() for v in params.values()):
        raise ModelFileError(f"{path}: parameters are not finite")
    return trained.TrainedModel(config, params, metadata)
