"""Encoded splits: cache round trip, padding, length grouping, reproducible epochs."""

from __future__ import annotations

import numpy as np
import pytest

from metamodels.dataset import store
from metamodels.meta import batching, training, weight_encoding
from metamodels.transformer import densification
from tests.cases import FIXTURE

ROWS = training.encoding_config("rows")


def test_encoded_split_matches_encoding_each_row(tmp_path):
    data = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1)
    rows = list(store.iter_rows(FIXTURE, "train"))
    assert len(data) == len(rows) and data.ids == [r["id"] for r in rows]
    for i in (0, 7, len(rows) - 1):
        expected = weight_encoding.encode(store.model_from_row(rows[i]).params, ROWS)
        got = data.weight_tokens(i)
        np.testing.assert_allclose(got.values, expected.values, atol=2e-3, rtol=1e-3)  # stored as float16
        np.testing.assert_array_equal(got.tags, expected.tags)
        np.testing.assert_array_equal(data.programs[i], rows[i]["tokens"])


def test_cache_round_trip_and_parallel_equals_serial(tmp_path):
    a = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    b = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1, cache_dir=tmp_path)
    c = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1)
    for other in (b, c):
        np.testing.assert_array_equal(a.values, other.values)
        np.testing.assert_array_equal(a.offsets, other.offsets)
        assert a.ids == other.ids and all((x == y).all() for x, y in zip(a.programs, other.programs))


def test_flat_split_restores_the_constant_tail():
    flat = training.encoding_config("flat")
    data = batching.load_split(FIXTURE, "train", flat, max_program_tokens=128, limit=3)
    assert len(data) == 3 and data.fill == (128, 0.05)
    row = next(store.iter_rows(FIXTURE, "train"))
    expected = weight_encoding.encode(store.model_from_row(row).params, flat)
    np.testing.assert_allclose(data.weight_tokens(0).values, expected.values, atol=2e-3, rtol=1e-3)


def test_too_long_examples_are_counted_not_dropped_silently():
    data = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=30, workers=1)
    assert data.skipped["program_too_long"] > 0
    tight = weight_encoding.EncodingConfig("rows", max_tokens=40)
    data = batching.load_split(FIXTURE, "train", tight, max_program_tokens=128, workers=1)
    assert sum(v for k, v in data.skipped.items() if k.startswith("encoding:")) > 0
    assert len(data) + sum(data.skipped.values()) == sum(1 for _ in store.iter_rows(FIXTURE, "train"))


def test_batches_pad_and_mask():
    data = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1)
    lengths = np.diff(data.offsets)
    index = np.array([int(lengths.argmin()), int(lengths.argmax())])
    batch = batching.collate(data, index)
    assert batch.values.shape == (2, lengths.max(), 32)
    assert batch.weight_mask.sum(1).tolist() == [lengths.min(), lengths.max()]
    assert (batch.values[0, lengths.min() :] == 0).all()
    assert batch.program[0, len(data.programs[index[0]]) :].eq(0).all()


def test_epochs_are_reproducible_cover_everything_and_differ():
    data = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1)
    e0, again, e1 = (batching.epoch_batches(data, 16, 0, e) for e in (0, 0, 1))
    assert all((a == b).all() for a, b in zip(e0, again))
    assert sorted(np.concatenate(e0).tolist()) == list(range(len(data)))
    assert any(not np.array_equal(a, b) for a, b in zip(e0, e1))


def test_concatenated_sets_keep_every_example_intact():
    data = batching.load_split(FIXTURE, "train", ROWS, max_program_tokens=128, workers=1)
    val = batching.load_split(FIXTURE, "val", ROWS, max_program_tokens=128, workers=1)
    both = batching.concat([data, val])
    assert len(both) == len(data) + len(val) and both.ids == data.ids + val.ids
    for i, (source, j) in enumerate([(data, k) for k in range(len(data))] + [(val, k) for k in range(len(val))]):
        np.testing.assert_array_equal(both.weight_tokens(i).values, source.weight_tokens(j).values)
        np.testing.assert_array_equal(both.programs[i], source.programs[j])


@pytest.mark.slow
def test_a_densified_split_holds_the_same_programs_read_from_dense_weights(tmp_path):
    canonical = training.encoding_config("rows", "canonical")
    dense = densification.Dense(fidelity=0.99, seed=5, heldout=300)
    got = batching.load_split(FIXTURE, "train", canonical, max_program_tokens=128, limit=6, workers=1, dense=dense, cache_dir=tmp_path)  # fmt: skip
    rows = list(store.iter_rows(FIXTURE, "train"))[:6]
    assert got.ids == [r["id"] for r in rows] and len(list(tmp_path.glob("train-rows-dense-*.npz"))) == 1
    for i, row in enumerate(rows):
        model = densification.densified(store.model_from_row(row), dense, row["id"])  # seeded per example: reproducible
        assert model.densified["fidelity"] >= 0.99 and not model.residual_labels
        np.testing.assert_array_equal(got.weight_tokens(i).tags, weight_encoding.encode(model.params, canonical).tags)
        np.testing.assert_array_equal(got.programs[i], row["tokens"])


def test_direction_relabelling_keeps_the_structure():
    from metamodels.meta import batching

    tags = np.array([3, 3, 0, 7, 1, 7])
    out = batching.permute_directions(tags, np.random.default_rng(0))
    assert out[2] == 0 and out[0] == out[1] and out[3] == out[5] and len({out[0], out[3], out[4]}) == 3
    assert out.max() <= 2047 and out[out > 0].min() >= 1
