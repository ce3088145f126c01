"""Add the prior (the texts of the programs it was trained on) to a mapping checkpoint trained before `mapping train`
stored one, e.g. the shipped RASP checkpoint:

    python docs/mapping/add_prior.py src/metamodels/checkpoints/mapping/rasp.safetensors zoos/rasp

The zoo must be the one the checkpoint was trained on, or a rebuild by the same command (a build not yet finished
gives the train programs of its finished shards, a subset; a finished rebuild may differ by a few programs: the one
of stop 38 has 1,748 train programs where the checkpoint's build had 1,746 — any of them is a train-split program,
so none can be a test program, the split being by program hash); the weights are copied unchanged, and the
metadata gains ``prior`` and ``prior_added`` (the zoo, its count against the checkpoint's train programs, this
script).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from metamodels.mapping import data


def main(checkpoint: Path, zoo: Path) -> None:
    with safe_open(str(checkpoint), "pt") as f:
        meta = json.loads(f.metadata()["metamodels"])
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    texts = sorted(data.prior_texts(zoo, 10**9))
    if len(texts) > 1.01 * meta["train_programs"]:
        sys.exit(f"error: {zoo} has {len(texts)} train programs, the checkpoint was trained on {meta['train_programs']}")
    meta["prior"] = texts
    meta["prior_added"] = {"zoo": str(zoo), "programs": f"{len(texts)} (checkpoint: {meta['train_programs']})",
                           "by": "docs/mapping/add_prior.py"}  # fmt: skip
    save_file(state, str(checkpoint), metadata={"metamodels": json.dumps(meta)})
    print(f"{checkpoint}: prior of {len(texts)} train programs (it was trained on {meta['train_programs']})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python docs/mapping/add_prior.py CHECKPOINT ZOO")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
