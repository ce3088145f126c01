"""Shared fixtures of the mapping tests: a tiny zoo of each language and a mapping checkpoint of each architecture."""

from __future__ import annotations

from pathlib import Path

import pytest

from metamodels import cli
from metamodels.mapping import training
from metamodels.zoo import build, tasks
from metamodels.zoo.trainer import TrainerConfig

TINY = dict(n=6, shard_size=6, vocab_size=(3, 3), max_seq_len=(4, 4), d_model=(16, 16), layers=(2, 2), heads=(2, 2),
            lr=(5e-3, 5e-3), trainer=TrainerConfig(slots=6, max_steps=1000), data=tasks.DataConfig(pool=256, heldout=64),
            val_permille=0, test_permille=500)  # fmt: skip


@pytest.fixture(scope="package", params=["rasp", "python"])
def zoo(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"zoo_{request.param}")
    build.build_zoo(out, build.ZooConfig(language=request.param, seed=3, **TINY), workers=1)
    return out


@pytest.fixture(scope="package", params=training.ARCHS)
def checkpoint(zoo, request, tmp_path_factory) -> Path:
    ckpt = tmp_path_factory.mktemp("mapping") / f"{request.param}.safetensors"
    assert cli.main(["mapping", "train", str(zoo), "-o", str(ckpt), "--steps", "80", "--batch-size", "4",
                     "--lr", "3e-3", "--arch", request.param]) == 0  # fmt: skip
    return ckpt
