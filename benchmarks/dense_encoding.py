"""Weight-token counts of the rows encoding on sparse, rotated and densified models, stored vs canonical basis.

    python benchmarks/dense_encoding.py [--n 40] [--seed 3]

For sampled 1-10-op programs: the stored-basis encoding of the compiled model and
of a random rotation of it, and the canonical-basis encoding (min_row 0.01, as
the dense checkpoint reads) of the compiled model and of the model densified to
fidelity 0.99 (1,000 held-out inputs). Prints median and max token counts and
how many exceed 512 (the shipped meta-models' input limit).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

from metamodels.dataset import sampling
from metamodels.meta import training, weight_encoding
from metamodels.transformer import compiler, densification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="number of models (default 40)")
    parser.add_argument("--seed", type=int, default=3, help="sampler seed (default 3)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)

    stored = weight_encoding.EncodingConfig("rows", max_tokens=10**6)
    canonical = dataclasses.replace(training.encoding_config("rows", "canonical"), max_tokens=10**6)
    counts: dict[str, list[int]] = {k: [] for k in ("stored", "stored, rotated", "canonical", "canonical, dense")}
    samples, _ = sampling.sample_unique(sampling.SamplerConfig(), args.n, args.seed)
    for s in samples:
        model = compiler.compile_program(s.program)
        dense = densification.densify(model, seed=1, heldout_max=1000).model
        counts["stored"].append(len(weight_encoding.encode(model.params, stored)))
        counts["stored, rotated"].append(len(weight_encoding.encode(densification.rotate(model, 1).params, stored)))
        counts["canonical"].append(len(weight_encoding.encode(model.params, canonical)))
        counts["canonical, dense"].append(len(weight_encoding.encode(dense.params, canonical)))
    print(f"{args.n} sampled models (seed {args.seed}): weight tokens")
    for name, c in counts.items():
        a = np.array(c)
        print(f"  {name:<18} median {np.median(a):6.0f}  max {a.max():5d}  over 512: {(a > 512).sum()}")


if __name__ == "__main__":
    main()
