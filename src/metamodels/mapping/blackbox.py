"""The black-box baseline of model mapping: read a model's behaviour, not its weights.

For each evaluated model, the baseline runs the model on ``probes`` random inputs of its own vocabulary and length
(seeded, independent of the held-out inputs the metrics use), runs every program of a candidate pool on the same
inputs, and answers the candidate that agrees with the model on the most (input, position) pairs (ties: the first in
pool order). The pool is ``pool`` distinct programs of the zoo's train split, drawn with a seed: the same prior the
meta-model learns from. Its answer is scored exactly like a decoded program (:func:`metamodels.mapping.training.score`).

Because a zoo splits by behaviour fingerprint, no train program computes a test program's function on the fingerprint
battery; the baseline's functional accuracy on the test split measures how often that still leaves an equivalent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.mapping import data, training
from metamodels.transformer import trained
from metamodels.zoo import build, programs, stats, tasks


def evaluate(zoo: Path, split: str = "test", pool: int = 500, probes: int = 16, seed: int = 0,
             limit: int | None = None, progress: bool = True) -> dict:  # fmt: skip
    """The baseline's metrics on a zoo split, summarised like :func:`metamodels.mapping.training.evaluate`."""
    manifest = store.read_manifest(Path(zoo))
    if manifest is None:
        raise store.StoreError(f"{zoo}: no {store.MANIFEST}; not a zoo directory")
    vocab = data.vocabulary(manifest["config"]["language"])
    texts = data.prior_texts(zoo, pool, seed)
    if not texts:
        raise MetamodelsError(f"{zoo}: no programs in the train split")
    cache: dict[tuple, tuple[list[tuple], list[list | None]]] = {}
    results = []
    with tqdm(desc=f"black box on {split}", unit="model", disable=not progress) as bar:
        for row in build.read_zoo(zoo, split=split):
            values = tuple(json.loads(row["input_vocab"]))
            key = (values, row["max_seq_len"], row["causal"])
            if key not in cache:
                cache[key] = _pool_outputs(row["language"], texts, key, probes, seed)
            inputs, outputs = cache[key]
            behaviour = trained.run(stats.model_from_row(row), inputs)
            best = max(range(len(texts)), key=lambda i: _agreement(outputs[i], behaviour))
            ids = vocab.ids
            chosen = [ids[t] for t in data.target_strings(row["language"], texts[best])]
            target = [ids[t] for t in data.target_strings(row["language"], row["program"])]
            results.append({"id": row["id"], "size": row["size"], "n_params": row["n_params"],
                            **training.score(vocab, chosen, row, target)})  # fmt: skip
            bar.update()
            if limit is not None and len(results) >= limit:
                break
    if not results:
        raise MetamodelsError(f"{zoo}: no models in the {split} split")
    return training.summarize(results) | {"checkpoint": f"black box (pool {len(texts)}, {probes} probes)",
                                          "zoo": str(zoo), "split": split, "blind": False}  # fmt: skip


def _pool_outputs(language: str, texts: list[str], key: tuple, probes: int, seed: int):
    values, length, causal = key
    inputs = tasks.input_pool(values, length, probes, np.random.default_rng([seed, length, len(values)]))
    outputs: list[list | None] = []
    for t in texts:
        made = programs.from_text(language, t, values, length, causal)
        try:
            outputs.append([list(made.evaluate(xs)) for xs in inputs])
        except Exception:  # noqa: BLE001 - a pool program may not run on another setting's values
            outputs.append(None)
    return inputs, outputs


def _agreement(outputs: list | None, behaviour: list) -> int:
    if outputs is None:
        return -1
    return sum(g == m for gs, ms in zip(outputs, behaviour) for g, m in zip(gs, ms) if g is not None)
