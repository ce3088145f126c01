"""End-to-end dataset build speed and memory, next to Tracr's reference compile, in one run.

    python benchmarks/dataset_build.py [--n 500] [--workers 2] [--reference-n 10]

Builds N examples (sample -> compile -> differential check -> dedupe -> Parquet)
into a temporary directory with our pipeline, then times the reference path
(sample -> Tracr's compile_rasp_to_model) on the first ``--reference-n`` sample
indices, and prints examples/s for both, the ratio, and peak RSS.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time

from metamodels.dataset import build, examples
from metamodels.dataset.sampling import sample
from metamodels.transformer import compiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="examples to build (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--reference-n", type=int, default=10, help="examples for the reference path (default 10)")
    parser.add_argument("--seed", type=int, default=123, help="sampling seed (default 123)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)

    config = examples.BuildConfig(n=args.n, seed=args.seed, shard_size=100)
    with tempfile.TemporaryDirectory() as out:
        report = build.build_dataset(out, config, workers=args.workers)
    ours = report.rows / report.seconds
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20

    start, done = time.perf_counter(), 0
    for index in range(args.reference_n):
        sampler = config.sampler(index)
        program = sample(sampler, config.seed, index).program
        compiler.reference_params(program, compiler.settings_for(sampler.vocab, sampler.max_seq_len))
        done += 1
    reference = done / (time.perf_counter() - start)

    print(
        f"ours:      {report.rows} examples in {report.seconds:.1f} s = {ours:.1f} examples/s ({args.workers} workers, end to end)"
    )
    print(f"reference: {done} examples = {reference:.2f} examples/s (sample + Tracr compile_rasp_to_model, 1 process)")
    print(f"ratio: {ours / reference:.0f}x")
    print(
        f"peak RSS: main {main_rss:.2f} GiB, largest worker {child_rss:.2f} GiB, total <= {main_rss + args.workers * child_rss:.2f} GiB"
    )
    print(f"drops: {report.drops}")


if __name__ == "__main__":
    main()
