"""Verification speed: inputs checked per second per model, on sampled compiled models.

    python benchmarks/verify_speed.py [--n 20] [--seed 0]

Each model is verified exhaustively (vocab 1-5, length 5: 3,905 inputs), then
the weight certificate is computed; prints inputs/s (median, min) and seconds
per model for both parts.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from metamodels.dataset import sampling
from metamodels.decompilation import verification
from metamodels.transformer import compiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="number of models (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)

    samples, _ = sampling.sample_unique(sampling.SamplerConfig(min_ops=1, max_ops=9), args.n, args.seed)
    rates, behaviour, certificate = [], [], []
    for s in samples:
        model = compiler.compile_program(s.program)
        start = time.perf_counter()
        report = verification.verify(s.program, model, weights=False)
        elapsed = time.perf_counter() - start
        rates.append(report.n_inputs / elapsed)
        behaviour.append(elapsed)
        start = time.perf_counter()
        verification.compare_weights(s.program, model)
        certificate.append(time.perf_counter() - start)
    print(f"models: {len(samples)} sampled 1-9-op programs, {report.n_inputs} inputs each (exhaustive)")
    print(f"behaviour check: median {statistics.median(rates):,.0f} inputs/s, slowest model {min(rates):,.0f} inputs/s")
    print(f"seconds per model: behaviour median {statistics.median(behaviour):.2f} (max {max(behaviour):.2f}), "
          f"weight certificate median {statistics.median(certificate):.2f} (max {max(certificate):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
