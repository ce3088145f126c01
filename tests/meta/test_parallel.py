"""Devices and data parallelism: 2 gloo ranks under torchrun train, checkpoint, resume in 1 rank, decode; CUDA paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from metamodels import cli
from metamodels.errors import MetamodelsError
from metamodels.meta import batching, metamodel, parallel, training, weight_encoding
from tests.cases import FIXTURE

pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
TINY = ["--preset", "tiny", "--eval-every", "4", "--threads", "1"]


def _torchrun(out, steps: int, ranks: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "metamodels", "train", "--data", str(FIXTURE), "--out", str(out), "--steps", str(steps), *TINY]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _state(run) -> dict:
    with safe_open(str(run / training.STATE), framework="pt") as f:
        return json.loads(f.metadata()["state"])


def test_two_gloo_ranks_train_a_checkpoint_that_resumes_in_one_rank_and_decodes(tmp_path, capsys):
    run = tmp_path / "run"
    done = _torchrun(run, steps=8)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["ranks"] == 2 and info["device"] == "cpu"
    whole = batching.load_split(FIXTURE, "train", weight_encoding.EncodingConfig("rows"),
                                max_program_tokens=metamodel.MetaModelConfig.max_program_tokens)  # fmt: skip
    assert info["train_examples"] == len(whole)  # the ranks' shards add up to the whole split
    assert [json.loads(line)["step"] for line in (run / training.LOG).read_text().splitlines()] == [4, 8]  # rank 0 only
    two_rank = load_file(str(run / training.STATE))
    # Lengthen the saved schedule (as if the 2-rank run had been killed at step 8 of 12), then resume in 1 process.
    with safe_open(str(run / training.STATE), framework="pt") as f:
        metadata = f.metadata()
    metadata["state"] = json.dumps({**json.loads(metadata["state"]), "total": 12})
    save_file(two_rank, str(run / training.STATE), metadata=metadata)
    args = ["train", "--data", str(FIXTURE), "--out", str(run), "--steps", "12", *TINY]
    assert cli.main(args) == 0
    assert _state(run)["step"] == 12
    assert [json.loads(line)["step"] for line in (run / training.LOG).read_text().splitlines()] == [4, 8, 12]
    resumed = load_file(str(run / training.STATE))
    moved = [k for k in two_rank if k.startswith("model/") and not torch.equal(two_rank[k], resumed[k])]
    assert moved  # the single rank trained on from the 2-rank weights and optimizer state
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(run / "checkpoint"), "--data", str(FIXTURE), "--limit", "4"]) == 0
    assert "exact" in capsys.readouterr().out


def test_ranks_read_disjoint_shards_and_too_many_ranks_is_an_error():
    enc, tokens = weight_encoding.EncodingConfig("rows"), metamodel.MetaModelConfig.max_program_tokens
    parts = [batching.load_split(FIXTURE, "train", enc, max_program_tokens=tokens, part=(r, 2)) for r in range(2)]
    whole = batching.load_split(FIXTURE, "train", enc, max_program_tokens=tokens)
    assert set(parts[0].ids).isdisjoint(parts[1].ids)
    assert sorted(parts[0].ids + parts[1].ids) == sorted(whole.ids)
    with pytest.raises(MetamodelsError, match="cannot be split over 9 ranks"):
        batching.load_split(FIXTURE, "train", enc, max_program_tokens=tokens, part=(0, 9))


def test_a_single_process_world():
    with parallel.join("cpu") as (world, dev):
        assert world == parallel.World() and world.main and world.agree(True) and world.broadcast(7) == 7 and world.total(3) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_training_in_autocast_and_a_checkpoint_that_loads_on_the_cpu(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        cli.main(["train", "--data", str(FIXTURE), "--out", str(run), "--steps", "8", "--device", "cuda", *TINY]) == 0
    )
    assert json.loads((run / "run.json").read_text())["device"].startswith("cuda")
    model, _ = metamodel.load_checkpoint(run / "checkpoint")
    assert model.device == torch.device("cpu")
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(run / "checkpoint"), "--data", str(FIXTURE), "--limit", "4",
                     "--device", "cuda"]) == 0  # fmt: skip
    assert cli.main(["decompile", "src/metamodels/examples/sort.safetensors", "--device", "cuda", "--greedy"]) == 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Ray's own deprecation and resource warnings are not ours to fail on
def test_ray_train_runs_two_workers_into_one_checkpoint(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(FIXTURE), "--out", str(run), "--steps", "4", *TINY, "--ray", "local", "--workers", "2"]
    assert cli.main(args) == 0
    assert json.loads((run / "run.json").read_text())["ranks"] == 2
    assert [json.loads(line)["step"] for line in (run / training.LOG).read_text().splitlines()] == [4]
    metamodel.load_checkpoint(run / "checkpoint")
    assert not pytest.importorskip("ray").is_initialized()  # the Ray it started is shut down (later tests start their own)


def test_a_bad_ray_run_is_one_error_line(tmp_path, capsys):
    pytest.importorskip("ray.train")
    args = ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--steps", "2", "--ray", "local"]
    assert cli.main(args) == 2  # before any Ray process starts
    assert capsys.readouterr().err.startswith("error:") and not (tmp_path / "r").exists()
