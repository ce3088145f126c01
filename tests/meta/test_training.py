"""Tiny end to end on the fixture dataset: train a few steps, resume, decode, evaluate, decompile."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil

import pytest
from safetensors import safe_open

from metamodels import cli
from metamodels.meta import metamodel, training
from tests.cases import FIXTURE

pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def test_training_writes_checkpoint_log_curves_and_state(trained):
    cfg, checkpoint = trained
    model, provenance = metamodel.load_checkpoint(checkpoint)
    assert provenance["train_config"]["preset"] == "tiny" and provenance["git_commit"] is not None
    log = [json.loads(line) for line in (checkpoint.parent / training.LOG).read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 12]
    assert log[-1]["train_loss"] < 4.5  # from ln(113) = 4.7 at initialisation
    assert (checkpoint.parent / "curves.png").stat().st_size > 0
    assert _saved_step(checkpoint.parent) == 12


def test_rerun_resumes_instead_of_restarting(trained, tmp_path):
    cfg, _ = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cfg.out, copy)
    longer = dataclasses.replace(cfg, out=str(copy), steps=18)  # the saved schedule (12 steps) is kept
    training.train(longer, progress=False)
    log = [json.loads(line) for line in (copy / training.LOG).read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 12]  # nothing retrained: the saved run had finished
    assert _saved_step(copy) == 12


def _saved_step(run) -> int:
    with safe_open(str(run / training.STATE), framework="pt") as f:
        return json.loads(f.metadata()["state"])["step"]


def test_a_pickled_state_is_never_loaded_and_resume_checks_the_run(trained, tmp_path, capsys):
    """Issue 14: a crafted train_state.pt ran a shell command on resume (torch.load with weights_only=False)."""
    cfg, _ = trained
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    run.mkdir()
    (run / training.LEGACY_STATE).write_bytes(pickle.dumps(Exploit()))
    argv = ["train", "--data", str(FIXTURE), "--out", str(run), "--preset", "tiny", "--steps", "2"]
    assert cli.main(argv) == 2
    assert "never loaded" in capsys.readouterr().err and not marker.exists()
    copy = tmp_path / "copy"
    shutil.copytree(cfg.out, copy)
    other = ["train", "--data", str(FIXTURE), "--out", str(copy), "--preset", "small", "--steps", "12"]
    assert cli.main(other) == 2
    assert "other preset" in capsys.readouterr().err
    (copy / training.STATE).write_bytes((copy / training.STATE).read_bytes()[:100])  # truncated
    again = [
        "train",
        "--data",
        str(FIXTURE),
        "--out",
        str(copy),
        "--preset",
        "tiny",
        "--steps",
        "12",
        "--eval-every",
        "6",
    ]
    assert cli.main(again) == 2
    assert "not a readable training state" in capsys.readouterr().err


@pytest.mark.slow
def test_fine_tuning_to_the_canonical_basis_on_dense_data(trained, tmp_path):
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(tmp_path), steps=2, minutes=None, eval_every=2, eval_examples=4, limit=8,
        init=str(trained[1]), basis="canonical", dense_data=(str(FIXTURE),),
    )  # fmt: skip
    meta, provenance = metamodel.load_checkpoint(training.train(cfg, progress=False))
    assert meta.cfg.encoding.basis == "canonical" and provenance["train_config"]["dense_data"] == [str(FIXTURE)]
    with pytest.raises(ValueError, match="rows encoding"):
        training.TrainConfig(data=".", out=".", encoding="flat", basis="canonical")


@pytest.mark.slow
def test_training_with_augmentation_runs_and_flat_refuses_it(tmp_path):
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(tmp_path), preset="tiny", steps=3, minutes=None, eval_every=3, eval_examples=8,
        augment=True,
    )  # fmt: skip
    assert training.train(cfg, progress=False).is_dir()
    with pytest.raises(ValueError, match="needs the rows encoding"):
        training.TrainConfig(data=".", out=".", encoding="flat", augment=True)
