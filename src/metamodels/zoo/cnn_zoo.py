"""build_cnn_zoo: draw training runs -> train each small CNN (:mod:`~metamodels.zoo.cnn`) -> store its checkpoints.

Two families (paper 000, Appendix A):

- ``skb`` (after Schürholt, Kostadinov & Borth 2021): one fixed CNN (3 convolutions x 16 channels, kernel 5) on
  MNIST-1D; labels activation {relu, tanh}, initialisation (5 kinds), optimizer {adam, rmsprop, sgd}; nuisances
  learning rate, L2, dropout and train fraction.
- ``ejr`` (after Eilertsen et al. 2020): the architecture varies (depth 2-4, width 8-32, kernel 3-7); labels
  dataset (over the offline datasets, not EJR's), batch size, optimizer, activation, initialisation, augmentation.

Run ``i`` of a zoo is a pure function of (family, seed, i). Runs are trained ``shard_size`` at a time (a worker
process or a Ray task each) and committed in order; a killed build resumes from its manifest. Diverged runs are
counted in the manifest, not stored. A row is one checkpoint; splits are by run, so every checkpoint of a run lands
in one split.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from metamodels import artifacts, devices, options
from metamodels import workers as workers_mod
from metamodels.dataset import stats, store
from metamodels.errors import MetamodelsError
from metamodels.zoo import cnn

FORMAT_VERSION = 1
KIND = "cnn"  # the manifest's "kind": how `zoo stats|check|export` tell a CNN zoo from a transformer zoo
FAMILIES = ("skb", "ejr")
SPEC_COLUMNS = [f.name for f in dataclasses.fields(cnn.CnnSpec) if f.name != "epochs"]
SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # run/e<epoch>
        ("run", pa.string()),
        ("family", pa.string()),
        ("split", pa.string()),
        ("shard", pa.int32()),
        ("dataset", pa.string()),
        ("depth", pa.int16()),
        ("width", pa.int16()),
        ("kernel", pa.int16()),
        ("activation", pa.string()),
        ("init", pa.string()),
        ("optimizer", pa.string()),
        ("lr", pa.float32()),
        ("l2", pa.float32()),
        ("dropout", pa.float32()),
        ("train_fraction", pa.float32()),
        ("batch_size", pa.int16()),
        ("augmentation", pa.string()),
        ("seed", pa.int64()),
        ("epoch", pa.int16()),
        ("train_loss", pa.float32()),
        ("train_accuracy", pa.float32()),
        ("test_accuracy", pa.float32()),
        ("classes", pa.int16()),
        ("n_params", pa.int32()),
        ("weights", pa.list_(store.WEIGHT)),
        ("provenance", pa.string()),
    ]
)


@dataclasses.dataclass(frozen=True)
class CnnZooConfig:
    """Everything that determines a CNN zoo's contents (stored in its manifest)."""

    n: int = options.option(help="training runs to store (each with its checkpoints; diverged runs do not count)")
    family: Literal["skb", "ejr"] = options.option("skb", help="skb: one fixed CNN, labels activation, init, "
                                                   "optimizer; ejr: architecture varies, labels add dataset, batch "
                                                   "size, augmentation")  # fmt: skip
    seed: int = options.option(0, help="seed of the runs' hyperparameters and initialisations")
    shard_size: int = options.option(64, help="training runs per shard (one worker's job)")
    epochs: tuple[int, ...] = options.option((2, 6, 12), parse=options.parse_ints, show=options.show_vocab,
                                             help="epochs after which a checkpoint is stored, e.g. 2,6,12")  # fmt: skip
    val_permille: int = 100
    test_permille: int = 100

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise MetamodelsError(f"--family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("n", "shard_size"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.epochs or min(self.epochs) < 1:
            raise MetamodelsError(f"--epochs must be at least 1, got {self.epochs}")

    def run_id(self, index: int) -> str:
        return f"cnn-{self.family}-{self.seed}-{index}"

    def spec(self, index: int) -> cnn.CnnSpec:
        """Run ``index``'s hyperparameters (labels and nuisances), drawn from (family, seed, index)."""
        rng = np.random.default_rng([self.seed, index, FAMILIES.index(self.family), 59])
        pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
        log_uniform = lambda lo, hi: float(math.exp(rng.uniform(math.log(lo), math.log(hi))))  # noqa: E731
        skb = self.family == "skb"
        optimizer = pick(("adam", "rmsprop", "sgd"))
        return cnn.CnnSpec(
            dataset="mnist1d" if skb else pick(cnn.DATASETS),
            depth=3 if skb else int(rng.integers(2, 5)),
            width=16 if skb else pick((8, 16, 24, 32)),
            kernel=5 if skb else pick((3, 5, 7)),
            activation=pick(("relu", "tanh") if skb else ("relu", "tanh", "gelu", "sigmoid")),
            init=pick(("xavier_normal", "he_normal", "orthogonal", "normal", "truncated_normal")),
            optimizer=optimizer,
            lr=log_uniform(1e-2, 1e-1) if optimizer == "sgd" else log_uniform(3e-4, 3e-3),
            l2=0.0 if rng.random() < 0.5 else log_uniform(1e-5, 1e-3),
            dropout=pick((0.0, 0.1, 0.2)),
            train_fraction=float(rng.uniform(0.5, 1.0)),
            batch_size=64 if skb else pick((32, 64, 128, 256)),
            augmentation="none" if skb else pick(("none", "noise", "shift")),
            seed=int(rng.integers(2**31)),
            epochs=tuple(sorted(set(self.epochs))),
        )

    def split(self, run: str) -> str:
        bucket = int(hashlib.sha256(run.encode()).hexdigest()[:8], 16) % 1000
        if bucket < self.test_permille:
            return "test"
        return "val" if bucket < self.test_permille + self.val_permille else "train"


@dataclasses.dataclass(frozen=True)
class CnnZooReport:
    """What a build did: runs and checkpoints stored, shards, failures by reason, wall time."""

    runs: int
    checkpoints: int
    shards: int
    drops: dict[str, int]
    seconds: float

    def describe(self, out: Path) -> str:
        return (f"{out}: {self.runs} CNN training runs, {self.checkpoints} checkpoints in {self.shards} shards "
                f"({self.seconds:.0f} s this run)") + (stats.format_counts("dropped (all runs)", self.drops) if self.drops else "; none dropped")  # fmt: skip


def build_cnn_zoo(out_dir: str | Path, config: CnnZooConfig, *, workers: int = 1, ray_address: str | None = None,
                  device: str = devices.ZOO_DEVICE, progress: bool = False,
                  stop_after_shards: int | None = None) -> CnnZooReport:  # fmt: skip
    """Build (or resume) the CNN zoo ``config`` describes in ``out_dir`` (``device``: where the CNNs train,
    recorded in each row's provenance; ``stop_after_shards``: for tests)."""
    if workers < 1:
        raise MetamodelsError(f"--workers must be at least 1, got {workers}")
    dev = devices.device(device).type
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with store.lock(out):
        manifest = store.open_manifest(out, dataclasses.asdict(config), FORMAT_VERSION)
        manifest["kind"] = KIND
        committed, drops = manifest["shards"], collections.Counter[str]()
        for rec in committed:
            drops.update(rec["drops"])
        stored, first, started = sum(r["runs"] for r in committed), len(committed), time.perf_counter()
        prov = {**artifacts.provenance(), "device": dev}
        results = workers_mod.shard_results(train_shard, lambda k: (config, k, prov, dev), first, workers, ray_address)
        with tqdm(total=config.n, initial=stored, desc="training CNNs", unit="run", disable=not progress) as bar:
            while stored < config.n and (stop_after_shards is None or len(committed) - first < stop_after_shards):
                k, (rows, shard_drops, seconds) = next(results)
                store.write_shard(out, k, rows, SCHEMA)
                runs = len({r["run"] for r in rows})
                committed.append({"file": store.shard_name(k), "runs": runs, "models": len(rows),
                                  "seconds": seconds, "drops": shard_drops})  # fmt: skip
                stored += runs
                drops.update(shard_drops)
                manifest["complete"] = stored >= config.n
                store.write_manifest(out, manifest)
                bar.update(runs)
        results.close()
    return CnnZooReport(stored, sum(r["models"] for r in committed), len(committed), dict(drops),
                        time.perf_counter() - started)  # fmt: skip


def train_shard(config: CnnZooConfig, k: int, provenance: dict, device: str = devices.ZOO_DEVICE) -> tuple[list[dict], dict, float]:
    """Train runs ``[k * shard_size, (k + 1) * shard_size)`` on ``device``: their rows, failures by reason, seconds."""
    import torch

    torch.set_num_threads(1)  # deterministic, and one core per worker
    started, rows, failures = time.perf_counter(), [], collections.Counter[str]()
    for index in range(k * config.shard_size, (k + 1) * config.shard_size):
        spec, run = config.spec(index), config.run_id(index)
        outcome = cnn.train(spec, device)
        if isinstance(outcome, str):
            failures[outcome] += 1
            continue
        fields = {name: getattr(spec, name) for name in SPEC_COLUMNS}
        for c in outcome:
            rows.append({
                "id": f"{run}/e{c.epoch}", "run": run, "family": config.family, "split": config.split(run),
                "shard": k, **fields, "epoch": c.epoch, "train_loss": c.train_loss,
                "train_accuracy": c.train_accuracy, "test_accuracy": c.test_accuracy,
                "classes": int(c.weights["head.bias"].shape[0]), "n_params": sum(w.size for w in c.weights.values()),
                "weights": [{"name": n, "shape": list(w.shape), "data": w.ravel()} for n, w in c.weights.items()],
                "provenance": json.dumps(provenance),
            })  # fmt: skip
    return rows, dict(failures), time.perf_counter() - started


def is_cnn_zoo(directory: Path) -> bool:
    manifest = store.read_manifest(Path(directory))
    return manifest is not None and manifest.get("kind") == KIND


def read(directory: Path, split: str | None = None, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of a CNN zoo (optionally one split); ``weights`` as a dict name -> float32 array of its shape."""
    for path in store.shard_paths(Path(directory), "zoo"):
        needed = [*columns, "split"] if columns and split is not None and "split" not in columns else columns
        for row in store.read_shard(path, needed, split, SCHEMA).to_pylist():
            if "weights" in row:
                row["weights"] = {w["name"]: np.asarray(w["data"], np.float32).reshape(w["shape"])
                                  for w in row["weights"]}  # fmt: skip
            yield row


def spec_of(row: dict) -> cnn.CnnSpec:
    return cnn.CnnSpec(**{name: row[name] for name in SPEC_COLUMNS}, epochs=(int(row["epoch"]),))


@dataclasses.dataclass(frozen=True)
class CheckReport:
    models: int
    mismatched: tuple[str, ...]  # re-measured test accuracy != the stored one

    @property
    def ok(self) -> bool:
        return not self.mismatched

    def describe(self, directory: Path) -> str:
        head = f"{directory}: {self.models} CNN checkpoints re-checked"
        if self.ok:
            return head + ": every stored test accuracy reproduced from the stored weights"
        return head + f": {len(self.mismatched)} do not reproduce, e.g. {', '.join(self.mismatched[:5])}"


def check(directory: Path, progress: bool = False) -> CheckReport:
    """Rebuild every stored CNN from its weights and re-measure its test accuracy: it must equal the stored one."""
    rows = sum(r["models"] for r in store.read_manifest(Path(directory))["shards"])  # type: ignore[index]
    n, mismatched = 0, []
    for row in tqdm(read(directory), total=rows, desc="re-checking", unit="CNN", disable=not progress):
        data = cnn.load_data(row["dataset"])
        measured = cnn.accuracy(cnn.load(spec_of(row), row["classes"], row["weights"]), data.x_test, data.y_test)
        n += 1
        if abs(measured - row["test_accuracy"]) > 1e-6:
            mismatched.append(row["id"])
    return CheckReport(n, tuple(mismatched))


def export(directory: Path, model_id: str, out: Path) -> dict:
    """Write checkpoint ``model_id`` (a row id, or a run id: its last checkpoint) as a CNN file; returns its row.

    The file holds the weights (names and shapes of :mod:`~metamodels.zoo.cnn`) and, as metadata, the architecture
    only: the training hyperparameters stay out, so a prediction cannot read them from the file.
    """
    found = [r for r in read(directory) if model_id in (r["id"], r["run"])]
    if not found:
        raise MetamodelsError(f"{directory}: no CNN checkpoint or run {model_id!r}")
    row = max(found, key=lambda r: r["epoch"])
    meta = {"kind": KIND, "architecture": json.dumps({k: row[k] for k in ("depth", "width", "kernel", "classes")})}
    artifacts.atomic_write(out, lambda tmp: save_file(row["weights"], str(tmp), metadata=meta), suffix=".safetensors")
    return row


def load_cnn_file(path: Path) -> dict[str, np.ndarray]:
    """The weights of a CNN file (``zoo export`` of a CNN zoo, or any safetensors file in that layout)."""
    try:
        weights = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise MetamodelsError(f"{path}: not a readable safetensors file ({e})") from None
    if "head.weight" not in weights or "convs.0.weight" not in weights:
        raise MetamodelsError(f"{path}: not a CNN file (needs convs.<i>.weight/bias and head.weight/bias)")
    return {k: v.astype(np.float32) for k, v in weights.items()}


STAT_COLUMNS = ["split", "epoch", "test_accuracy", "n_params", "dataset", "activation", "init", "optimizer",
                "batch_size", "augmentation", "depth", "width"]  # fmt: skip


def report(directory: Path, plot_path: Path | None) -> str:
    """A CNN zoo's statistics as text (runs, checkpoints, label balance, accuracy); plots to ``plot_path``."""
    manifest = store.read_manifest(Path(directory))
    assert manifest is not None and manifest.get("kind") == KIND, "the CLI dispatches CNN zoos here"
    h: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in read(directory, columns=STAT_COLUMNS):
        h["checkpoints by split"][row["split"]] += 1
        h["test accuracy at the last epoch (tenths)"][int(10 * row["test_accuracy"]) / 10] += row["epoch"] == max(
            manifest["config"]["epochs"]
        )
        for label in ("dataset", "activation", "init", "optimizer", "batch_size", "augmentation"):
            h[label][row[label]] += 1
        h["depth x width"][f"{row['depth']}x{row['width']}"] += 1
        h["parameters (log2 bucket)"][int(np.log2(max(1, row["n_params"])))] += 1
    drops = collections.Counter[str]()
    for rec in manifest["shards"]:
        drops.update(rec["drops"])
    runs, seconds = sum(r["runs"] for r in manifest["shards"]), sum(r["seconds"] for r in manifest["shards"])
    lines = [f"{directory}: {manifest['config']['family']} CNN zoo, {runs} runs, "
             f"{sum(h['checkpoints by split'].values())} checkpoints, {len(manifest['shards'])} shards, complete: "
             f"{manifest['complete']}; {seconds / 3600:.2f} worker-hours ({seconds / max(1, runs):.1f} s per run)"]  # fmt: skip
    for title, counter in [*h.items(), ("not stored, by reason", drops)]:
        lines += stats.table(title, counter)
    if plot_path is not None:
        stats.plot_panels(h, ["test accuracy at the last epoch (tenths)", "activation", "init", "optimizer",
                              "dataset", "parameters (log2 bucket)"], Path(plot_path), columns=3)  # fmt: skip
        lines.append(f"\nplots: {plot_path}")
    return "\n".join(lines)
