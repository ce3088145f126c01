"""Plots of mapping evaluations side by side: accuracy by program size and by base-model size."""

from __future__ import annotations

import json
from pathlib import Path

from metamodels.errors import MetamodelsError

PLOTTED = ("token_accuracy", "functional", "agreement")


def read_summary(path: Path) -> dict:
    """One ``mapping evaluate --json`` (or ``mapping baseline --json``) summary; MetamodelsError if it is not one."""
    try:
        summary = json.loads(Path(path).read_text())
        summary["by_size"], summary["by_params"]  # noqa: B018 - the keys every summary has
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MetamodelsError(f"{path}: not a mapping evaluation summary ({e})") from None
    return summary


def plot(paths: list[Path], labels: list[str], png: Path) -> None:
    """One row per metric of :data:`PLOTTED`, by program size (left) and by base-model parameters (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [read_summary(p) for p in paths]
    fig, axes = plt.subplots(len(PLOTTED), 2, figsize=(10, 2.6 * len(PLOTTED)), squeeze=False)
    for row, metric in enumerate(PLOTTED):
        for col, (key, xlabel) in enumerate((("by_size", "program size (ops / statements)"),
                                             ("by_params", "base-model parameters"))):  # fmt: skip
            ax = axes[row][col]
            for label, s in zip(labels, summaries):
                groups = list(s[key])
                ax.plot(groups, [s[key][g][metric] for g in groups], marker="o", label=label)
            ax.set(xlabel=xlabel, ylabel=metric.replace("_", " "), ylim=(0, 1))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
