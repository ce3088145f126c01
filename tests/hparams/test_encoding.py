"""Encodings of CNN weights: neuron tokens hold each neuron's weights, channel permutations keep the function,
flat/chunk/slice/statistics shapes, against the weights themselves and the network's own forward."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats
import torch

from metamodels.hparams import encoding
from metamodels.zoo import cnn

SPEC = cnn.CnnSpec(dataset="mnist1d", depth=3, width=6, kernel=5, activation="gelu", init="orthogonal",
                   optimizer="adam", lr=1e-3, l2=0.0, dropout=0.0, train_fraction=1.0, batch_size=32,
                   augmentation="none", seed=5, epochs=(1,))  # fmt: skip


def weights_of(spec: cnn.CnnSpec) -> dict[str, np.ndarray]:
    net = cnn.build(spec, 10)
    for p in net.parameters():  # non-zero biases, so that tokens and permutations are tested on them too
        p.data += 0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def test_neuron_tokens_hold_each_neurons_fan_in_and_bias():
    w = weights_of(SPEC)
    tokens, tags = encoding.neuron_tokens(w)
    assert tokens.shape == (3 * 6 + 10, encoding.NEURON_FEATURES)
    assert tags.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [encoding.MAX_LAYERS] * 10
    fan_in = w["convs.1.weight"][1].ravel()
    np.testing.assert_array_equal(tokens[7, : 6 * 5], fan_in)
    assert tokens[7, encoding.MAX_FAN_IN] == w["convs.1.bias"][1] and not tokens[7, 6 * 5 : encoding.MAX_FAN_IN].any()
    np.testing.assert_allclose(tokens[7, encoding.MAX_FAN_IN + 1 :],
                               [fan_in.mean(), fan_in.std(), fan_in.min(), fan_in.max(), rms := np.sqrt((fan_in**2).mean()), np.log(rms),
                                scipy.stats.skew(fan_in), scipy.stats.kurtosis(fan_in), np.abs(fan_in).mean() / rms],
                               rtol=1e-4)  # fmt: skip
    np.testing.assert_array_equal(tokens[-1, :6], w["head.weight"][-1])
    summaries, layer_tags = encoding.layer_tokens(w)
    assert summaries.shape == (4, 2 * encoding.LAYER_STATS) and layer_tags.tolist() == [0, 1, 2, encoding.MAX_LAYERS]
    assert np.isclose(summaries[3, encoding.LAYER_STATS], w["head.bias"].mean())
    np.testing.assert_allclose(summaries[1, 3 : encoding.LAYER_STATS],
                               np.quantile(w["convs.1.weight"], encoding.STAT_QUANTILES), rtol=1e-5)  # fmt: skip


def test_summary_tokens_add_shapes_and_row_geometry_to_statnns_statistics():
    w = weights_of(SPEC)
    summaries, tags = encoding.summary_tokens(w)
    assert summaries.shape == (4, encoding.SUMMARY_FEATURES) and tags.tolist() == [0, 1, 2, encoding.MAX_LAYERS]
    statnn, _ = encoding.layer_tokens(w)
    n, s = encoding.LAYER_STATS, encoding.SHAPE_STATS
    np.testing.assert_allclose(summaries[:, :n], statnn[:, :n])  # the weights' statistics
    np.testing.assert_allclose(summaries[:, n + s : 2 * n + s], statnn[:, n:])  # the biases'
    bias = w["convs.2.bias"]
    np.testing.assert_allclose(summaries[2, 2 * n + s : 2 * n + 2 * s],
                               [scipy.stats.skew(bias), scipy.stats.kurtosis(bias), np.abs(bias).mean() / np.sqrt((bias**2).mean())],
                               rtol=1e-4)  # fmt: skip
    rows = w["convs.1.weight"].reshape(6, -1)
    norms = [np.linalg.norm(r) for r in rows]
    cosines = [abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    np.testing.assert_allclose(summaries[1, -3:], [np.log(np.mean(norms)), np.std(norms) / np.mean(norms), np.mean(cosines)],
                               rtol=1e-4)  # fmt: skip
    untrained = {k: v.detach().numpy() for k, v in cnn.build(SPEC, 10).state_dict().items()}
    orthogonal = encoding.summary_tokens(untrained)[0]  # orthogonal initialisation: orthogonal rows
    assert orthogonal[1, -1] < 1e-5 < summaries[1, -1]


def test_channel_permutation_changes_weights_not_the_function():
    w = weights_of(SPEC)
    permuted = encoding.permute_channels(w, np.random.default_rng(0))
    assert not np.array_equal(permuted["convs.0.weight"], w["convs.0.weight"])
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(8, 1, 40)).astype(np.float32))
    with torch.no_grad():
        a, b = cnn.load(SPEC, 10, w).eval()(x), cnn.load(SPEC, 10, permuted).eval()(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    first = lambda weights: sorted(map(tuple, encoding.neuron_tokens(weights)[0][:6]))  # noqa: E731
    assert first(w) == first(permuted)  # the first layer's tokens are only reordered; later ones see permuted inputs


def test_flat_chunks_slices_and_statistics():
    w = weights_of(SPEC)
    n = sum(v.size for v in w.values())
    flat = encoding.flat(w, n + 10)
    np.testing.assert_array_equal(flat[: w["convs.0.weight"].size], w["convs.0.weight"].ravel())
    assert not flat[n:].any() and encoding.flat(w, 7).shape == (7,)
    assert encoding.chunks(w, 4, 16).shape == (4, 16)
    s = encoding.random_slice(w, 100, np.random.default_rng(0))
    start = int(np.flatnonzero(np.isclose(flat, s[0]))[0])
    np.testing.assert_array_equal(s, flat[start : start + 100])
    stats = encoding.statistics(w).reshape(encoding.MAX_LAYERS + 1, 2, -1)
    assert np.isclose(stats[1, 0, 0], w["convs.1.weight"].mean()) and not stats[3:-1].any()
    deeper = encoding.statistics(weights_of(dataclasses.replace(SPEC, depth=4))).reshape(encoding.MAX_LAYERS + 1, 2, -1)
    assert deeper[3].any()


def test_summaries_place_each_layers_summary_in_its_slot():
    w = weights_of(SPEC)
    tokens, tags = encoding.summary_tokens(w)
    flat = encoding.summaries(w).reshape(encoding.MAX_LAYERS + 1, encoding.SUMMARY_FEATURES)
    for token, tag in zip(tokens, tags):
        np.testing.assert_array_equal(flat[tag], token)
    assert not flat[sorted(set(range(encoding.MAX_LAYERS + 1)) - set(tags))].any()  # slots the CNN lacks: zeros
