"""Parquet storage of (program, compiled weights) examples: schema, shards, manifest.

One row per example (see ``SCHEMA``). Weights are a list of
``{name, shape, data}`` structs (float32, row-major), so any Parquet reader
(pyarrow, pandas, ``datasets.load_dataset("parquet", ...)``) sees named arrays
with their shapes; values of mixed type (vocabularies, decoding tables, battery
inputs/outputs) are JSON strings. A directory holds ``shard_NNNNNN.parquet``
files, each written atomically (temporary file, then rename), and
``manifest.json``, rewritten atomically after every shard.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metamodels import artifacts
from metamodels.errors import MetamodelsError
from metamodels.transformer.compiled import CompiledModel, CompileSettings

WEIGHT = pa.struct([("name", pa.string()), ("shape", pa.list_(pa.int32())), ("data", pa.list_(pa.float32()))])
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("seed", pa.int64()),
        ("index", pa.int64()),
        ("canonical_hash", pa.string()),
        ("fingerprint", pa.string()),
        ("split", pa.string()),
        ("program", pa.string()),
        ("tokens", pa.list_(pa.int16())),
        ("vocab_version", pa.string()),
        ("n_ops", pa.int16()),
        ("n_layers", pa.int16()),
        ("d_model", pa.int32()),
        ("n_params", pa.int64()),
        ("vocab", pa.string()),
        ("max_seq_len", pa.int16()),
        ("causal", pa.bool_()),
        ("mlp_exactness", pa.int32()),
        ("weights", pa.list_(WEIGHT)),
        ("model_config", pa.string()),
        ("battery_inputs", pa.string()),
        ("battery_outputs", pa.string()),
        ("provenance", pa.string()),
    ]
)
MANIFEST = "manifest.json"
LOCK = ".lock"  # held by the one build writing into a directory


class Weight(TypedDict):
    name: str
    shape: list[int]
    data: list[float]


class ModelColumns(TypedDict):
    """The columns of a :class:`Row` that hold its compiled model."""

    n_layers: int
    d_model: int
    n_params: int
    vocab: str
    max_seq_len: int
    causal: bool
    mlp_exactness: int
    weights: list[Weight]
    model_config: str


class Row(ModelColumns):
    """One stored example, as pyarrow's ``to_pylist`` reads it (the columns of :data:`SCHEMA`).

    The program (``program`` text, its ``tokens``, ``canonical_hash``, ``n_ops``), the compiled model
    (``weights`` and ``model_config`` plus the settings columns ``vocab``, ``max_seq_len``, ``causal``,
    ``mlp_exactness``) and the battery it was judged on (``battery_inputs`` and ``battery_outputs``, JSON).
    ``tokens`` is None for a program with value tables.
    """

    id: str
    seed: int
    index: int
    canonical_hash: str
    fingerprint: str
    split: str
    program: str
    tokens: list[int] | None
    vocab_version: str
    n_ops: int
    battery_inputs: str
    battery_outputs: str
    provenance: str


class StoreError(MetamodelsError):
    """A dataset file that is missing, partial or malformed; names the file."""


def shard_name(k: int) -> str:
    return f"shard_{k:06d}.parquet"


def model_row(model: CompiledModel) -> ModelColumns:
    """The columns that hold a compiled model (weights, settings, metadata)."""
    s = model.settings
    config = {**model.config(), "bos": s.bos, "pad": s.pad}  # settings are columns of their own
    return {
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "n_params": model.n_params,
        "vocab": json.dumps(list(s.vocab)),
        "max_seq_len": s.max_seq_len,
        "causal": s.causal,
        "mlp_exactness": s.mlp_exactness,
        "weights": [{"name": k, "shape": list(v.shape), "data": v.ravel().tolist()} for k, v in model.params.items()],
        "model_config": json.dumps(config),
    }


def params_of(row: Row) -> dict[str, np.ndarray]:
    """A row's weights as named float32 arrays."""
    return {w["name"]: np.asarray(w["data"], dtype=np.float32).reshape(w["shape"]) for w in row["weights"]}


def model_from_row(row: Row) -> CompiledModel:
    """Rebuild the CompiledModel stored in a row (as read by pyarrow's ``to_pylist``)."""
    config = json.loads(row["model_config"])
    settings = CompileSettings(
        vocab=tuple(json.loads(row["vocab"])), max_seq_len=int(row["max_seq_len"]), causal=bool(row["causal"]),
        mlp_exactness=int(row["mlp_exactness"]), bos=config["bos"], pad=config["pad"],
    )  # fmt: skip
    return CompiledModel.from_config(params_of(row), settings, {**config, "program_text": row["program"]})


@contextlib.contextmanager
def lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` (our pid) while writing; a second live writer is refused, a stale lock taken over."""
    path = Path(directory) / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
                os.kill(pid, 0)  # raises if no such process: the lock is stale
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)
                continue
            except PermissionError:  # alive, another user's
                pass
            raise StoreError(
                f"{directory}: another build (pid {pid}) is writing here; wait for it or use another directory"
            ) from None
    else:
        raise StoreError(f"{directory}: cannot take the lock {path}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


def write_shard(directory: Path, k: int, rows: Sequence[dict], schema: pa.Schema = SCHEMA) -> Path:
    """Write rows atomically as shard k; returns its path."""
    path = directory / shard_name(k)
    table = pa.Table.from_pylist(list(rows), schema=schema)
    artifacts.atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def read_shard(
    path: Path, columns: Sequence[str] | None = None, split: str | None = None, schema: pa.Schema = SCHEMA
) -> pa.Table:
    """Read one shard (optionally only one split's rows), checking it is a complete Parquet file with ``schema``."""
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
    except (OSError, pa.ArrowInvalid) as e:
        raise StoreError(f"{path}: not a readable Parquet shard ({e})") from None
    missing = [f.name for f in schema if (columns is None or f.name in columns) and f.name not in table.schema.names]
    if missing:
        raise StoreError(f"{path}: missing columns {missing}")
    return table


def write_manifest(directory: Path, manifest: dict) -> None:
    artifacts.write_text(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def read_manifest(directory: Path) -> dict | None:
    """The manifest, or None for a directory without one; StoreError if it is malformed."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["shards"], manifest["config"]  # noqa: B018 - required keys
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise StoreError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None
    return manifest


def open_manifest(directory: Path, config: dict, format_version: int) -> dict:
    """The manifest of a build of ``config`` in ``directory``: the stored one to resume, or a new one.

    StoreError if the directory holds a different build, shards without a manifest, or misses a listed shard.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        if any(directory.glob("shard_*.parquet")):
            raise StoreError(f"{directory}: holds shards but no manifest; use an empty directory")
        return {"format_version": format_version, "config": config, "shards": [], "complete": False,
                "provenance": artifacts.provenance()}  # fmt: skip
    if manifest["config"] != json.loads(json.dumps(config)):  # compared as JSON: tuples were stored as lists
        raise StoreError(
            f"{directory}: holds a build with different settings {manifest['config']}; use another directory"
        )
    for rec in manifest["shards"]:
        if not (directory / rec["file"]).is_file():
            raise StoreError(f"{directory / rec['file']}: listed in the manifest but missing")
    return manifest


def shard_paths(directory: Path, kind: str = "dataset") -> list[Path]:
    """Committed shards, from the manifest, each checked to exist (``kind``: dataset or zoo, for the message)."""
    manifest = read_manifest(Path(directory))
    if manifest is None:
        raise StoreError(
            f"{directory}: no {MANIFEST}; not a {kind} directory (build one with `metamodels {kind} build`)"
        )
    paths = [Path(directory) / s["file"] for s in manifest["shards"]]
    for p in paths:
        if not p.is_file():
            raise StoreError(f"{p}: listed in the manifest but missing")
    return paths


def iter_rows(directory: Path, split: str | None = None, columns: Sequence[str] | None = None) -> Iterator[Row]:
    """Rows of a dataset directory (optionally one split), shard by shard."""
    for path in shard_paths(Path(directory)):
        needed = [*columns, "split"] if columns and split is not None and "split" not in columns else columns
        yield from read_shard(path, needed, split).to_pylist()
