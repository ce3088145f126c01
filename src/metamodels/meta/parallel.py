"""The data-parallel world training runs in.

The device and its precision: :mod:`metamodels.devices`.

:func:`join` joins the data-parallel world a launcher set up: ``torchrun``
(``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` in the environment) or Ray
Train (which initialises ``torch.distributed`` before calling the training
function). Without one, the world is a single process. CPU ranks use the gloo
backend, CUDA ranks NCCL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from metamodels.devices import DEVICE, device


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (``size`` 1: not distributed).

    Invariants: 0 <= rank < size; rank 0 is the only one that writes checkpoints and logs.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is True on any (a stop that must happen on all ranks at once)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def total(self, value: int) -> int:
        """The sum of ``value`` over all ranks, on every rank (e.g. examples read, when shards differ in size)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.long, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item())

    def broadcast(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a decision rank 0 made, e.g. the schedule's length)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.long, device=_collective_device())
        dist.broadcast(t, src=0)
        return int(t.item())


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def join(device_name: str = DEVICE) -> Iterator[tuple[World, torch.device]]:
    """(this process's World, its device), inside the launcher's process group (created here for torchrun).

    A group created here is destroyed on exit; one Ray Train created is left to Ray.
    """
    created = False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # Ray Train's GPU workers each see their own GPU as 0
    dev = device(device_name, local_rank)
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
        created = True
    world = World(dist.get_rank(), dist.get_world_size(), local_rank) if dist.is_initialized() else World()
    try:
        yield world, dev
    finally:
        if created:
            dist.destroy_process_group()
