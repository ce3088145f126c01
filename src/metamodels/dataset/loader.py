"""PyTorch data pipeline over dataset shards: streaming, buffer-shuffled, worker-safe.

Each DataLoader worker reads a disjoint subset of the shards (shard i goes to
worker i mod num_workers), so every example is yielded exactly once per epoch
whatever the number of workers. Shuffling uses a buffer seeded from
(seed, epoch, worker), so an epoch's order is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from metamodels.dataset import store


def default_transform(row: dict) -> dict:
    """Row -> tensors: ``tokens`` [n_tokens] int64, ``weights`` {name: float32 tensor}, plus ``id`` and ``n_ops``."""
    return {
        "id": row["id"],
        "n_ops": int(row["n_ops"]),
        "tokens": torch.tensor(row["tokens"], dtype=torch.int64),
        "weights": {
            w["name"]: torch.tensor(w["data"], dtype=torch.float32).reshape(w["shape"]) for w in row["weights"]
        },
    }


class ShardDataset(torch.utils.data.IterableDataset):
    """Examples of one split of a dataset directory, streamed shard by shard.

    ``shuffle_buffer`` of 0 or 1 keeps the stored order. Call ``set_epoch`` to
    get a different (still reproducible) order each epoch.
    """

    def __init__(
        self,
        directory: str | Path,
        split: str | None = "train",
        *,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        transform: Callable[[dict], object] = default_transform,
    ) -> None:
        super().__init__()
        self.paths = store.shard_paths(Path(directory))
        self.split, self.shuffle_buffer, self.seed, self.transform = split, shuffle_buffer, seed, transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[object]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        paths = [p for i, p in enumerate(self.paths) if i % n_workers == worker]
        order = rng.permutation(len(paths)) if self.shuffle_buffer > 1 else range(len(paths))
        buffer: list[dict] = []
        for i in order:
            for row in store.read_shard(paths[i]).to_pylist():
                if self.split is not None and row["split"] != self.split:
                    continue
                if self.shuffle_buffer <= 1:
                    yield self.transform(row)
                    continue
                buffer.append(row)
                if len(buffer) >= self.shuffle_buffer:
                    yield self.transform(buffer.pop(int(rng.integers(len(buffer)))))
        rng.shuffle(buffer)
        for row in buffer:
            yield self.transform(row)
