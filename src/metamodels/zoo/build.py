"""build_zoo: sample programs -> deduplicate -> train base models on them in shards -> store every view.

The driver walks the program stream (:mod:`~metamodels.zoo.programs`) in order, dropping programs
whose canonical hash or behaviour fingerprint it has seen, and deals the distinct ones out in shards of
``shard_size``. Each shard is one :func:`~metamodels.zoo.trainer.train_many` call (one architecture,
drawn per shard from the configured ranges; learning rate and seed per program) in a worker process
or a Ray task, and is committed strictly in order: a shard file holds one row per stored view, the
manifest records its failures by reason. A killed build resumes from the manifest and stores exactly
what an uninterrupted one does (the stream, the dealing and each shard's training are deterministic).

Splits are by behaviour fingerprint, so every view of a program, and every program computing the same
function at the same settings, lands in one split.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from metamodels import artifacts, devices, options
from metamodels import workers as workers_mod
from metamodels.dataset import stats, store
from metamodels.errors import MetamodelsError
from metamodels.transformer.trained import GPTConfig
from metamodels.zoo import programs, tasks
from metamodels.zoo.trainer import Architecture, TrainerConfig, train_many

FORMAT_VERSION = 1
KIND = "zoo"
SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # program_id/v<view>
        ("program_id", pa.string()),
        ("language", pa.string()),
        ("program", pa.string()),
        ("canonical_hash", pa.string()),
        ("fingerprint", pa.string()),
        ("split", pa.string()),
        ("size", pa.int16()),  # RASP ops or Python statements
        ("shard", pa.int32()),
        ("view", pa.int16()),
        ("view_step", pa.int32()),
        ("steps", pa.int32()),  # steps to convergence (view 0)
        ("heldout_accuracy", pa.float32()),
        ("train_accuracy", pa.float32()),
        ("seed", pa.int64()),  # the base model's initialisation seed
        ("lr", pa.float32()),
        ("d_model", pa.int32()),
        ("n_layers", pa.int16()),
        ("n_heads", pa.int16()),
        ("d_mlp", pa.int32()),
        ("activation", pa.string()),
        ("norm", pa.string()),
        ("causal", pa.bool_()),
        ("n_params", pa.int64()),
        ("max_seq_len", pa.int16()),
        ("input_vocab", pa.string()),  # JSON
        ("output_vocab", pa.string()),  # JSON
        ("model_config", pa.string()),  # JSON: GPTConfig.to_json()
        ("weights", pa.list_(store.WEIGHT)),
        ("heldout_inputs", pa.string()),  # JSON list of inputs never trained on
        ("provenance", pa.string()),
    ]
)
SHARD_FLOATS = 150_000_000  # weights (all views) one shard may hold: its rows are built in memory (600 MB float32)
SAMPLING_DROPS = ("sampler_exhausted", "generator_exhausted", "duplicate", "behaviour_duplicate")  # before training


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    """Everything that determines a zoo's contents (stored in its manifest).

    Per program: vocabulary size and length drawn from the ranges, causal with ``causal_share``,
    learning rate log-uniform in ``lr``. Per shard: one architecture, d_model a power of two in
    ``d_model``, layers and heads uniform in their ranges (heads dividing d_model), d_mlp = 4 d_model,
    LayerNorm with ``layernorm_share``, GELU with ``gelu_share``.
    """

    n: int = options.option(help="distinct programs with a converged model to store (each with its views)")
    language: Literal["rasp", "python"] = options.option("rasp", help="program language: rasp or python")
    seed: int = options.option(0, help="seed of the program stream, the architectures and the training")
    min_ops: int = options.option(1, flag="--ops", upper="max_ops", help="RASP ops or Python outer loops, N or A-B")
    max_ops: int = 5
    vocab_size: tuple[int, int] = options.option((3, 6), help="input values per program, fixed or A-B")
    max_seq_len: tuple[int, int] = options.option((4, 8), help="maximum input length, fixed or A-B")
    causal_share: float = options.option(0.25, help="fraction of programs whose model is causally masked")
    shard_size: int = options.option(256, help="programs per shard (one trainer call; large shards amortise its tail)")
    d_model: tuple[int, int] = options.option((16, 128), help="base-model width range (powers of two)")
    layers: tuple[int, int] = options.option((1, 4), help="base-model layer range")
    heads: tuple[int, int] = options.option((1, 4), help="attention heads range")
    layernorm_share: float = 0.5
    gelu_share: float = 0.5
    lr: tuple[float, float] = (1e-3, 3e-3)
    val_permille: int = 100
    test_permille: int = 100
    trainer: TrainerConfig = TrainerConfig()
    data: tasks.DataConfig = tasks.DataConfig()

    def __post_init__(self) -> None:
        if self.language not in programs.LANGUAGES:
            raise MetamodelsError(f"--language must be one of {programs.LANGUAGES}, got {self.language!r}")
        for name in ("n", "shard_size"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("vocab_size", "max_seq_len", "d_model", "layers", "heads"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise MetamodelsError(f"--{name.replace('_', '-')} range must satisfy 1 <= A <= B, got {lo}-{hi}")
        if not self.widths():
            raise MetamodelsError(f"--d-model {self.d_model[0]}-{self.d_model[1]} holds no power of two")
        if not 1 <= self.min_ops <= self.max_ops:
            raise MetamodelsError(f"--ops must satisfy 1 <= A <= B, got {self.min_ops}-{self.max_ops}")
        for name in ("causal_share", "layernorm_share", "gelu_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")

    def widths(self) -> list[int]:
        return [2**e for e in range(12) if self.d_model[0] <= 2**e <= self.d_model[1]]

    def domain(self) -> programs.Domain:
        return programs.Domain(self.language, self.seed, self.min_ops, self.max_ops, self.vocab_size,
                               self.max_seq_len, self.causal_share)  # fmt: skip

    def architecture(self, k: int) -> Architecture:
        """Shard ``k``'s base-model architecture."""
        rng = np.random.default_rng([self.seed, k, 31])
        d = self.widths()[int(rng.integers(len(self.widths())))]
        heads = [h for h in range(self.heads[0], self.heads[1] + 1) if d % h == 0] or [1]
        return Architecture(
            d_model=d, n_layers=int(rng.integers(self.layers[0], self.layers[1] + 1)),
            n_heads=heads[int(rng.integers(len(heads)))], d_mlp=4 * d,
            activation="gelu" if rng.random() < self.gelu_share else "relu",
            norm="layernorm" if rng.random() < self.layernorm_share else "none",
        )  # fmt: skip

    def programs_in_shard(self, k: int) -> int:
        """``shard_size``, or fewer for a large architecture: a shard's stored weights stay within SHARD_FLOATS."""
        arch = self.architecture(k)
        largest = GPTConfig(**dataclasses.asdict(arch), input_vocab=tuple(range(self.vocab_size[1])),
                            output_vocab=tuple(range(self.data.max_output_values)), max_seq_len=self.max_seq_len[1])  # fmt: skip
        per_program = largest.n_params * (1 + len(self.trainer.view_steps))
        return max(1, min(self.shard_size, SHARD_FLOATS // per_program))

    def program_seed(self, index: int) -> tuple[int, float]:
        """The initialisation seed and learning rate of program ``index``'s base model."""
        rng = np.random.default_rng([self.seed, index, 41])
        lo, hi = self.lr
        return int(rng.integers(2**31)), float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclasses.dataclass(frozen=True)
class ZooReport:
    """What a build did: programs and models stored, shards, failures by reason, wall time."""

    programs: int
    models: int
    shards: int
    drops: dict[str, int]
    seconds: float
    resumed_from_shard: int

    def describe(self, out: Path) -> str:
        """What ``metamodels zoo build`` prints."""
        rate = 3600 * self.programs / self.seconds if self.seconds else 0.0
        head = (f"{out}: {self.programs} programs, {self.models} models in {self.shards} shards "
                f"({self.seconds:.0f} s this run; {rate:.0f} converged programs/hour over all runs' shards)")  # fmt: skip
        return head + stats.format_counts("dropped (all runs)", self.drops)


def build_zoo(
    out_dir: str | Path,
    config: ZooConfig,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    device: str = devices.ZOO_DEVICE,
    progress: bool = False,
    stop_after_shards: int | None = None,
) -> ZooReport:
    """Build (or resume) the zoo ``config`` describes in ``out_dir``.

    ``device``: where each shard's models train (every worker uses it; recorded in each row's provenance).
    ``stop_after_shards`` stops after committing that many new shards (for tests of resumption).
    """
    if workers < 1:
        raise MetamodelsError(f"--workers must be at least 1, got {workers}")
    dev = devices.device(device).type
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with store.lock(out):
        return _build(out, config, workers, ray_address, dev, progress, stop_after_shards)


def _build(
    out: Path, config: ZooConfig, workers: int, ray: str | None, dev: str, progress: bool, stop: int | None
) -> ZooReport:
    manifest = store.open_manifest(out, dataclasses.asdict(config), FORMAT_VERSION)
    committed = manifest["shards"]
    drops: collections.Counter[str] = collections.Counter()
    for rec in committed:
        drops.update(rec["drops"])
    stored = sum(rec["programs"] for rec in committed)
    started, first_new = time.perf_counter(), len(committed)
    deal = _Dealer(config)
    prov = {**artifacts.provenance(), "device": dev}
    results = workers_mod.shard_results(
        train_shard, lambda k: (config, k, deal.shard(k), prov, dev), first_new, workers, ray
    )
    with tqdm(total=config.n, initial=stored, desc="training", unit="prog", disable=not progress) as bar:
        while stored < config.n and (stop is None or len(committed) - first_new < stop):
            k, (rows, shard_drops, seconds) = next(results)
            shard_drops = {**shard_drops, **deal.drops[k]}
            for row in rows:
                row["split"] = _split(row["fingerprint"], config)
            store.write_shard(out, k, rows, SCHEMA)
            n_programs = len({r["program_id"] for r in rows})
            committed.append({"file": store.shard_name(k), "programs": n_programs, "models": len(rows),
                              "attempted": len(deal.shard(k)), "seconds": seconds, "drops": shard_drops})  # fmt: skip
            stored += n_programs
            drops.update(shard_drops)
            manifest["complete"] = stored >= config.n
            store.write_manifest(out, manifest)
            bar.update(n_programs)
            if not deal.shard(k + 1) and stored < config.n:
                break  # the stream ran dry (every index up to the dealer's limit was tried)
    results.close()
    models = sum(rec["models"] for rec in committed)
    return ZooReport(stored, models, len(committed), dict(drops), time.perf_counter() - started, first_new)


class _Dealer:
    """Distinct programs of the stream (by canonical hash and by behaviour), dealt out in shards, lazily."""

    LIMIT_FACTOR = 50  # give up after this many stream indices per program asked for

    def __init__(self, config: ZooConfig) -> None:
        self.config, self.domain = config, config.domain()
        self.next_index, self.dealt = 0, []  # type: ignore[var-annotated]
        self.hashes: set[str] = set()
        self.fingerprints: set[str] = set()
        self.drops: dict[int, dict[str, int]] = collections.defaultdict(dict)
        self.ends: list[int] = []  # shard k holds dealt programs [ends[k - 1], ends[k])

    def shard(self, k: int) -> list[int]:
        """Stream indices of the programs of shard ``k``."""
        while len(self.ends) <= k:
            self.ends.append((self.ends[-1] if self.ends else 0) + self.config.programs_in_shard(len(self.ends)))
        start, end = self.ends[k - 1] if k else 0, self.ends[k]
        limit = self.LIMIT_FACTOR * max(self.config.n, end)
        while len(self.dealt) < end and self.next_index < limit:
            shard = bisect.bisect_right(self.ends, len(self.dealt))  # the shard being filled
            reason = self._take(self.next_index)
            if reason is not None:
                self.drops[shard][reason] = self.drops[shard].get(reason, 0) + 1
            self.next_index += 1
        return [c.index for c in self.dealt[start:end]]

    def _take(self, index: int) -> str | None:
        c = programs.candidate(self.domain, index)
        if isinstance(c, str):
            return c
        if c.canonical_hash in self.hashes:
            return "duplicate"
        if c.fingerprint in self.fingerprints:
            return "behaviour_duplicate"
        self.hashes.add(c.canonical_hash)
        self.fingerprints.add(c.fingerprint)
        self.dealt.append(c)
        return None


def train_shard(
    config: ZooConfig, k: int, indices: list[int], provenance: dict, device: str = devices.ZOO_DEVICE
) -> tuple[list[dict], dict, float]:
    """Train shard ``k``'s programs on ``device``; its rows (one per view, split unset), failures by reason, seconds."""
    torch.set_num_threads(1)  # deterministic, and one core per worker
    started = time.perf_counter()
    domain, failures = config.domain(), collections.Counter[str]()
    made: dict[str, tuple[programs.Candidate, tasks.Task]] = {}
    for index in indices:
        c = programs.candidate(domain, index)
        assert not isinstance(c, str), "the dealer only deals programs that exist"
        seed, lr = config.program_seed(index)
        key = f"{config.language}-{config.seed}-{index}"
        task = tasks.make_task(key, c.evaluate, c.vocab, c.max_seq_len, c.causal, seed, lr, config.data)
        if isinstance(task, str):
            failures[task] += 1
        else:
            made[key] = (c, task)
    arch, rows = config.architecture(k), []
    for outcome in train_many([t for _, t in made.values()], arch, config.trainer, [config.seed, k], device):
        if outcome.failure is not None:
            failures[outcome.failure] += 1
            continue
        c, task = made[outcome.key]
        heldout = json.dumps([list(xs) for xs in tasks.heldout_inputs(task)])
        for view in outcome.views:
            model = view.model
            rows.append({
                "id": f"{outcome.key}/v{view.index}", "program_id": outcome.key, "language": c.language,
                "program": c.text, "canonical_hash": c.canonical_hash, "fingerprint": c.fingerprint, "split": "",
                "size": c.size, "shard": k, "view": view.index, "view_step": view.step, "steps": outcome.steps,
                "heldout_accuracy": view.heldout_accuracy, "train_accuracy": view.train_accuracy,
                "seed": task.seed, "lr": task.lr, **dataclasses.asdict(arch), "causal": c.causal,
                "n_params": model.n_params, "max_seq_len": c.max_seq_len,
                "input_vocab": json.dumps(list(c.vocab)), "output_vocab": json.dumps(list(task.output_vocab)),
                "model_config": json.dumps(model.config.to_json()),
                "weights": [{"name": n, "shape": list(v.shape), "data": v.ravel()}  # numpy: no float objects
                            for n, v in model.params.items()],
                "heldout_inputs": heldout, "provenance": json.dumps(provenance),
            })  # fmt: skip
    return rows, dict(failures), time.perf_counter() - started


def _split(fingerprint: str, config: ZooConfig) -> str:
    bucket = int(fingerprint[:8], 16) % 1000
    if bucket < config.test_permille:
        return "test"
    return "val" if bucket < config.test_permille + config.val_permille else "train"


def read_zoo(directory: Path, split: str | None = None, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a zoo directory (optionally one split), shard by shard, 64 rows converted at a time.

    ``weights`` come as ``{name, shape, data}`` dicts whose ``data`` is a float32 numpy array (a view into Arrow's
    buffer: Python float lists would cost ~8x the memory).
    """
    for path in store.shard_paths(Path(directory), KIND):
        needed = [*columns, "split"] if columns and split is not None and "split" not in columns else columns
        table = store.read_shard(path, needed, split, SCHEMA)
        for batch in table.to_batches(max_chunksize=64):
            names = [n for n in batch.schema.names if n != "weights"]
            rows = batch.select(names).to_pylist()
            if "weights" in batch.schema.names:
                for row, weights in zip(rows, _weight_arrays(batch.column("weights"))):
                    row["weights"] = weights
            yield from rows


def _weight_arrays(column: pa.ListArray) -> list[list[dict]]:
    """Per row, its weights with ``data`` as float32 arrays (one flatten of the column, then views)."""
    name, shape, data = column.flatten().flatten()  # struct fields with the slice's offset applied
    names, shapes = name.to_pylist(), shape.to_pylist()
    values = data.flatten().to_numpy(zero_copy_only=False)
    offsets = data.offsets.to_numpy() - data.offsets[0].as_py()
    row_offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
    out = []
    for r in range(len(column)):
        out.append([{"name": names[w], "shape": shapes[w], "data": values[offsets[w] : offsets[w + 1]]}
                    for w in range(row_offsets[r], row_offsets[r + 1])])  # fmt: skip
    return out
