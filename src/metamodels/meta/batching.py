"""Dataset rows -> encoded meta-model examples -> padded training batches.

A split is encoded once (weights -> :class:`~metamodels.meta.weight_encoding.WeightTokens`)
and held in memory as ragged arrays (values in float16: ~6 KB per example for the
rows encoding), cached on disk keyed by the dataset manifest, split and encoding,
so a second run (or a resumed one) starts in seconds. A split can also be read
*densified* (:class:`Dense`): each model PCA-compressed to a fidelity bar,
randomly rotated and its MLP hidden units and heads permuted, seeded per example. Examples the encoder cannot
represent, or whose programs exceed the meta-model's length, are counted, never
silently dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from metamodels import artifacts
from metamodels import workers as workers_mod
from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.meta import weight_encoding
from metamodels.transformer import densification


@dataclasses.dataclass(frozen=True)
class EncodedSet:
    """A split's examples, encoded. Example i spans ``offsets[i]:offsets[i+1]`` of values/tags.

    values [total_tokens, width] float16; tags [total_tokens, 5] int16;
    programs: token-id arrays (int64, BOS ... EOS); skipped: reason -> count.
    For the flat encoding only the chunks holding weights are stored; ``fill``
    (number of tokens, padding value) restores the constant tail.
    """

    values: np.ndarray
    tags: np.ndarray
    offsets: np.ndarray
    programs: list[np.ndarray]
    n_ops: np.ndarray
    ids: list[str]
    skipped: dict[str, int]
    fill: tuple[int, float] | None = None

    def __len__(self) -> int:
        return len(self.programs)

    def weight_tokens(self, i: int) -> weight_encoding.WeightTokens:
        b = collate(self, np.array([i]))
        return weight_encoding.WeightTokens(b.values[0].numpy(), b.tags[0].numpy())


def concat(sets: list[EncodedSet]) -> EncodedSet:
    """Several encoded sets as one (examples in order); skip counts add up."""
    if len(sets) == 1:
        return sets[0]
    if any(s.fill is not None for s in sets):
        raise MetamodelsError("only rows-encoded sets can be concatenated")
    starts = np.cumsum([0] + [len(s.values) for s in sets[:-1]])
    offsets = np.concatenate([sets[0].offsets[:1]] + [s.offsets[1:] + start for s, start in zip(sets, starts)])
    skipped: Counter = Counter()
    for s in sets:
        skipped.update(s.skipped)
    return EncodedSet(
        np.concatenate([s.values for s in sets]), np.concatenate([s.tags for s in sets]), offsets,
        [p for s in sets for p in s.programs], np.concatenate([s.n_ops for s in sets]),
        [i for s in sets for i in s.ids], dict(skipped),
    )  # fmt: skip


def _encode_shard(args: tuple) -> tuple:
    path, split, enc, max_program_tokens, limit, dense = args
    values, tags, programs, n_ops, ids = [], [], [], [], []  # type: ignore[var-annotated]
    skipped: Counter[str] = Counter()
    for row in store.read_shard(Path(path), split=split).to_pylist():
        if len(row["tokens"]) > max_program_tokens:
            skipped["program_too_long"] += 1
            continue
        if dense is None:
            params = store.params_of(row)  # type: ignore[arg-type]
        else:
            params = densification.densified(store.model_from_row(row), dense, row["id"]).params
        try:
            wt = weight_encoding.encode(params, enc)
        except weight_encoding.EncodingError as e:
            skipped["encoding: " + re.sub(r"\d+", "N", str(e))] += 1
            continue
        if enc.name == "flat":  # keep the chunks that hold weights; the 0.05 tail is restored in collate
            keep = -(-sum(p.size for p in params.values()) // enc.width)
            wt = weight_encoding.WeightTokens(wt.values[:keep], wt.tags[:keep])
        values.append(wt.values.astype(np.float16))
        tags.append(wt.tags.astype(np.int16))
        programs.append(np.asarray(row["tokens"], np.int64))
        n_ops.append(int(row["n_ops"]))
        ids.append(row["id"])
        if limit is not None and len(ids) >= limit:
            break
    return values, tags, programs, n_ops, ids, dict(skipped)


def load_split(
    directory: str | Path,
    split: str | None,
    enc: weight_encoding.EncodingConfig,
    *,
    max_program_tokens: int,
    limit: int | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    dense: densification.Dense | None = None,
    part: tuple[int, int] = (0, 1),
) -> EncodedSet:
    """Encode one split of a dataset directory (optionally its first ``limit`` examples, optionally densified).

    ``part`` (rank, ranks): only every ranks-th Parquet shard from the rank-th on is read, so data-parallel
    ranks read disjoint shards and none reads the whole dataset (MetamodelsError if there are fewer shards
    than ranks).
    """
    directory = Path(directory)
    rank, ranks = part
    paths = store.shard_paths(directory)
    if ranks > 1:
        if len(paths) < ranks:
            raise MetamodelsError(f"{directory}: {len(paths)} shard(s) cannot be split over {ranks} ranks "
                                  "(each rank reads whole shards); use fewer ranks or a dataset with more shards")  # fmt: skip
        paths = paths[rank::ranks]
    key = hashlib.sha256(
        json.dumps(
            [
                weight_encoding.VERSION,
                (directory / store.MANIFEST).read_text(),
                split,
                dataclasses.asdict(enc),
                max_program_tokens,
                limit,
            ]
            + ([list(part)] if ranks > 1 else [])
            + ([dataclasses.asdict(dense)] if dense is not None else [])
        ).encode()
    ).hexdigest()[:16]
    name = f"{split}-{enc.name}{'-dense' if dense is not None else ''}-{key}.npz"
    cache = Path(cache_dir) / name if cache_dir else None
    if cache is not None and cache.is_file():
        return _read_cache(cache)
    jobs = [(str(p), split, enc, max_program_tokens, None, dense) for p in paths]
    parts: list[tuple] = []
    # a few shards at a time (``workers`` in parallel), stopping as soon as there are ``limit`` examples
    step = len(jobs) if limit is None else max(1, workers)
    with workers_mod.process_pool(workers) if workers > 1 and len(jobs) > 1 else contextlib.nullcontext() as pool:
        for start in range(0, len(jobs), step):
            group = jobs[start : start + step]
            parts += list(pool.map(_encode_shard, group)) if pool else [_encode_shard(j) for j in group]
            if limit is not None and sum(len(p[4]) for p in parts) >= limit:
                break
    out = _concat(parts, limit)
    if enc.name == "flat":
        out = dataclasses.replace(out, fill=(enc.flat_size // enc.width, weight_encoding.FLAT_PAD))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        _write_cache(cache, out)
    return out


def _concat(parts: list[tuple], limit: int | None) -> EncodedSet:
    values = [v for p in parts for v in p[0]][:limit]
    tags = [t for p in parts for t in p[1]][:limit]
    skipped: Counter = Counter()
    for p in parts:
        skipped.update(p[5])
    width = values[0].shape[1] if values else 1
    return EncodedSet(
        values=np.concatenate(values) if values else np.zeros((0, width), np.float16),
        tags=np.concatenate(tags) if tags else np.zeros((0, weight_encoding.N_TAGS), np.int16),
        offsets=np.cumsum([0] + [len(v) for v in values]),
        programs=[x for p in parts for x in p[2]][:limit],
        n_ops=np.asarray([x for p in parts for x in p[3]][:limit], np.int64),
        ids=[x for p in parts for x in p[4]][:limit],
        skipped=dict(skipped),
    )


def _write_cache(path: Path, s: EncodedSet) -> None:
    lengths = np.asarray([len(p) for p in s.programs])
    artifacts.atomic_write(path, lambda tmp: np.savez(
        tmp, values=s.values, tags=s.tags, offsets=s.offsets, n_ops=s.n_ops, lengths=lengths,
        programs=np.concatenate(s.programs) if s.programs else np.zeros(0, np.int64),
        meta=np.frombuffer(json.dumps({"ids": s.ids, "skipped": s.skipped, "fill": s.fill}).encode(), np.uint8),
    ), suffix=".tmp.npz")  # fmt: skip


def _read_cache(path: Path) -> EncodedSet:
    z = np.load(path)
    meta = json.loads(z["meta"].tobytes())
    ends = np.cumsum(z["lengths"])
    programs = np.split(z["programs"], ends[:-1]) if len(ends) else []
    fill = tuple(meta["fill"]) if meta["fill"] else None
    return EncodedSet(z["values"], z["tags"], z["offsets"], programs, z["n_ops"], meta["ids"], meta["skipped"], fill)


@dataclasses.dataclass(frozen=True)
class Batch:
    """values [B, P, width] float32; tags [B, P, 5] long; weight_mask [B, P] bool;
    program [B, T] long (PAD = 0 after EOS); index [B]: example numbers in the set."""

    values: torch.Tensor
    tags: torch.Tensor
    weight_mask: torch.Tensor
    program: torch.Tensor
    index: np.ndarray


def collate(data: EncodedSet, index: np.ndarray, rng: np.random.Generator | None = None) -> Batch:
    """Pad the chosen examples to the longest weight sequence and program among them.

    With ``rng`` (rows encoding only), each example's residual directions are
    relabelled by a random injective map into the direction table: the same
    model in a permuted residual basis (as a program with other variable names
    compiles to), so the meta-model cannot lean on Tracr's residual order.
    """
    lengths = data.offsets[index + 1] - data.offsets[index]
    p, t = int(lengths.max()), max(len(data.programs[i]) for i in index)
    values = np.zeros((len(index), p, data.values.shape[1]), np.float32)
    tags = np.zeros((len(index), p, weight_encoding.N_TAGS), np.int64)
    mask = np.zeros((len(index), p), bool)
    if data.fill is not None:  # flat: every example is the full constant-padded length
        p = data.fill[0]
        values = np.full((len(index), p, data.values.shape[1]), data.fill[1], np.float32)
        tags = np.zeros((len(index), p, weight_encoding.N_TAGS), np.int64)
        tags[:, :, 3] = np.arange(p)
        mask = np.ones((len(index), p), bool)
    program = np.zeros((len(index), t), np.int64)
    for row, i in enumerate(index):
        a, n = data.offsets[i], lengths[row]
        values[row, :n], tags[row, :n] = data.values[a : a + n], data.tags[a : a + n]
        mask[row, :n] = True
        if rng is not None and data.fill is None:
            tags[row, :n, 2] = permute_directions(tags[row, :n, 2], rng)
        program[row, : len(data.programs[i])] = data.programs[i]
    return Batch(
        torch.from_numpy(values), torch.from_numpy(tags), torch.from_numpy(mask), torch.from_numpy(program), index
    )


def permute_directions(directions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map direction tags (1..; 0 = none) injectively to random tags in 1..LIMITS["residual"]."""
    used = np.unique(directions[directions > 0])
    new = rng.choice(weight_encoding.LIMITS["residual"], size=len(used), replace=False) + 1
    out = directions.copy()
    out[directions > 0] = new[np.searchsorted(used, directions[directions > 0])]
    return out


def epoch_batches(data: EncodedSet, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches (index arrays): shuffled, then grouped by similar weight length to cut padding."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data))
    lengths = np.diff(data.offsets)
    group = batch_size * 32
    batches = []
    for g in range(0, len(order), group):
        chunk = order[g : g + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def in_order(data: EncodedSet, batch_size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(data), batch_size):
        yield np.arange(i, min(i + batch_size, len(data)))


def pad_weights(items: Sequence[weight_encoding.WeightTokens]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch weight tokens: values [B, P, width], tags [B, P, 5], mask [B, P] (True = real token)."""
    p = max(len(w) for w in items)
    values = torch.zeros(len(items), p, items[0].values.shape[1])
    tags = torch.zeros(len(items), p, items[0].tags.shape[1], dtype=torch.long)
    mask = torch.zeros(len(items), p, dtype=torch.bool)
    for i, w in enumerate(items):
        values[i, : len(w)], tags[i, : len(w)], mask[i, : len(w)] = (
            torch.from_numpy(w.values),
            torch.from_numpy(w.tags),
            True,
        )
    return values, tags, mask


def pad_programs(programs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Program token ids padded with PAD (0): [B, T] long, T the longest program."""
    out = torch.zeros(len(programs), max(len(p) for p in programs), dtype=torch.long)
    for i, p in enumerate(programs):
        out[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    return out


def teacher_forced(
    model: torch.nn.Module, values: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, program: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The meta-model given each true prefix: what training minimises and teacher-forced accuracy counts.

    values [B, P, width], tags [B, P, 5], mask [B, P], program [B, T] (PAD = 0). Returns (logits [B, T-1, V],
    hits [B, T-1] bool: the most likely next token is the true one, real [B, T-1] bool: the true one is not PAD).
    """
    logits = model(values, tags, mask, program[:, :-1])
    target = program[:, 1:].to(logits.device)
    return logits, logits.argmax(-1) == target, target != 0
