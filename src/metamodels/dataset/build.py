"""build_dataset: sample -> compile -> check -> deduplicate -> split -> write shards.

Shards are computed in parallel (a local process pool, or Ray tasks on an
existing cluster) and committed strictly in order, so deduplication and the
target count are decided exactly as in a serial run. Each shard is written
atomically and recorded in the manifest; a killed build resumes from the
manifest and produces the same rows as an uninterrupted one.

Splits are assigned by functional fingerprint (settings + outputs on the
battery), which implies the canonical hash: a program and every program that
computes the same function at the same settings fall in one split, so no
training example equals a test program by hash or by behaviour. Examples equal
to a ``lib`` program (by canonical hash or fingerprint) are dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import time
from collections.abc import Generator
from pathlib import Path

from tqdm import tqdm

from metamodels import artifacts
from metamodels import workers as workers_mod
from metamodels.dataset import examples, lib, stats, store
from metamodels.dataset.sampling import SamplerConfig
from metamodels.errors import MetamodelsError
from metamodels.rasp import canonical

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What a build did: rows stored, shards, every drop counted by reason, wall time."""

    rows: int
    shards: int
    drops: dict[str, int]
    seconds: float
    resumed_from_shard: int

    def describe(self, out: Path) -> str:
        """What ``metamodels dataset build`` prints."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        head = f"{out}: {self.rows} examples in {self.shards} shards ({self.seconds:.0f} s this run, {rate:.1f} examples/s)"
        return head + stats.format_counts("dropped (all runs)", {k: self.drops.get(k, 0) for k in examples.DROPS})


def build_dataset(
    out_dir: str | Path,
    config: examples.BuildConfig,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = False,
    stop_after_shards: int | None = None,
) -> BuildReport:
    """Build (or resume) the dataset ``config`` describes in ``out_dir``.

    ``stop_after_shards`` stops after committing that many new shards (for
    tests of resumption). Raises ValueError if ``out_dir`` holds a different build.
    """
    if workers < 1:
        raise MetamodelsError(f"--workers must be at least 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with store.lock(out):
        return _build(out, config, workers, ray_address, progress, stop_after_shards)


GIVE_UP_EMPTY = 8  # consecutive shards that store nothing: the settings can never be met


def _build(
    out: Path, config: examples.BuildConfig, workers: int, ray_address: str | None, progress: bool, stop: int | None
) -> BuildReport:
    manifest = store.open_manifest(out, dataclasses.asdict(config), FORMAT_VERSION)
    committed = manifest["shards"]
    seen = {
        h for rec in committed for h in store.read_shard(out / rec["file"], ["canonical_hash"]).column(0).to_pylist()
    }
    drops: collections.Counter[str] = collections.Counter()
    for rec in committed:
        drops.update(rec["drops"])
    total = sum(rec["rows"] for rec in committed)
    started, first_new = time.perf_counter(), len(committed)
    lib_hashes = {canonical.canonical_hash(p) for p in lib.lib_programs().values()}
    results = _shard_results(config, first_new, workers, ray_address)
    with tqdm(total=config.n, initial=total, desc="building", unit="ex", disable=not progress) as bar:
        while total < config.n and (stop is None or len(committed) - first_new < stop):
            k, (candidates, start, end) = next(results)
            rows: list[dict] = []
            shard_drops = examples.count_drops(candidates)
            for row in (c for c in candidates if isinstance(c, dict)):
                reason = _keep(row, seen, lib_hashes, total + len(rows), config.n)
                if reason:
                    shard_drops[reason] += 1
                    continue
                seen.add(row["canonical_hash"])
                rows.append({**row, "split": _split(row["fingerprint"], config)})
            store.write_shard(out, k, rows)
            record = {"file": store.shard_name(k), "rows": len(rows), "first_index": start, "end_index": end}
            committed.append({**record, "drops": dict(shard_drops)})
            total += len(rows)
            drops.update(shard_drops)
            manifest["complete"] = total >= config.n
            store.write_manifest(out, manifest)
            bar.update(len(rows))
            if len(committed) >= GIVE_UP_EMPTY and not any(rec["rows"] for rec in committed[-GIVE_UP_EMPTY:]):
                results.close()
                common = ", ".join(f"{k} {v}" for k, v in drops.most_common(3))
                raise MetamodelsError(f"{out}: the last {GIVE_UP_EMPTY} shards stored no example (drops: {common}); "
                                      "these settings cannot be met: loosen the caps or the op range")  # fmt: skip
    results.close()  # cancels work computed ahead
    return BuildReport(total, len(committed), dict(drops), time.perf_counter() - started, first_new)


def _keep(row: dict, seen: set[str], lib_hashes: set[str], kept: int, n: int) -> str | None:
    """Drop reason for a candidate row at this point of the ordered commit, or None to keep it."""
    if row["canonical_hash"] in seen:
        return "duplicate"
    if row["canonical_hash"] in lib_hashes or row["fingerprint"] in _lib_fingerprints(row["vocab"], row["max_seq_len"]):
        return "lib_leak"
    if kept >= n:
        return "beyond_target"
    return None


@functools.cache
def _lib_fingerprints(vocab_json: str, max_seq_len: int) -> frozenset[str]:
    """Fingerprints of the lib programs at one example's settings (their function on its battery)."""
    import json

    sampler = SamplerConfig(vocab=tuple(json.loads(vocab_json)), max_seq_len=max_seq_len)
    out = set()
    for program in lib.lib_programs().values():
        try:
            outputs = [program.evaluate(xs) for xs in sampler.battery]
        except (ValueError, TypeError, ArithmeticError):
            continue
        out.add(examples.fingerprint((sampler.vocab, sampler.max_seq_len, False), outputs))
    return frozenset(out)


def _split(fingerprint: str, config: examples.BuildConfig) -> str:
    bucket = int(fingerprint[:8], 16) % 1000
    return (
        "test"
        if bucket < config.test_permille
        else "val"
        if bucket < config.test_permille + config.val_permille
        else "train"
    )


def _shard_results(
    config: examples.BuildConfig, first: int, workers: int, ray_address: str | None
) -> Generator[tuple[int, tuple], None, None]:
    """(k, make_shard result) for k = first, first+1, ..., computed ahead in parallel, yielded in order."""
    prov = artifacts.provenance()
    if ray_address is not None:
        import ray

        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(examples.make_shard)
        yield from workers_mod.in_order(
            first, lambda k: remote.remote(config, k, prov), ray.get, ahead=max(2, 2 * workers)
        )
        return
    if workers <= 1:
        for k in itertools.count(first):
            yield k, examples.make_shard(config, k, prov)
        return
    with workers_mod.process_pool(workers) as pool:  # spawned, never forked: JAX is multithreaded
        yield from workers_mod.in_order(
            first, lambda k: pool.submit(examples.make_shard, config, k, prov), lambda f: f.result(), ahead=2 * workers
        )
