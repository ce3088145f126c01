"""One dataset example: sample -> compile -> differential check -> row (runs in workers).

``make_shard(config, k)`` produces the candidate rows for the sample indices of
shard k, each either a row or a drop reason; which of them are kept (dedup,
leakage, the target count) is decided in order by the orchestrator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter

import numpy as np

from metamodels import options
from metamodels.dataset import store
from metamodels.dataset.sampling import SamplerConfig, SamplerExhausted, sample
from metamodels.errors import MetamodelsError
from metamodels.rasp import canonical, text, tokens
from metamodels.rasp.program import Program
from metamodels.transformer import battery, compiler, densification, forward
from metamodels.transformer.compiled import CompiledModel

DROPS: tuple[str, ...] = (
    "sampler_exhausted", "compile_failed", "compile_crashed", "differential_mismatch", "too_many_params", "too_many_tokens",
    "too_many_layers", "below_fidelity", "duplicate", "lib_leak", "beyond_target",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that determines a dataset's contents (stored in its manifest).

    Compile settings are fixed (``vocab_size``/``max_seq_len`` as (a, a)) or drawn
    per example uniformly from the inclusive ranges; the vocabulary is 1..size, or
    with ``open_vocab`` one of :data:`VOCAB_KINDS` of that size.
    """

    n: int = options.option(help="number of examples to store")
    seed: int = options.option(0, help="sampling seed")
    min_ops: int = options.option(1, flag="--ops", upper="max_ops", help="operations per program, N or A-B")
    max_ops: int = 9
    vocab_size: tuple[int, int] = options.option(
        (5, 5), help="vocabulary size (1..size), fixed or A-B drawn per example"
    )
    max_seq_len: tuple[int, int] = options.option((5, 5), help="maximum length, fixed or A-B drawn per example")
    shard_size: int = options.option(250, help="sample indices per shard")
    max_params: int = options.option(65536, help="drop models with more weights")
    max_tokens: int = options.option(128, help="drop programs with more tokens")
    max_layers: int = options.option(10, help="drop models with more layers")
    val_permille: int = 10
    test_permille: int = 10
    dense_fidelity: float | None = options.option(
        None, flag="--dense", metavar="FIDELITY", help="densify every model (PCA + rotation) to this held-out fidelity"
    )
    open_vocab: bool = options.option(
        False,
        help="open-vocabulary programs: per example a vocabulary of integers, letters, words or floats (of "
        "--vocab-size), causal masking half the time, named variables, and random value-table functions and "
        "predicates alongside the library",
    )

    def __post_init__(self) -> None:
        for name in ("n", "shard_size", "max_params", "max_tokens", "max_layers"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.val_permille + self.test_permille <= 1000 or min(self.val_permille, self.test_permille) < 0:
            raise MetamodelsError(
                f"val_permille and test_permille must be 0..1000 together, got {self.val_permille}, {self.test_permille}"
            )
        for name in ("vocab_size", "max_seq_len"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise MetamodelsError(f"{name} range must satisfy 1 <= a <= b, got {lo}-{hi}")
        SamplerConfig(min_ops=self.min_ops, max_ops=self.max_ops)  # validates the op range
        if self.dense_fidelity is not None and not 0.0 < self.dense_fidelity <= 1.0:
            raise MetamodelsError(f"dense_fidelity must be in (0, 1], got {self.dense_fidelity}")

    def sampler(self, index: int) -> SamplerConfig:
        """The sampler configuration (with this example's compile settings) of sample ``index``."""
        rng = np.random.default_rng([self.seed, index, 1])
        size = int(rng.integers(self.vocab_size[0], self.vocab_size[1] + 1))
        length = int(rng.integers(self.max_seq_len[0], self.max_seq_len[1] + 1))
        if not self.open_vocab:
            return SamplerConfig(
                vocab=tuple(range(1, size + 1)), max_seq_len=length, min_ops=self.min_ops, max_ops=self.max_ops
            )
        return SamplerConfig(
            vocab=open_vocabulary(rng, size), max_seq_len=length, min_ops=self.min_ops, max_ops=self.max_ops,
            table_probability=0.5, predicate_table_probability=0.3, causal=self.causal(index),
        )  # fmt: skip

    def causal(self, index: int) -> bool:
        """Whether example ``index`` is compiled with a causal mask (half of the open-vocabulary ones)."""
        return self.open_vocab and bool(np.random.default_rng([self.seed, index, 2]).random() < 0.5)


VOCAB_KINDS: tuple[str, ...] = ("integers", "letters", "words", "floats")
_WORDS = ("the", "cat", "sat", "on", "mat", "dog", "ran", "up", "a", "hill", "big", "red", "sun", "and", "sky", "old")
_NAMES = ("count", "prev", "flag", "shifted", "total", "frac", "first", "rank", "key", "width", "match", "score")


def open_vocabulary(rng: np.random.Generator, size: int) -> tuple:
    """A vocabulary of ``size`` tokens of a random kind: integers (from 0 or 1), letters, words or floats."""
    kind = VOCAB_KINDS[int(rng.integers(len(VOCAB_KINDS)))]
    if kind == "integers":
        start = int(rng.integers(0, 2))
        return tuple(range(start, start + size))
    if kind == "letters":
        return tuple("abcdefghijklmnopqrstuvwxyz"[:size])
    if kind == "words":
        return tuple(sorted(_WORDS[i] for i in rng.choice(len(_WORDS), size=min(size, len(_WORDS)), replace=False)))
    return tuple(round(0.5 * (i + 1), 1) for i in range(size))


def named(program: Program, rng: np.random.Generator) -> Program:
    """``program`` with its variables renamed to random words (what user-chosen names do to Tracr's residual order)."""
    words = [_NAMES[int(rng.integers(len(_NAMES)))] + f"_{i}" for i in range(len(program.ops))]
    order = rng.permutation(len(words))
    rename = {op.name: words[j] for op, j in zip(program.ops, order)}
    rename.update({"tokens": "tokens", "indices": "indices"})
    ops = tuple(
        dataclasses.replace(op, name=rename[op.name], args=tuple(rename[a] for a in op.args)) for op in program.ops
    )
    return Program(ops=ops, output=rename[program.output])


def fingerprint(settings_key: tuple, outputs: list[list]) -> str:
    """Digest of a program's function: settings plus outputs on the battery (bools as ints, floats rounded)."""

    def norm(v):
        return int(v) if isinstance(v, bool) else round(v, 6) if isinstance(v, float) else v

    payload = json.dumps([list(settings_key), [[norm(v) for v in out] for out in outputs]], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def make_shard(config: BuildConfig, k: int, provenance: dict) -> tuple[list[dict | str], int, int]:
    """Candidates for sample indices [k*S, (k+1)*S): a row dict or a drop reason each."""
    start, end = k * config.shard_size, (k + 1) * config.shard_size
    return [make_example(config, index, provenance) for index in range(start, end)], start, end


def make_example(config: BuildConfig, index: int, provenance: dict) -> dict | str:
    """Row of sample ``index``, or the reason it is dropped."""
    sampler = config.sampler(index)
    try:
        program = sample(sampler, config.seed, index).program
    except SamplerExhausted:
        return "sampler_exhausted"
    causal = sampler.causal
    if config.open_vocab:
        program = named(program, np.random.default_rng([config.seed, index, 3]))
    try:
        model = compiler.try_compile(program, compiler.settings_for(sampler.vocab, sampler.max_seq_len, causal=causal))
    except Exception:  # noqa: BLE001 - a crash inside Tracr is counted (and visible in stats), not fatal to a build
        return "compile_crashed"
    if isinstance(model, compiler.CompileFailure):
        return "compile_failed"
    ids = tokens.tokenize(program)
    if model.n_params > config.max_params:
        return "too_many_params"
    if len(ids) > config.max_tokens:
        return "too_many_tokens"
    if model.n_layers > config.max_layers:
        return "too_many_layers"
    inputs = sampler.battery
    expected = [battery.expected_output(program.evaluate, xs, causal) for xs in inputs]
    if not all(forward.outputs_match(got, want) for got, want in zip(forward.run(model, inputs), expected)):
        return "differential_mismatch"
    if config.dense_fidelity is not None:
        dense = densification.densify(model, target_fidelity=config.dense_fidelity, seed=index)
        if dense.fidelity < config.dense_fidelity:
            return "below_fidelity"
        model = dense.model
    settings = (sampler.vocab, sampler.max_seq_len, causal)
    return {
        "id": f"{config.seed}-{index}",
        "seed": config.seed,
        "index": index,
        "canonical_hash": canonical.canonical_hash(program),
        "fingerprint": fingerprint(settings, expected),
        "program": text.format_program(program),
        "tokens": ids,
        "vocab_version": tokens.VOCAB.version,
        "n_ops": program.n_ops,
        **store.model_row(model),
        "battery_inputs": json.dumps([list(xs) for xs in inputs]),
        "battery_outputs": json.dumps(expected),
        "provenance": json.dumps(provenance),
    }


def count_drops(candidates: list[dict | str]) -> Counter:
    return Counter(c for c in candidates if isinstance(c, str))


def example_row(row_id: str, split: str, program: Program, model: CompiledModel) -> store.Row:
    """A row for a program compiled here (the lib and written splits): model columns, battery, expected outputs.

    ``tokens`` is None for a program with value tables (they have no tokens); causal models are
    expected to agree prefix by prefix. Not sampled: seed and index are 0, there is no fingerprint.
    """
    s = model.settings
    inputs = battery.make_battery(s.vocab, s.max_seq_len)
    try:
        ids = tokens.tokenize(program)
    except ValueError:
        ids = None
    return {
        "id": row_id, "seed": 0, "index": 0, "canonical_hash": canonical.canonical_hash(program), "fingerprint": "",
        "split": split, "program": text.format_program(program), "tokens": ids, "vocab_version": tokens.VOCAB.version,
        "n_ops": program.n_ops, **store.model_row(model),
        "battery_inputs": json.dumps([list(xs) for xs in inputs]),
        "battery_outputs": json.dumps([battery.expected_output(program.evaluate, xs, s.causal) for xs in inputs]),
        "provenance": "{}",
    }  # fmt: skip
