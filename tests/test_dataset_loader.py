"""The PyTorch pipeline: every example once per epoch for any worker count, reproducible shuffling."""

from __future__ import annotations

from pathlib import Path

import torch

from metamodels.dataset import loader, store

FIXTURE = Path(__file__).parent / "fixtures" / "dataset"


def _ids(dataset, workers: int) -> list[str]:
    # spawn: this test process may hold an initialised JAX (from other tests), which must not be forked
    context = "spawn" if workers else None
    batches = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, multiprocessing_context=context
    )
    return [example["id"] for example in batches]


def test_each_example_once_per_epoch_with_workers():
    expected = sorted(r["id"] for r in store.iter_rows(FIXTURE, split="train", columns=["id", "split"]))
    dataset = loader.ShardDataset(FIXTURE, "train", shuffle_buffer=16, seed=0)
    for workers in (0, 2):
        assert sorted(_ids(dataset, workers)) == expected


def test_shuffling_is_reproducible_and_changes_with_epoch():
    dataset = loader.ShardDataset(FIXTURE, "train", shuffle_buffer=32, seed=1)
    first, again = _ids(dataset, 0), _ids(dataset, 0)
    dataset.set_epoch(1)
    assert first == again and _ids(dataset, 0) != first


def test_tensors_have_the_stored_shapes():
    example = next(iter(loader.ShardDataset(FIXTURE, None, shuffle_buffer=0)))
    row = next(store.iter_rows(FIXTURE))
    assert example["id"] == row["id"] and example["tokens"].tolist() == row["tokens"]
    for w in row["weights"]:
        assert tuple(example["weights"][w["name"]].shape) == tuple(w["shape"])
