"""Batched base-model training vs the same models trained one by one, same programs, one run.

    python benchmarks/zoo_trainer.py [--n 64] [--slots 64] [--seed 0] [--max-steps 1500]

Samples N RASP programs (1-5 ops, vocabulary 1..5, length <= 8), builds their I/O tasks, and trains
them twice with one torch thread at d_model 32, 2 layers, 4 heads: in one ``train_many`` call with
``--slots`` slots, and one task per call (``slots=1``). Prints converged programs (and models: views)
per hour for each, the ratio, the failures by reason, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import collections
import resource
import time

import torch

from metamodels.dataset import sampling
from metamodels.zoo import tasks, trainer


def run(
    task_list: list[trainer.Task], config: trainer.TrainerConfig, one_by_one: bool
) -> tuple[float, collections.Counter]:
    arch = trainer.Architecture()
    start = time.perf_counter()
    outcomes = []
    if one_by_one:
        for task in task_list:
            outcomes += trainer.train_many([task], arch, config, seed=0)
    else:
        outcomes += trainer.train_many(task_list, arch, config, seed=0)
    seconds = time.perf_counter() - start
    counts = collections.Counter(o.failure or "converged" for o in outcomes)
    counts["views"] = sum(len(o.views) for o in outcomes)
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="number of programs (default 64)")
    parser.add_argument("--slots", type=int, default=64, help="slots of the batched run (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    parser.add_argument("--max-steps", type=int, default=1500, help="step cap per model (default 1500)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sampler = sampling.SamplerConfig(min_ops=1, max_ops=5, max_seq_len=8)
    programs = [s.program for s in sampling.sample_unique(sampler, args.n, args.seed)[0]]
    built = [tasks.make_task(str(i), p.evaluate, sampler.vocab, sampler.max_seq_len, False, i, 3e-3, tasks.DataConfig())
             for i, p in enumerate(programs)]  # fmt: skip
    task_list = [t for t in built if not isinstance(t, str)]
    print(f"{len(task_list)} tasks ({len(built) - len(task_list)} programs without a task)")
    results = {}
    for name, slots, alone in (("batched", args.slots, False), ("one by one", 1, True)):
        config = trainer.TrainerConfig(slots=slots, max_steps=args.max_steps)
        seconds, counts = run(task_list, config, alone)
        results[name] = counts["converged"] / seconds * 3600
        print(
            f"{name:>10}: {seconds:.0f} s, {results[name]:.0f} converged programs/hour "
            f"({counts['views'] / seconds * 3600:.0f} models/hour), outcomes {dict(counts)}"
        )
    print(f"ratio batched / one by one: {results['batched'] / max(results['one by one'], 1e-9):.2f}")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
