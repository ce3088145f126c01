"""Classical baselines for hyperparameters from CNN weights (scikit-learn): the majority class, and StatNN
(Unterthiner et al. 2020: per-layer weight statistics into a gradient-boosted classifier, one per label)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from metamodels.hparams import encoding, training

Baseline = Literal["majority", "statnn"]
BASELINES = ("majority", "statnn")


def evaluate(zoo: Path, method: str, split: str = "test", train_runs: int | None = None, seed: int = 0) -> dict:
    """Fit ``method`` on the zoo's train split (``train_runs`` of its runs, or all); its accuracy per label on
    ``split``, in the summary layout of :func:`metamodels.hparams.training.evaluate`."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {BASELINES}, got {method!r}")
    classes = training.classes_of(zoo)
    train_set = training.load_split(zoo, "train", classes, train_runs, seed)
    test_set = training.load_split(zoo, split, classes)
    if method == "majority":
        predicted = np.stack([np.full(len(test_set.runs), np.bincount(train_set.y[:, j]).argmax())
                              for j in range(train_set.y.shape[1])], 1)  # fmt: skip
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        features = lambda s: np.stack([encoding.statistics(w) for w in s.weights])  # noqa: E731
        x_train, x_test = features(train_set), features(test_set)
        columns = []
        for j in range(train_set.y.shape[1]):
            if len(set(train_set.y[:, j])) < 2:  # one class seen: nothing to fit
                columns.append(np.full(len(test_set.runs), train_set.y[0, j]))
                continue
            clf = HistGradientBoostingClassifier(random_state=seed).fit(x_train, train_set.y[:, j])
            columns.append(clf.predict(x_test))
        predicted = np.stack(columns, 1)
    return {"method": method, "split": split, "checkpoints": len(test_set.runs), "runs": len(set(test_set.runs)),
            "train_runs": len(set(train_set.runs)), "accuracy": training.accuracies(predicted, test_set, list(classes))}  # fmt: skip
