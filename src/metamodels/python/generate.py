"""Random Python programs with loops (paper 002, App. B.2): seeded, judged, deduplicated.

Program ``index`` of seed ``s`` is always the same (:func:`sample`). A candidate is judged on a fixed
battery of inputs over the configured values and lengths and rejected, with its reason counted, when
it indexes out of range (a condition's unmodded read), is (near-)constant, is the identity, has a
statement whose removal changes no output on the battery (``dead_statement``), or has more distinct
output values than one classifier should hold.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from metamodels import options
from metamodels.dataset import sampling, stats
from metamodels.errors import MetamodelsError
from metamodels.python.program import (
    Assign,
    Bound,
    Condition,
    Expr,
    If,
    Index,
    Loop,
    PyProgram,
    Statement,
    canonical_hash,
    execute,
    format_program,
    paths,
)
from metamodels.transformer import battery

REJECTIONS = ("out_of_range", "constant", "identity", "dead_statement", "too_many_values", "duplicate")


def values_of(size: int) -> tuple[int, ...]:
    """The default input values of a given count: 0, 1, ..., size - 1."""
    return tuple(range(size))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """The generator's distribution and the input domain its programs are judged on."""

    values: tuple[int, ...] = options.option(
        (0, 1, 2, 3, 4), parse=options.parse_vocab, show=options.show_vocab, help="input values (integers), e.g. 0-4"
    )
    max_seq_len: int = options.option(8, help="maximum input length")
    min_loops: int = options.option(1, flag="--loops", upper="max_loops", help="outer for loops, N or A-B (paper: 1-3)")
    max_loops: int = 3
    max_body: int = 2  # statements per loop or conditional body
    nested_probability: float = 0.35  # a loop body statement is a nested loop (outer loops only)
    if_probability: float = 0.35
    max_values: int = 32  # distinct output values
    max_constant_fraction: float = 0.95
    battery_per_length: int = 8
    max_attempts: int = 1000

    def __post_init__(self) -> None:
        if not self.values or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.values):
            raise MetamodelsError(f"Python program inputs must be integers, got {list(self.values)}")
        if len(set(self.values)) != len(self.values):
            raise MetamodelsError(f"input values repeat: {list(self.values)}")
        if self.max_seq_len < 1:
            raise MetamodelsError(f"--max-seq-len must be at least 1, got {self.max_seq_len}")
        if not 1 <= self.min_loops <= self.max_loops:
            raise MetamodelsError(f"--loops must satisfy 1 <= A <= B, got {self.min_loops}-{self.max_loops}")

    @property
    def battery(self) -> list[tuple]:
        return battery.make_battery(self.values, self.max_seq_len, per_length=self.battery_per_length, seed=0)


class GeneratorExhausted(MetamodelsError):
    """No candidate was accepted in ``max_attempts``."""


@dataclasses.dataclass(frozen=True)
class PySampled:
    """One accepted program, with the (seed, index) that regenerates it and what was rejected on the way."""

    program: PyProgram
    seed: int
    index: int
    rejected: dict[str, int]

    def describe(self) -> str:
        """The program file ``metamodels sample --language python`` writes."""
        return f"# seed {self.seed}, index {self.index}, {self.program.n_statements} statements\n{format_program(self.program)}"


def sample(config: GeneratorConfig, seed: int, index: int) -> PyProgram | str:
    """Program ``index`` of stream ``seed``, or ``"generator_exhausted"``."""
    found = sample_with_rejections(config, seed, index)
    return found.program if isinstance(found, PySampled) else found


def sample_with_rejections(config: GeneratorConfig, seed: int, index: int) -> PySampled | str:
    rng = np.random.default_rng([seed, index, 5])
    inputs = config.battery
    rejected: collections.Counter[str] = collections.Counter()
    for _ in range(config.max_attempts):
        program = _propose(config, rng)
        reason = judge(config, program, inputs)
        if reason is None:
            return PySampled(program, seed, index, dict(rejected))
        rejected[reason] += 1
    return "generator_exhausted"


def sample_unique(
    config: GeneratorConfig, n: int, seed: int, *, progress: bool = False
) -> tuple[list[PySampled], dict]:
    """``n`` programs with distinct canonical text (indices 0, 1, ... skipping duplicates) and rejection counts."""

    def draw(index: int) -> PySampled:
        s = sample_with_rejections(config, seed, index)
        if isinstance(s, str):
            raise GeneratorExhausted(f"no program accepted in {config.max_attempts} attempts at index {index}")
        return s

    return sampling.unique(draw, lambda s: canonical_hash(s.program), n, progress)


def judge(config: GeneratorConfig, program: PyProgram, inputs: Sequence[Sequence[int]]) -> str | None:
    """The rejection reason of a candidate on the battery ``inputs``, or None to accept it."""
    try:
        outputs = [execute(program, xs) for xs in inputs]
    except IndexError:
        return "out_of_range"
    flat = [v for row in outputs for v in row]
    if max(collections.Counter(flat).values()) > config.max_constant_fraction * len(flat):
        return "constant"
    if all(list(xs) == row for xs, row in zip(inputs, outputs)):
        return "identity"
    if len(set(flat)) > config.max_values:
        return "too_many_values"
    for path in paths(program):
        if all(execute(program, xs, skip=path) == row for xs, row in zip(inputs, outputs)):
            return "dead_statement"
    return None


def _propose(config: GeneratorConfig, rng: np.random.Generator) -> PyProgram:
    n_loops = int(rng.integers(config.min_loops, config.max_loops + 1))
    return PyProgram(tuple(_loop(config, rng, "i", ("i",)) for _ in range(n_loops)))


def _loop(config: GeneratorConfig, rng: np.random.Generator, var: str, scope: tuple[str, ...]) -> Loop:
    start = Bound(int(rng.integers(0, 2)))
    u = rng.random()
    if u < 0.6:
        stop = Bound(0, from_n=True)
    elif u < 0.8:
        stop = Bound(1, from_n=True)
    else:
        stop = Bound(int(rng.integers(2, max(3, min(config.max_seq_len, 32) + 1))))
    body: list[Statement] = []
    for _ in range(int(rng.integers(1, config.max_body + 1))):
        u = rng.random()
        if var == "i" and u < config.nested_probability and not any(isinstance(s, Loop) for s in body):
            body.append(_loop(config, rng, "j", ("i", "j")))
        elif u < config.nested_probability + config.if_probability:
            body.append(_if(config, rng, scope))
        else:
            body.append(_assign(rng, scope))
    return Loop(var, start, stop, tuple(body))  # type: ignore[arg-type]


def _index(rng: np.random.Generator, scope: tuple[str, ...]) -> Index:
    var = scope[-1] if len(scope) == 1 or rng.random() < 0.75 else scope[0]
    offset = int(rng.choice([-1, 0, 0, 1]))
    return Index(var, offset)  # type: ignore[arg-type]


def _assign(rng: np.random.Generator, scope: tuple[str, ...]) -> Assign:
    u = rng.random()
    if u < 0.4:
        expr = Expr("arr", _index(rng, scope))
    elif u < 0.65:
        expr = Expr("neg", _index(rng, scope))
    elif u < 0.8:
        expr = Expr("arr", _index(rng, scope), constant=int(rng.choice([-2, -1, 1, 2])))
    else:
        expr = Expr("acc", _index(rng, scope), _index(rng, scope))
    return Assign(_index(rng, scope), expr)


def _if(config: GeneratorConfig, rng: np.random.Generator, scope: tuple[str, ...]) -> If:
    index = _index(rng, scope)
    if rng.random() < 0.6:
        modulus = int(rng.integers(2, 4))
        condition = Condition(index, "==" if rng.random() < 0.5 else "!=", int(rng.integers(0, modulus)), modulus)
    else:
        lo, hi = min(config.values), max(config.values)
        condition = Condition(index, ">" if rng.random() < 0.5 else "<", int(rng.integers(max(lo, 0), max(hi, 1) + 1)))
    body = tuple(_assign(rng, scope) for _ in range(int(rng.integers(1, config.max_body + 1))))
    return If(condition, body)


def describe_stats(samples: Sequence[PySampled], rejected: dict, config: GeneratorConfig, seed: int) -> str:
    """What ``metamodels sample --language python --stats`` prints: realised histograms and rejections by reason."""
    h: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in samples:
        h["outer loops"][len(s.program.loops)] += 1
        h["statements"][s.program.n_statements] += 1
        for line in format_program(s.program).splitlines()[3:-1]:
            h["statement kind"][line.split()[0] if not line.strip().startswith("out") else "assignment"] += 1
    lines = [f"{len(samples)} programs (seed {seed}, loops {config.min_loops}-{config.max_loops})"]
    lines += [stats.format_counts(name, c) for name, c in h.items()]
    return "\n".join([*lines, stats.format_counts("rejected candidates", {k: rejected.get(k, 0) for k in REJECTIONS})])
