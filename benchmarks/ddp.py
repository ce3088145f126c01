"""Data-parallel training: 1 process vs 2 gloo processes (one torch thread each), same data and seed budget.

    python benchmarks/ddp.py [--data tests/fixtures/dataset] [--steps 120] [--batch-size 16] [--preset tiny]
                             [--plot ddp.png]

Runs ``metamodels train`` twice on the same dataset and seed: once in one process with batch 2B, once under
``torchrun --nproc-per-node 2`` with batch B per rank (the same effective batch 2B, the same learning rate,
the same number of steps, so both see the same number of examples). Prints training samples per second of
each (examples per step x steps / wall seconds of the loop, from the run's log), their ratio, and the
validation loss of both at every evaluation: the two curves must agree in expectation (they differ by data
order only: each rank draws from its own shards). ``--plot`` draws both curves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = [sys.executable, "-m", "metamodels", "train"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "metamodels",
            "train"]  # fmt: skip


def run(launcher: list[str], out: Path, args: argparse.Namespace, batch_size: int) -> list[dict]:
    command = [*launcher, "--data", args.data, "--out", str(out), "--preset", args.preset, "--steps", str(args.steps),
               "--batch-size", str(batch_size), "--eval-every", str(args.eval_every), "--threads", "1",
               "--seed", str(args.seed), "--device", "cpu"]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="tests/fixtures/dataset")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=16, help="per rank; the single process uses twice this")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = run(TRAIN, Path(tmp) / "one", args, 2 * args.batch_size)
        two = run(TORCHRUN, Path(tmp) / "two", args, args.batch_size)
    rate = {name: 2 * args.batch_size * log[-1]["step"] / log[-1]["seconds"] for name, log in (("1", one), ("2", two))}
    print(f"effective batch {2 * args.batch_size}, {args.steps} steps, preset {args.preset}, data {args.data}")
    print(f"1 process  (batch {2 * args.batch_size}): {rate['1']:8.1f} samples/s")
    print(f"2 processes (batch {args.batch_size} each, gloo): {rate['2']:8.1f} samples/s")
    print(f"ratio 2 / 1: {rate['2'] / rate['1']:.2f}")
    print("step   val_loss(1)  val_loss(2)")
    for a, b in zip(one, two):
        print(f"{a['step']:>4}   {a['val_loss']:10.4f}   {b['val_loss']:10.4f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, log in (("1 process", one), ("2 gloo processes", two)):
            ax.plot([r["step"] for r in log], [r["val_loss"] for r in log], label=name)
        ax.set(xlabel="step", ylabel="validation cross-entropy", title=f"effective batch {2 * args.batch_size}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
