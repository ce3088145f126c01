"""CNN zoos: a tiny build re-checks (stored weights reproduce stored accuracies), resumes to the same contents,
splits by run, reports a corrupted weight, exports a CNN file; the CLI's errors are one line."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from metamodels import cli
from metamodels.dataset import store
from metamodels.zoo import cnn_zoo

TINY = cnn_zoo.CnnZooConfig(n=4, family="ejr", seed=2, shard_size=2, epochs=(1, 2), val_permille=250, test_permille=250)


def content(directory) -> list[tuple]:
    rows = sorted(cnn_zoo.read(directory), key=lambda r: r["id"])
    return [(r["id"], r["split"], r["test_accuracy"], [w.tolist() for w in r["weights"].values()]) for r in rows]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_zoo")
    return out, cnn_zoo.build_cnn_zoo(out, TINY)


def test_a_tiny_zoo_builds_and_re_checks(zoo):
    out, report = zoo
    assert report.runs == 4 and report.shards == 2 and report.checkpoints == 2 * (4 - report.drops.get("diverged", 0))
    rows = list(cnn_zoo.read(out))
    assert {r["epoch"] for r in rows} == {1, 2}
    for r in rows:  # every recorded hyperparameter is the one the run's spec says
        spec = TINY.spec(int(r["run"].rsplit("-", 1)[1]))
        assert (r["dataset"], r["optimizer"], r["init"], r["batch_size"]) == (spec.dataset, spec.optimizer, spec.init,
                                                                              spec.batch_size)  # fmt: skip
        assert r["weights"]["convs.0.weight"].shape == (spec.width, 1, spec.kernel)
    assert cnn_zoo.check(out).ok
    assert cli.main(["zoo", "check", str(out)]) == 0


def test_the_device_is_recorded_and_a_missing_one_is_one_error_line(zoo, tmp_path, capsys):
    assert {json.loads(r["provenance"])["device"] for r in cnn_zoo.read(zoo[0], columns=["provenance"])} == {"cpu"}
    if not torch.cuda.is_available():
        assert cli.main(["zoo", "build", str(tmp_path / "z"), "--kind", "cnn", "--n", "1", "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1


def test_splits_are_by_run(zoo):
    runs: dict[str, set[str]] = {}
    for r in cnn_zoo.read(zoo[0], columns=["run", "split"]):
        runs.setdefault(r["run"], set()).add(r["split"])
    assert all(len(s) == 1 for s in runs.values())


def test_an_interrupted_build_resumes_to_the_same_zoo(zoo, tmp_path):
    first = cnn_zoo.build_cnn_zoo(tmp_path, TINY, stop_after_shards=1)
    assert first.shards == 1
    cnn_zoo.build_cnn_zoo(tmp_path, TINY)
    assert content(tmp_path) == content(zoo[0])


def test_check_reports_a_corrupted_weight(zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo[0], copy)
    path = store.shard_paths(copy)[0]
    rows = store.read_shard(path, schema=cnn_zoo.SCHEMA).to_pylist()
    rows[0]["weights"][-1]["data"] = [v + 5.0 for v in rows[0]["weights"][-1]["data"]]  # the head's biases
    rows[0]["weights"][-1]["data"][0] += 50.0  # class 0 now wins everywhere: the accuracy changes
    store.write_shard(copy, 0, rows, cnn_zoo.SCHEMA)
    checked = cnn_zoo.check(copy)
    assert checked.mismatched == (rows[0]["id"],)
    assert cli.main(["zoo", "check", str(copy)]) == 1


def test_export_writes_a_cnn_file_without_its_hyperparameters(zoo, tmp_path, capsys):
    out, _ = zoo
    row = next(cnn_zoo.read(out))
    assert cli.main(["zoo", "export", str(out), row["run"], "-o", str(tmp_path / "cnn.safetensors")]) == 0
    weights = cnn_zoo.load_cnn_file(tmp_path / "cnn.safetensors")
    last = max((r for r in cnn_zoo.read(out) if r["run"] == row["run"]), key=lambda r: r["epoch"])
    assert all(np.array_equal(weights[k], v) for k, v in last["weights"].items())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "cnn.safetensors"), "np") as f:
        assert "optimizer" not in str(f.metadata()) and "init" not in str(f.metadata())


def test_stats_prints_label_balance(zoo, tmp_path, capsys):
    assert cli.main(["zoo", "stats", str(zoo[0]), "--plot", str(tmp_path / "s.png")]) == 0
    printed = capsys.readouterr().out
    assert "ejr CNN zoo, 4 runs" in printed and "optimizer" in printed and (tmp_path / "s.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--kind", "cnn", "--n", "2", "--language", "python"], "--language is an option of transformer zoos"),
    (["--kind", "cnn", "--n", "2", "--family", "abc"], "invalid choice"),
    (["--family", "skb", "--n", "2"], "--family and --epochs are options of --kind cnn"),
    (["--kind", "cnn", "--n", "2", "--epochs", "0"], "--epochs must be at least 1"),
])  # fmt: skip
def test_cli_mistakes_are_one_error_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) if message == "invalid choice" else contextlib.nullcontext():
        assert cli.main(["zoo", "build", str(tmp_path / "z"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1

