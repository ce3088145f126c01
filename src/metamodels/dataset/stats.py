"""Dataset statistics: a text table and PNG plots like paper 000, Figures 6-7."""

from __future__ import annotations

import collections
import collections.abc
import json
from pathlib import Path

import numpy as np

from metamodels.dataset import store
from metamodels.rasp import tokens

COLUMNS = ("split", "n_ops", "n_layers", "n_params", "tokens", "vocab", "max_seq_len", "model_config")


def collect(directory: Path) -> dict[str, collections.Counter]:
    """Histograms over the whole dataset, read column-wise (no weights loaded)."""
    h: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    names = tokens.VOCAB.tokens
    for path in store.shard_paths(Path(directory)):
        table = store.read_shard(path, COLUMNS).to_pydict()
        for i in range(table["split"].__len__()):
            h["split"][table["split"][i]] += 1
            h["ops per program"][table["n_ops"][i]] += 1
            h["layers"][table["n_layers"][i]] += 1
            h["parameters (log2 bucket)"][int(np.log2(max(1, table["n_params"][i])))] += 1
            h["program tokens (bucket of 10)"][len(table["tokens"][i]) // 10 * 10] += 1
            h["vocab size x max_seq_len"][f"{len(json.loads(table['vocab'][i]))}x{table['max_seq_len'][i]}"] += 1
            dense = json.loads(table["model_config"][i]).get("densified")
            if dense:
                h["dense width / original (tenths)"][round(10 * dense["d_model"] / dense["original_d_model"]) / 10] += 1
                h["fidelity (hundredths)"][int(100 * dense["fidelity"]) / 100] += 1
            strings = [names[t] for t in table["tokens"][i]]
            for j, t in enumerate(strings):
                if t in tokens.ATTN_OPS or t in tokens.MLP_OPS:
                    h["op kind"][t] += 1
                    h["encoding"][f"{t}:{strings[j - 1]}"] += 1
                elif t in ("EQ", "NEQ", "LT", "LEQ", "GT", "GEQ", "TRUE", "FALSE"):
                    h["predicate"][t] += 1
                elif t.startswith("fn:"):
                    h["function"][t[3:]] += 1
    return dict(h)


def format_counts(title: str, counter: collections.abc.Mapping) -> str:
    """A titled table of counts, most frequent first, with percentages and bars."""
    total = sum(counter.values()) or 1
    rows = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
    bars = [f"  {str(k):<32} {n:>7}  {100 * n / total:5.1f}%  {'#' * round(40 * n / total)}" for k, n in rows]
    return "\n".join([f"\n{title}:", *bars])


def report(directory: Path, plot_path: Path | None) -> str:
    """The statistics as text; writes the plots to ``plot_path`` when given."""
    manifest = store.read_manifest(Path(directory)) or {}
    h = collect(directory)
    drops: collections.Counter[str] = collections.Counter()
    for rec in manifest.get("shards", []):
        drops.update(rec["drops"])
    lines = [
        f"{directory}: {sum(h['split'].values())} examples, {len(manifest.get('shards', []))} shards, complete: {manifest.get('complete')}"
    ]
    for title, counter in [*h.items(), ("dropped", drops)]:
        lines += table(title, counter, by_count=title == "function")
    if plot_path is not None:
        _plot(h, Path(plot_path))
        lines.append(f"\nplots: {plot_path}")
    return "\n".join(lines)


def table(title: str, counter: collections.abc.Mapping, by_count: bool = False) -> list[str]:
    """A titled table of counts with percentages, in key order (or most frequent first)."""
    total = sum(counter.values()) or 1
    order = (lambda kv: (-kv[1], kv[0])) if by_count else (lambda kv: (str(type(kv[0])), kv[0]))
    rows = [f"  {str(k):<28} {n:>8}  {100 * n / total:5.1f}%" for k, n in sorted(counter.items(), key=order)]
    return [f"\n{title}:", *rows]


def _plot(h: dict[str, collections.Counter], path: Path) -> None:
    panels = ["ops per program", "layers", "parameters (log2 bucket)", "program tokens (bucket of 10)", "op kind",
              "predicate", "encoding", "function"]  # fmt: skip
    plot_panels(h, panels, path, columns=4, by_count=("function", "encoding"))


def plot_panels(
    h: dict[str, collections.Counter], panels: list[str], path: Path, columns: int, by_count: tuple[str, ...] = ()
) -> None:
    """One bar chart per named histogram, ``columns`` to a row, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4 * rows))
    for ax, title in zip(axes.ravel(), panels):
        counter = h.get(title, collections.Counter())
        keys = sorted(counter, key=lambda k: (-counter[k], str(k))) if title in by_count else sorted(counter)
        ax.bar([str(k) for k in keys], [counter[k] for k in keys], color="#4472c4")
        ax.set_title(title)
        crowded = len(keys) > 8 or max((len(str(k)) for k in keys), default=0) > 12
        ax.tick_params(axis="x", labelrotation=90 if crowded else 0, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
