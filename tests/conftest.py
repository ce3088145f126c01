"""Shared fixtures. ``trained``: a tiny meta-model trained for 12 steps on the fixture dataset (once per run)."""

from __future__ import annotations

import logging

import pytest

from metamodels.meta import training
from tests.cases import FIXTURE

logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(the TrainConfig, the best checkpoint's directory) of a tiny training run on the fixture dataset."""
    out = tmp_path_factory.mktemp("run")
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(out), preset="tiny", steps=12, minutes=None, eval_every=6, eval_examples=40, warmup=3
    )
    return cfg, training.train(cfg, progress=False)
