"""Compile throughput: Tracr's compile_rasp_to_model vs our numpy assembly, same programs, one run.

    python benchmarks/compile_throughput.py [--n 30] [--seed 0]

Samples N programs (1-10 ops, default settings), compiles each with both paths
in the same process, and prints programs/s for each and the ratio. Tracr's
per-process warm-up (its first compile) is counted, as it is in a dataset build.
"""

from __future__ import annotations

import argparse
import logging
import time

from metamodels.dataset import sampling
from metamodels.transformer import compiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="number of programs (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)

    programs = [s.program for s in sampling.sample_unique(sampling.SamplerConfig(), args.n, args.seed)[0]]
    settings = compiler.settings_for()

    start = time.perf_counter()
    for program in programs:
        compiler.try_compile(program, settings)
    ours = time.perf_counter() - start

    start = time.perf_counter()
    for program in programs:
        compiler.reference_params(program, settings)
    tracr = time.perf_counter() - start

    print(
        f"programs: {len(programs)} (seed {args.seed}, ops 1-10, vocab {list(settings.vocab)}, max_seq_len {settings.max_seq_len})"
    )
    print(
        f"tracr compile_rasp_to_model: {len(programs) / tracr:8.2f} programs/s  ({tracr / len(programs) * 1000:8.1f} ms each)"
    )
    print(
        f"metamodels fast assembly:    {len(programs) / ours:8.2f} programs/s  ({ours / len(programs) * 1000:8.1f} ms each)"
    )
    print(f"speed-up: {tracr / ours:.0f}x")


if __name__ == "__main__":
    main()
