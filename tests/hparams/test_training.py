"""Hyperparameter meta-models and baselines on a tiny CNN zoo: each trains a few steps and is scored per label;
ours fits its train split; predict reads an exported CNN; mistakes are one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metamodels import cli
from metamodels.hparams import baselines, encoding, training
from metamodels.zoo import cnn_zoo

ZOO = cnn_zoo.CnnZooConfig(n=8, family="skb", seed=4, shard_size=4, epochs=(1, 2), val_permille=250, test_permille=250)
LABELS = ["activation", "init", "optimizer"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_zoo")
    cnn_zoo.build_cnn_zoo(out, ZOO)
    assert {r["split"] for r in cnn_zoo.read(out, columns=["split"])} == {"train", "val", "test"}
    return out


@pytest.mark.parametrize("model", ["ours", "paper", "mlp", "ejr"])
def test_every_meta_model_trains_and_is_scored_per_label(zoo, tmp_path, model):
    out = tmp_path / "h.safetensors"
    args = ["hparams", "train", str(zoo), "-o", str(out), "--model", model, "--steps", "3", "--batch-size", "4"]
    assert cli.main(args) == 0
    assert cli.main(["hparams", "evaluate", str(out), str(zoo), "--json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["method"] == model and set(summary["accuracy"]) == {*LABELS, "mean"}
    assert summary["runs"] == len({r["run"] for r in cnn_zoo.read(zoo, "test", columns=["run"])})
    assert all(0.0 <= a <= 1.0 for a in summary["accuracy"].values())


def test_ours_fits_its_train_split(zoo, tmp_path):
    cfg = training.HparamsConfig(model="ours", steps=300, batch_size=8, lr=3e-3, eval_every=300)
    training.train(zoo, tmp_path / "h.safetensors", cfg, progress=False)
    summary = training.evaluate(tmp_path / "h.safetensors", zoo, "train")
    assert summary["accuracy"]["mean"] == 1.0, summary  # a handful of CNNs: memorised, so the heads do learn


@pytest.mark.parametrize("method", ["majority", "statnn"])
def test_baselines_fit_and_score(zoo, method, capsys):
    summary = baselines.evaluate(zoo, method, "test")
    train = training.load_split(zoo, "train", training.classes_of(zoo))
    if method == "majority":  # the oracle: count the train split's labels by hand
        for j, label in enumerate(LABELS):
            expected = np.mean([y == np.bincount(train.y[:, j]).argmax() for y in
                                training.load_split(zoo, "test", training.classes_of(zoo)).y[:, j]])  # fmt: skip
            assert summary["accuracy"][label] == pytest.approx(expected)
    assert cli.main(["hparams", "baseline", str(zoo), "--method", method]) == 0
    assert method in capsys.readouterr().out


def test_ours_plus_boosting_averages_the_two_probabilities(zoo, tmp_path, capsys):
    from sklearn.ensemble import HistGradientBoostingClassifier

    ckpt = tmp_path / "h.safetensors"
    training.train(zoo, ckpt, training.HparamsConfig(steps=3, batch_size=4), progress=False)
    summary = baselines.evaluate(zoo, "ours+boost", "test", ours=ckpt)
    classes = training.classes_of(zoo)
    train, test = (training.load_split(zoo, split, classes) for split in ("train", "test"))
    neural = training.probabilities_split(*training.load(ckpt)[:2], test)
    x_train, x_test = (np.stack([encoding.summaries(w) for w in s.weights]) for s in (train, test))
    for j, label in enumerate(LABELS):  # the oracle: the average recomputed here, scikit-learn fitted here
        boosted = np.zeros_like(neural[j])
        if len(set(train.y[:, j])) > 1:
            clf = HistGradientBoostingClassifier(random_state=0).fit(x_train, train.y[:, j])
            boosted[:, clf.classes_] = clf.predict_proba(x_test)
        else:
            boosted[:, train.y[0, j]] = 1.0
        expected = np.mean((neural[j] + boosted).argmax(1) == test.y[:, j])
        assert summary["accuracy"][label] == pytest.approx(expected)
    assert cli.main(["hparams", "baseline", str(zoo), "--method", "ours+boost", "--ours", str(ckpt)]) == 0
    assert "ours+boost" in capsys.readouterr().out


def test_train_runs_limits_the_training_data(zoo):
    assert baselines.evaluate(zoo, "majority", train_runs=1)["train_runs"] == 1


def test_predict_reads_an_exported_cnn(zoo, tmp_path, capsys):
    ckpt, cnn_file = tmp_path / "h.safetensors", tmp_path / "cnn.safetensors"
    training.train(zoo, ckpt, training.HparamsConfig(steps=2, batch_size=4), progress=False)
    run = next(cnn_zoo.read(zoo, "test", columns=["run"]))["run"]
    assert cli.main(["zoo", "export", str(zoo), run, "-o", str(cnn_file)]) == 0
    capsys.readouterr()
    assert cli.main(["hparams", "predict", str(ckpt), str(cnn_file), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert set(predicted) == set(LABELS) and set(predicted["optimizer"]) == set(training.classes_of(zoo)["optimizer"])
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in predicted.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("model", ["ours", "paper"])
def test_cuda_training_in_autocast_and_a_checkpoint_that_evaluates_on_the_cpu(zoo, tmp_path, model):
    ckpt = tmp_path / "h.safetensors"
    record = training.train(zoo, ckpt, training.HparamsConfig(model=model, steps=4, batch_size=4, device="cuda"),
                            progress=False)  # fmt: skip
    assert record["device"].startswith("cuda")
    on_cpu = training.evaluate(ckpt, zoo, "val", device="cpu")["accuracy"]
    assert on_cpu["mean"] == pytest.approx(record["val"]["mean"], abs=0.05)  # bfloat16 on the GPU, float32 here


@pytest.mark.parametrize("case", ["not a zoo", "not a checkpoint", "not a cnn", "ours+boost without ours"])
def test_mistakes_are_one_error_line(zoo, tmp_path, capsys, case):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    args = {"not a zoo": ["hparams", "train", str(tmp_path), "-o", str(tmp_path / "h.safetensors")],
            "not a checkpoint": ["hparams", "evaluate", str(junk), str(zoo)],
            "not a cnn": ["hparams", "predict", str(junk), str(junk)],
            "ours+boost without ours": ["hparams", "baseline", str(zoo), "--method", "ours+boost"]}[case]  # fmt: skip
    if case == "not a cnn":
        training.train(zoo, tmp_path / "h.safetensors", training.HparamsConfig(steps=1, batch_size=2), progress=False)
        args[2] = str(tmp_path / "h.safetensors")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
