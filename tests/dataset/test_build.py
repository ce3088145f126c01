"""Dataset build, store and loader: resumption, determinism, leakage, re-checks, bad files.

Uses the committed fixture ``tests/fixtures/dataset`` (built by the command in
README "Datasets") and small builds made here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metamodels.dataset import build, examples, lib, store
from metamodels.rasp import canonical, text, tokens
from metamodels.transformer import forward
from tests import cases

FIXTURE = cases.FIXTURE
SMALL = examples.BuildConfig(n=40, shard_size=15, seed=3)


def _rows(directory: Path) -> list[dict]:
    return sorted(store.iter_rows(directory), key=lambda r: r["index"])


def _content(rows: list[dict]) -> list[tuple]:
    """What must not depend on how a build ran: ids, programs, weights, residual labels (in model_config), outputs."""
    return [(r["id"], r["canonical_hash"], r["split"], r["tokens"], r["weights"], json.loads(r["model_config"]).get("residual_labels"), r["battery_outputs"]) for r in rows]  # fmt: skip


@pytest.fixture(scope="module")
def serial_build(tmp_path_factory) -> tuple[list[dict], build.BuildReport]:
    out = tmp_path_factory.mktemp("serial")
    report = build.build_dataset(out, SMALL, workers=1)
    assert report.rows == SMALL.n
    return _rows(out), report


@pytest.fixture(scope="module")
def uninterrupted(serial_build) -> list[dict]:
    return serial_build[0]


def test_resume_after_stop_gives_the_uninterrupted_set(tmp_path, serial_build):
    first = build.build_dataset(tmp_path, SMALL, workers=1, stop_after_shards=1)
    assert first.rows < SMALL.n and first.shards == 1
    second = build.build_dataset(tmp_path, SMALL, workers=1, stop_after_shards=1)
    assert second.resumed_from_shard == 1 and second.shards == 2
    third = build.build_dataset(tmp_path, SMALL, workers=1)
    assert third.rows == SMALL.n and third.resumed_from_shard == 2
    assert _content(_rows(tmp_path)) == _content(serial_build[0])
    assert third.drops == serial_build[1].drops  # counts summed over every earlier run's shards


@pytest.mark.slow
def test_kill_and_resume_in_a_subprocess(tmp_path, uninterrupted):
    command = [sys.executable, "-m", "metamodels.cli", "dataset", "build", str(tmp_path), "--n", str(SMALL.n),
               "--shard-size", str(SMALL.shard_size), "--seed", str(SMALL.seed), "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (store.read_manifest(tmp_path) or {}).get("shards"):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    manifest = store.read_manifest(tmp_path)
    assert manifest is not None and not manifest["complete"], "the build finished before it could be killed"
    build.build_dataset(tmp_path, SMALL, workers=1)
    assert _content(_rows(tmp_path)) == _content(uninterrupted)


def test_parallel_build_equals_serial(tmp_path, uninterrupted):
    build.build_dataset(tmp_path, SMALL, workers=2)
    assert _content(_rows(tmp_path)) == _content(uninterrupted)


# Ray starts its daemons with fork + exec; JAX (initialised by earlier tests) warns at any fork.
@pytest.mark.slow
@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
def test_ray_build_equals_serial(tmp_path, uninterrupted):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        build.build_dataset(tmp_path, SMALL, ray_address="auto", workers=2)
    finally:
        ray.shutdown()
    assert _content(_rows(tmp_path)) == _content(uninterrupted)


def test_a_second_concurrent_build_is_refused_and_a_stale_lock_taken_over(tmp_path):
    """Issue 14: two builds into one directory both did the full work; one died on the shared .tmp file."""
    (tmp_path / store.LOCK).write_text(str(os.getpid()))  # a live writer: this process
    with pytest.raises(store.StoreError, match="another build"):
        build.build_dataset(tmp_path, SMALL, workers=1, stop_after_shards=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / store.LOCK).write_text(dead.stdout.strip())  # its writer is gone
    build.build_dataset(tmp_path, SMALL, workers=1, stop_after_shards=1)
    assert not (tmp_path / store.LOCK).exists() and store.read_manifest(tmp_path)["shards"]


def test_settings_that_can_never_be_met_stop_with_an_error(tmp_path, monkeypatch):
    """Issue 14: --max-params 0 wrote empty shards forever."""
    with pytest.raises(ValueError, match="--max-params must be at least 1"):
        examples.BuildConfig(n=2, max_params=0)
    monkeypatch.setattr(build, "GIVE_UP_EMPTY", 2)
    with pytest.raises(ValueError, match="cannot be met"):
        build.build_dataset(tmp_path, examples.BuildConfig(n=2, shard_size=4, max_params=1), workers=1)


@pytest.mark.slow
def test_killed_build_leaves_no_worker_behind(tmp_path):
    """Issue 14: after kill -9 of `dataset build --workers 2`, both workers kept computing for a minute."""
    command = [
        sys.executable,
        "-m",
        "metamodels.cli",
        "dataset",
        "build",
        str(tmp_path),
        "--n",
        "400",
        "--workers",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    children: list[int] = []
    while time.time() < deadline and len(children) < 2:
        time.sleep(0.5)
        listing = subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True)
        children = [int(p) for p in listing.stdout.split()]
    assert len(children) >= 2, "the workers never started"
    process.kill()
    process.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in children):
        time.sleep(0.5)
    assert not any(_alive(p) for p in children)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split()[2] == "Z")  # a zombie has exited


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    build.build_dataset(tmp_path, examples.BuildConfig(n=5, shard_size=5), workers=1)
    with pytest.raises(ValueError, match="different settings"):
        build.build_dataset(tmp_path, examples.BuildConfig(n=5, shard_size=5, seed=9), workers=1)


def test_every_stored_example_rechecks():
    rows = list(store.iter_rows(FIXTURE))
    assert len(rows) >= 200
    for row in rows:
        model = store.model_from_row(row)
        inputs = [tuple(xs) for xs in json.loads(row["battery_inputs"])]
        outputs = json.loads(row["battery_outputs"])
        assert all(forward.outputs_match(got, want) for got, want in zip(forward.run(model, inputs), outputs)), row[
            "id"
        ]
        program = text.parse_program(row["program"])
        assert tokens.tokenize(program) == row["tokens"]
        assert canonical.canonical_hash(program) == row["canonical_hash"]
        assert model.n_params == row["n_params"] and program.n_ops == row["n_ops"]


def test_no_duplicates_and_no_leakage():
    rows = list(store.iter_rows(FIXTURE))
    hashes = [r["canonical_hash"] for r in rows]
    assert len(set(hashes)) == len(hashes)
    lib_hashes = {canonical.canonical_hash(p) for p in lib.lib_programs().values()}
    assert not lib_hashes & set(hashes)
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["fingerprint"])
        assert r["fingerprint"] not in build._lib_fingerprints(r["vocab"], r["max_seq_len"])
    assert not by_split.get("train", set()) & (by_split.get("test", set()) | by_split.get("val", set()))


def test_readable_with_plain_pyarrow():
    table = pq.read_table([str(p) for p in sorted(FIXTURE.glob("shard_*.parquet"))])
    row = table.slice(0, 1).to_pylist()[0]
    weights = {w["name"]: w for w in row["weights"]}
    embed = weights["token_embed/embeddings"]
    assert len(embed["data"]) == embed["shape"][0] * embed["shape"][1]
    assert table.num_rows == sum(r["rows"] for r in store.read_manifest(FIXTURE)["shards"])


@pytest.mark.parametrize("damage", ["truncate", "missing", "manifest"])
def test_malformed_files_are_named(tmp_path, damage):
    build.build_dataset(tmp_path, examples.BuildConfig(n=10, shard_size=10), workers=1)
    shard = tmp_path / store.shard_name(0)
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:300])
        target = shard
    elif damage == "missing":
        shard.unlink()
        target = shard
    else:
        (tmp_path / store.MANIFEST).write_text("{not json")
        target = tmp_path / store.MANIFEST
    with pytest.raises(store.StoreError, match=str(target)):
        list(store.iter_rows(tmp_path))


def test_config_validation():
    with pytest.raises(ValueError, match="vocab_size range"):
        examples.BuildConfig(n=5, vocab_size=(4, 2))
    with pytest.raises(ValueError, match="--n must be at least 1"):
        examples.BuildConfig(n=0)


def test_per_example_settings_are_drawn_from_ranges(tmp_path):
    config = examples.BuildConfig(n=12, shard_size=12, vocab_size=(3, 6), max_seq_len=(4, 7), seed=2)
    build.build_dataset(tmp_path, config, workers=1)
    rows = list(store.iter_rows(tmp_path))
    shapes = {(len(json.loads(r["vocab"])), r["max_seq_len"]) for r in rows}
    assert len(shapes) > 1 and all(3 <= v <= 6 and 4 <= n <= 7 for v, n in shapes)


def test_stats_table_and_plots(tmp_path):
    from metamodels.dataset import stats

    text_report = stats.report(FIXTURE, tmp_path / "stats.png")
    rows = sum(r["rows"] for r in store.read_manifest(FIXTURE)["shards"])
    assert f"{rows} examples" in text_report
    for section in ("ops per program", "layers", "parameters", "op kind", "predicate", "function", "dropped"):
        assert section in text_report
    assert (tmp_path / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_dense_build_stores_fidelity_and_width(tmp_path):
    from metamodels.transformer import battery, compiler, densification

    config = examples.BuildConfig(n=5, shard_size=8, seed=4, max_ops=5, dense_fidelity=0.99)
    report = build.build_dataset(tmp_path, config, workers=1)
    assert report.rows == 5
    for row in store.iter_rows(tmp_path):
        dense = store.model_from_row(row)
        info = dense.densified
        assert info["fidelity"] >= 0.99 and dense.d_model == info["d_model"] <= info["original_d_model"]
        sparse = compiler.compile_program(text.parse_program(row["program"]))
        inputs = battery.make_battery(sparse.settings.vocab, sparse.settings.max_seq_len, per_length=100, seed=7)
        assert densification.fidelity(sparse, dense, inputs) >= 0.97


def test_the_row_type_names_every_column():
    assert set(store.Row.__annotations__) == set(store.SCHEMA.names)
    row = next(store.iter_rows(FIXTURE))
    assert set(row) == set(store.SCHEMA.names)
    assert set(lib.lib_rows()[0]) == set(store.SCHEMA.names)  # rows made here have every column too
