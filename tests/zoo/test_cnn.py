"""The CNN base model: its forward against a numpy oracle, initialisations, training records, divergence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from metamodels.zoo import cnn

SPEC = cnn.CnnSpec(dataset="digits", depth=2, width=8, kernel=3, activation="tanh", init="he_normal", optimizer="adam",
                   lr=3e-3, l2=0.0, dropout=0.0, train_fraction=1.0, batch_size=64, augmentation="none", seed=3,
                   epochs=(1, 3))  # fmt: skip


def numpy_forward(weights: dict[str, np.ndarray], x: np.ndarray, act) -> np.ndarray:
    """The oracle: stride-2, same-padded 1-D convolutions by explicit sums, mean pooling, linear head."""
    h, i = x, 0
    while f"convs.{i}.weight" in weights:
        w, b = weights[f"convs.{i}.weight"], weights[f"convs.{i}.bias"]
        k = w.shape[-1]
        padded = np.pad(h, ((0, 0), (0, 0), (k // 2, k // 2)))
        length = (h.shape[-1] + 2 * (k // 2) - k) // 2 + 1
        out = np.zeros((h.shape[0], w.shape[0], length))
        for t in range(length):
            out[:, :, t] = np.einsum("bck,ock->bo", padded[:, :, 2 * t : 2 * t + k], w) + b
        h, i = act(out), i + 1
    return h.mean(-1) @ weights["head.weight"].T + weights["head.bias"]


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_forward_matches_the_numpy_oracle(kernel):
    spec = dataclasses.replace(SPEC, kernel=kernel, depth=3)
    net = cnn.build(spec, classes=10)
    weights = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(4, 1, 40)).astype(np.float32)
    with torch.no_grad():
        got = net.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, numpy_forward(weights, x, np.tanh), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("init", ["xavier_normal", "he_normal", "orthogonal", "normal", "truncated_normal"])
def test_initialisations_are_recorded_and_distinct(init):
    w = cnn.build(dataclasses.replace(SPEC, init=init), 10).convs[1].weight.detach().numpy()
    if init == "truncated_normal":
        assert np.abs(w).max() <= 2 * cnn.NORMAL_STD + 1e-6
    if init == "orthogonal":
        flat = w.reshape(w.shape[0], -1)
        np.testing.assert_allclose(flat @ flat.T, np.eye(w.shape[0]), atol=1e-5)
    assert not np.allclose(w, cnn.build(dataclasses.replace(SPEC, init=init, seed=4), 10).convs[1].weight.detach())


def test_training_keeps_the_asked_epochs_and_learns():
    a, b = cnn.train(SPEC), cnn.train(SPEC)
    assert [c.epoch for c in a] == [1, 3]
    assert a[-1].test_accuracy > 0.2  # 10 classes: chance is 0.1 (3 short epochs)
    for x, y in zip(a, b):  # a run is a function of its spec
        assert x.test_accuracy == y.test_accuracy and all(np.array_equal(x.weights[k], y.weights[k]) for k in x.weights)
    data = cnn.load_data("digits")
    assert cnn.accuracy(cnn.load(SPEC, 10, a[-1].weights), data.x_test, data.y_test) == a[-1].test_accuracy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_training_learns_and_its_checkpoints_score_the_same_on_the_cpu():
    run = cnn.train(SPEC, "cuda")
    assert not isinstance(run, str) and [c.epoch for c in run] == [1, 3] and run[-1].test_accuracy > 0.2
    data = cnn.load_data("digits")
    on_cpu = cnn.accuracy(cnn.load(SPEC, 10, run[-1].weights), data.x_test, data.y_test)
    assert on_cpu == pytest.approx(run[-1].test_accuracy, abs=0.01)


def test_a_diverging_run_is_reported_not_returned():
    assert cnn.train(dataclasses.replace(SPEC, optimizer="sgd", lr=1e8)) == "diverged"


def test_bad_choices_and_epochs_are_refused():
    with pytest.raises(ValueError, match="activation"):
        dataclasses.replace(SPEC, activation="swish")
    with pytest.raises(ValueError, match="epochs"):
        dataclasses.replace(SPEC, epochs=(3, 1))
    with pytest.raises(ValueError, match="dataset"):
        cnn.load_data("cifar10")


def test_datasets_are_fixed_and_standardised():
    for name in cnn.DATASETS:
        d = cnn.load_data(name)
        assert d.x_train.ndim == 3 and d.x_train.shape[1] == 1 and d.classes == 10
        assert abs(float(d.x_train.mean())) < 0.2 and len(d.y_test) > 100
    plain, shuffled = cnn.load_data("mnist1d"), cnn.load_data("mnist1d-shuffled")
    assert np.array_equal(plain.y_train, shuffled.y_train) and not np.allclose(plain.x_train, shuffled.x_train)
