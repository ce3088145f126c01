"""The torch device a job runs on, and its mixed precision.

``device("auto")`` is the best accelerator present (CUDA, then Apple's MPS, then the CPU). On CUDA, meta-model
training runs under autocast in bfloat16 where the GPU supports it, else float16 with loss scaling; the CPU and MPS
stay in float32 (autocast on the CPU was not faster for these model sizes here). Checkpoints are always saved from
float32 CPU tensors, so they load anywhere. Zoo base models (transformers and CNNs) train in float32 on every device:
their weights are the data the meta-models read.

The lowest stage, so the zoo trainers (below the meta-models) and every meta-model share one device rule.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from metamodels.errors import MetamodelsError

Device = Literal["auto", "cpu", "cuda", "mps"]
DEVICE: Device = "auto"
# zoo builds train on the CPU unless asked: one thread per worker makes a zoo a deterministic function of its
# config (resume == uninterrupted, bit for bit); GPU kernels need not be
ZOO_DEVICE: Device = "cpu"
DEVICE_HELP = "where the meta-model runs: auto (CUDA, else MPS, else CPU), cpu, cuda or mps"


def device(name: str = DEVICE, local_rank: int = 0) -> torch.device:
    """The torch device for ``name`` (one of :data:`Device`); MetamodelsError if it is not present."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda":
        if not cuda:
            raise MetamodelsError("--device cuda: no CUDA GPU is visible to torch here (try --device auto or cpu)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not mps:
            raise MetamodelsError("--device mps: Apple's MPS backend is not available here (try --device auto or cpu)")
        return torch.device("mps")
    if name != "cpu":
        raise MetamodelsError(f"unknown device {name!r}; expected one of auto, cpu, cuda, mps")
    return torch.device("cpu")


def precision(dev: torch.device) -> torch.dtype | None:
    """The autocast dtype training uses on ``dev``: bfloat16 or float16 on CUDA, None (float32) elsewhere."""
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on ``dev`` (see :func:`precision`); a no-op where training stays float32."""
    dtype = precision(dev)
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(dev: torch.device) -> torch.amp.GradScaler:
    """Loss scaling, enabled only for float16 (bfloat16 has float32's range and needs none)."""
    return torch.amp.GradScaler(dev.type, enabled=precision(dev) == torch.float16)
