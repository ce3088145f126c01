"""Classical baselines for hyperparameters from CNN weights (scikit-learn): the majority class, and StatNN
(Unterthiner et al. 2020: per-layer weight statistics into a gradient-boosted classifier, one per label); and
``ours+boost``, ours' class probabilities averaged with gradient boosting's over ours' layer summaries
(:func:`metamodels.hparams.encoding.summaries`, a superset of StatNN's statistics)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.hparams import encoding, training

Baseline = Literal["majority", "statnn", "ours+boost"]
BASELINES = ("majority", "statnn", "ours+boost")


def evaluate(zoo: Path, method: str, split: str = "test", train_runs: int | None = None, seed: int = 0,
             ours: Path | None = None) -> dict:  # fmt: skip
    """Fit ``method`` on the zoo's train split (``train_runs`` of its runs, or all); its accuracy per label on
    ``split``, in the summary layout of :func:`metamodels.hparams.training.evaluate`. ``ours``: for ``ours+boost``,
    an ours checkpoint trained on the same runs."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
    classes = training.classes_of(zoo)
    train_set = training.load_split(zoo, "train", classes, train_runs, seed)
    test_set = training.load_split(zoo, split, classes)
    widths = [len(names) for names in classes.values()]  # classes per label, in the labels' (the heads') order
    if method == "majority":
        predicted = np.stack([np.full(len(test_set.runs), np.bincount(train_set.y[:, j]).argmax())
                              for j in range(train_set.y.shape[1])], 1)  # fmt: skip
    elif method == "statnn":
        boosted = _boosted(encoding.statistics, train_set, test_set, widths, seed)
        predicted = np.stack([p.argmax(1) for p in boosted], 1)
    else:
        if ours is None:
            raise MetamodelsError("ours+boost needs an ours checkpoint trained on the same runs (--ours)")
        model, cfg, record = training.load(ours, "cpu")
        if cfg.model != "ours" or record["train_runs"] != len(set(train_set.runs)):
            raise MetamodelsError(f"{ours}: not an ours checkpoint trained on {len(set(train_set.runs))} runs")
        neural = training.probabilities_split(model, cfg, test_set)
        boosted = _boosted(encoding.summaries, train_set, test_set, widths, seed)
        predicted = np.stack([(a + b).argmax(1) for a, b in zip(neural, boosted)], 1)
    return {"method": method, "split": split, "checkpoints": len(test_set.runs), "runs": len(set(test_set.runs)),
            "train_runs": len(set(train_set.runs)), "accuracy": training.accuracies(predicted, test_set, list(classes))}  # fmt: skip


def _boosted(features: Callable[[dict[str, np.ndarray]], np.ndarray], train_set: training.Split,
             test_set: training.Split, widths: list[int], seed: int) -> list[np.ndarray]:  # fmt: skip
    """Per label, gradient boosting's class probabilities ``[n_test, widths[label]]`` over ``features`` of each
    checkpoint (a label with one class seen in training: that class, probability 1)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x_train = np.stack([features(w) for w in train_set.weights])
    x_test = np.stack([features(w) for w in test_set.weights])
    out = []
    for j, width in enumerate(widths):
        probs = np.zeros((len(x_test), width))
        seen = sorted(set(train_set.y[:, j]))
        if len(seen) < 2:
            probs[:, seen[0]] = 1.0
        else:
            clf = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_set.y[:, j])
            probs[:, clf.classes_] = clf.predict_proba(x_test)
        out.append(probs)
    return out
