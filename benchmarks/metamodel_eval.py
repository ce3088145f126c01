"""Meta-model checkpoints side by side on one split, plus decompile latency, measured in one run.

    python benchmarks/metamodel_eval.py --data DIR --checkpoint rows=RUN1/checkpoint --checkpoint flat=RUN2/checkpoint \
        [--split test] [--limit 1000] [--latency 50] [--verify-latency 20] [--json out.json]

For each checkpoint: autoregressive exact-program accuracy, functional accuracy,
teacher-forced token and whole-program accuracy, overall and by number of ops
(from :func:`metamodels.evaluation.evaluate.evaluate`), the training provenance (budget,
steps, examples seen), and greedy decompile latency (encode + decode, seconds
per model, median and 95th percentile over ``--latency`` models, one at a time).
Prints the ratio of the first checkpoint's metrics to the others'.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from metamodels.dataset import store
from metamodels.decompilation import pipeline
from metamodels.evaluation import evaluate, reporting
from metamodels.meta import metamodel


def latency(meta: metamodel.MetaModel, data: str, split: str, n: int, **decompile_args) -> dict:
    models = []
    for row in store.iter_rows(data, split):
        models.append(store.model_from_row(row))
        if len(models) >= n:
            break
    seconds = []
    for model in models:
        start = time.perf_counter()
        pipeline.decompile(model, checkpoint=meta, **decompile_args)
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    return {
        "median_s": statistics.median(seconds),
        "p95_s": seconds[int(0.95 * (len(seconds) - 1))],
        "max_s": seconds[-1],
        "n": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--checkpoint", action="append", required=True, help="NAME=DIR, repeatable")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of the split (default all)")
    parser.add_argument("--latency", type=int, default=50, help="models timed one by one (default 50)")
    parser.add_argument(
        "--verify-latency", type=int, default=0, help="also time `decompile --beam 32 --verify` on N models"
    )
    parser.add_argument("--json", help="write all reports to this file")
    args = parser.parse_args()

    results = {}
    for spec in args.checkpoint:
        name, _, path = spec.partition("=")
        meta, provenance = metamodel.load_checkpoint(path)
        report = evaluate.evaluate(
            meta, args.data, evaluate.EvaluateConfig(args.split, limit=args.limit), progress=False
        )
        report["latency"] = latency(meta, args.data, args.split, args.latency)
        report["provenance"] = provenance
        if args.verify_latency:
            report["verify_latency"] = latency(meta, args.data, args.split, args.verify_latency, beam=32, verify=True)
        results[name] = report
        at = provenance.get("at", {})
        print(f"== {name}: {path} ({meta.cfg.encoding.name} encoding, {meta.n_params():,} parameters; "
              f"trained {at.get('seconds', 0) / 60:.0f} min, {at.get('step')} steps)")  # fmt: skip
        print(reporting.format_table(report))
        lat = report["latency"]
        print(f"greedy decompile latency: median {lat['median_s']:.3f} s, p95 {lat['p95_s']:.3f} s per model")
        if args.verify_latency:
            v = report["verify_latency"]
            print(
                f"decompile --beam 32 --verify: median {v['median_s']:.2f} s, p95 {v['p95_s']:.2f} s, max {v['max_s']:.2f} s over {v['n']} models"
            )
        print()
    names = list(results)
    for other in names[1:]:
        a, b = results[names[0]]["overall"], results[other]["overall"]
        ratios = {k: (a[k] / b[k] if b[k] else float("inf")) for k in ("exact", "functional", "teacher_forced_token")}
        print(f"{names[0]} / {other}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
