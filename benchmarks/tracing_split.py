"""Tracing on a dataset split: each model rotated or densified, its whole program traced, judged against the truth.

No meta-model and no verification: the tracer alone (``decompilation.tracing``). A traced program is ``right``
when it equals the row's true program on every input (or on a large battery), where the model itself agrees with
its source (``oracle.differs_from_truth``: a compressed model's own errors are not held against the program);
``wrong`` otherwise; ``error`` where tracing stops (the reason is counted). Densified as ``evaluate --dense``
does (``densification.densified``, fidelity 0.99, seed 1); rotated with units permuted (exact).

    python benchmarks/tracing_split.py /work/data/ds3k --split train --limit 100 --mode dense
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re
import statistics
import time
from pathlib import Path

from metamodels.dataset import store
from metamodels.decompilation import tracing
from metamodels.decompilation.readout import ReadoutError
from metamodels.evaluation import oracle
from metamodels.evaluation.evaluate import DENSE_HELDOUT
from metamodels.transformer import densification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--mode", choices=("rotate", "dense"), default="dense")
    args = parser.parse_args()
    rows = list(itertools.islice(store.iter_rows(args.data, args.split), args.limit))
    outcomes: list[tuple[int, str]] = []
    reasons: collections.Counter = collections.Counter()
    times = []
    for row in rows:
        model = store.model_from_row(row)
        if args.mode == "dense":
            model = densification.densified(model, densification.Dense(0.99, 1, DENSE_HELDOUT), row["id"])
        else:
            model = densification.permute_units(densification.rotate(model, 3), 4)
        start = time.perf_counter()
        try:
            traced = tracing.read_program(model)
            outcome = "wrong" if oracle.differs_from_truth(traced, row, model) else "right"
        except ReadoutError as e:
            outcome = "error"
            reasons[re.sub(r"\b(v|n|agg|select|width)\d+\b|\d+", "#", str(e))] += 1
        times.append(time.perf_counter() - start)
        outcomes.append((int(row["n_ops"]), outcome))
        print(row["id"], row["n_ops"], outcome, flush=True)
    counts = collections.Counter(o for _, o in outcomes)
    print(f"\n{args.data} {args.split}, first {len(rows)}, {args.mode}: right {counts['right']}, wrong "
          f"{counts['wrong']}, error {counts['error']}; tracing median {statistics.median(times):.2f} s, "
          f"max {max(times):.1f} s")  # fmt: skip
    for ops in sorted({n for n, _ in outcomes}):
        group = [o for n, o in outcomes if n == ops]
        print(f"  ops {ops}: right {group.count('right')}/{len(group)}")
    for reason, k in reasons.most_common():
        print(f"  error x{k}: {reason}")


if __name__ == "__main__":
    main()
