"""Zoo statistics (tables and plots), the re-check of every stored model, and export of one model as a model file."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from metamodels.dataset import stats as dataset_stats
from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.transformer import modelfile, trained
from metamodels.transformer.trained import GPTConfig, TrainedModel
from metamodels.zoo import build, programs

COLUMNS = ("program_id", "split", "size", "view", "steps", "heldout_accuracy", "n_params", "n_layers", "d_model",
           "norm", "activation", "causal", "max_seq_len")  # fmt: skip


def collect(directory: Path) -> dict[str, collections.Counter]:
    """Histograms over the whole zoo, read column-wise (no weights loaded)."""
    h: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in build.read_zoo(directory, columns=list(COLUMNS)):
        h["models by split"][row["split"]] += 1
        h["views per program"][row["view"]] += 1
        h["held-out accuracy (hundredths)"][int(100 * row["heldout_accuracy"] + 1e-3) / 100] += 1  # float32 0.95 < 0.95
        h["parameters (log2 bucket)"][int(np.log2(max(1, row["n_params"])))] += 1
        h["layers x d_model"][f"{row['n_layers']}x{row['d_model']}"] += 1
        h["norm, activation, masking"][
            f"{row['norm']},{row['activation']},{'causal' if row['causal'] else 'bidir'}"
        ] += 1
        if row["view"] == 0:
            h["programs by split"][row["split"]] += 1
            h["program size"][row["size"]] += 1
            h["steps to the bar (bucket of 250)"][row["steps"] // 250 * 250] += 1
            h["max_seq_len"][row["max_seq_len"]] += 1
    return dict(h)


def report(directory: Path, plot_path: Path | None) -> str:
    """The statistics as text; writes the plots to ``plot_path`` when given."""
    manifest = store.read_manifest(Path(directory))
    if manifest is None:
        raise store.StoreError(
            f"{directory}: no {store.MANIFEST}; not a zoo directory (build one with `metamodels zoo build`)"
        )
    h, drops = collect(directory), collections.Counter[str]()
    for rec in manifest["shards"]:
        drops.update(rec["drops"])
    shards = manifest["shards"]
    trained = sum(rec["attempted"] for rec in shards)  # distinct programs dealt to the trainer
    stored = sum(rec["programs"] for rec in shards)
    seconds = sum(rec["seconds"] for rec in shards)
    config = manifest["config"]
    lines = [
        f"{directory}: {config['language']} zoo, {stored} programs, {sum(h['models by split'].values())} models, "
        f"{len(shards)} shards, complete: {manifest['complete']}",
        f"converged: {stored} of {trained} programs trained ({100 * stored / max(1, trained):.1f}%); "
        f"{seconds / 3600:.2f} worker-hours, {3600 * stored / max(seconds, 1e-9):.0f} converged programs per worker-hour",
    ]
    for title, counter in [*h.items(), ("not stored, by reason", drops)]:
        lines += dataset_stats.table(title, counter)
    if plot_path is not None:
        _plot(h, Path(plot_path))
        lines.append(f"\nplots: {plot_path}")
    return "\n".join(lines)


def _plot(h: dict[str, collections.Counter], path: Path) -> None:
    panels = ["held-out accuracy (hundredths)", "steps to the bar (bucket of 250)", "parameters (log2 bucket)",
              "program size", "layers x d_model", "norm, activation, masking"]  # fmt: skip
    dataset_stats.plot_panels(h, panels, path, columns=3)


def model_from_row(row: dict) -> TrainedModel:
    """The TrainedModel stored in a zoo row, with its training record (no program text) as metadata."""
    try:
        config = GPTConfig.from_json(json.loads(row["model_config"]))
    except (json.JSONDecodeError, TypeError) as e:
        raise store.StoreError(f"zoo row {row.get('id')}: malformed model_config ({e})") from None
    params = store.params_of(row)  # type: ignore[arg-type]
    record = {k: row[k] for k in ("id", "program_id", "language", "view", "view_step", "steps", "heldout_accuracy",
                                  "train_accuracy", "seed", "lr")}  # fmt: skip
    return TrainedModel(config, params, record)


def find(directory: Path, model_id: str) -> dict:
    """The row of model ``model_id`` (a program id alone means its view 0)."""
    wanted = model_id if "/v" in model_id else f"{model_id}/v0"
    for path in store.shard_paths(Path(directory), build.KIND):
        table = store.read_shard(path, ["id"], schema=build.SCHEMA)
        ids = table.column(0).to_pylist()
        if wanted in ids:
            return store.read_shard(path, schema=build.SCHEMA).slice(ids.index(wanted), 1).to_pylist()[0]
    raise MetamodelsError(f"{directory}: no model {wanted!r} (ids look like rasp-0-17/v0)")


def export(directory: Path, model_id: str, out: Path) -> TrainedModel:
    """Write model ``model_id`` of a zoo as a model file (its program text stays out); returns the model."""
    model = model_from_row(find(directory, model_id))
    modelfile.save(model, out)
    return model


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What :func:`check` found: models re-checked, and the ids of those that did not reproduce their record."""

    models: int
    mismatched: tuple[str, ...]  # forward accuracy on the stored held-out inputs != the stored heldout_accuracy
    below_bar: tuple[str, ...]  # stored (and reproduced) accuracy under the zoo's bar

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.below_bar

    def describe(self, directory: Path) -> str:
        head = f"{directory}: {self.models} models re-checked, {len(self.mismatched)} mismatched, {len(self.below_bar)} below the bar"
        shown = [f"  mismatched: {i}" for i in self.mismatched[:10]] + [
            f"  below the bar: {i}" for i in self.below_bar[:10]
        ]
        return "\n".join([head, *shown])


def check(directory: Path, progress: bool = False, tolerance: float = 1e-6) -> CheckReport:
    """Re-check every stored model: the numpy forward on its ``heldout_inputs``, scored against its program's own
    evaluation (parsed back from the stored text), must give its ``heldout_accuracy``, at or above the zoo's bar."""
    manifest = store.read_manifest(Path(directory))
    if manifest is None:
        raise store.StoreError(f"{directory}: no {store.MANIFEST}; not a zoo directory")
    bar = manifest["config"]["trainer"]["bar"]
    n, mismatched, below = 0, [], []
    total = sum(rec["models"] for rec in manifest["shards"])
    with tqdm(total=total, desc="re-checking", unit="model", disable=not progress) as pbar:
        for row in build.read_zoo(directory):
            inputs = [tuple(xs) for xs in json.loads(row["heldout_inputs"])]
            made = programs.from_text(row["language"], row["program"], json.loads(row["input_vocab"]),
                                      row["max_seq_len"], row["causal"])  # fmt: skip
            accuracy = trained.token_accuracy(model_from_row(row), inputs, [made.evaluate(xs) for xs in inputs])
            n += 1
            if abs(accuracy - row["heldout_accuracy"]) > tolerance:
                mismatched.append(row["id"])
            elif row["heldout_accuracy"] < bar - tolerance:
                below.append(row["id"])
            pbar.update()
    return CheckReport(n, tuple(mismatched), tuple(below))
