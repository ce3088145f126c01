"""rasp-gen: random, valid, non-trivial RASP programs with explicit marginals.

A program is sampled op by op, tracking the variables available and their
encoding and value set, so that every choice respects Tracr's rules (Select keys
and queries categorical; numerical Aggregate inputs in {0, 1}; categorical
SequenceMap, numerical LinearSequenceMap; no negative outputs from numerical
MLPs; no numerical Map downstream of a numerical mean; no Select key or
numerical Aggregate input that is non-zero at the BOS position, see below).
Candidates are then
judged on a fixed battery of inputs and rejected, with the reason counted, if
Tracr's validation fails or the output is the identity, (near-)constant or
mostly undefined. Program ``index`` of ``seed`` is always the same program.

A Tracr trap found here: a Map whose input is numerical compiles to an MLP with
a bias-driven unit, so its output (and everything computed from it) is non-zero
at the BOS position, where Tracr's attention assumes all zeros (a Select whose
queries are such values spreads this to its output). A Select keyed on
such a value can match BOS (SelectorWidth and Aggregate then count it), and a
numerical Aggregate of such a value returns its BOS value when nothing is
selected. Tracr's validator misses both; the sampler tracks "BOS-dirty" values
and never uses them there.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from metamodels import options
from metamodels.dataset import stats
from metamodels.errors import MetamodelsError
from metamodels.rasp import canonical, functions, tables, text
from metamodels.rasp.program import INPUTS, Op, Program
from metamodels.rasp.tables import Table
from metamodels.transformer import battery, compiler
from metamodels.transformer.compiled import Value

SOP_KINDS: tuple[str, ...] = ("Map", "SequenceMap", "LinearSequenceMap", "Aggregate", "SelectorWidth")
REJECTIONS: tuple[str, ...] = (
    "no_valid_choice",
    "dead_code",
    "no_tokens",
    "tracr_invalid",
    "eval_error",
    "identity",
    "constant",
    "undefined",
    "duplicate",
)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """The sampler's distribution, stated explicitly. Weights need not sum to one.

    ``numerical`` is the probability that a Map / Aggregate / SelectorWidth is
    numerical when both encodings are possible. ``function_weights`` of None means
    uniform over the library. A program is rejected as (near-)constant if one
    value fills more than ``max_constant_fraction`` of all output positions, and
    as undefined if more than ``max_undefined_fraction`` of them are None.
    """

    vocab: tuple[Value, ...] = options.option(
        compiler.DEFAULT_VOCAB, parse=options.parse_vocab, show=options.show_vocab,
        help="input vocabulary, e.g. 1,2,3 or 1-5 or a,b,c",
    )  # fmt: skip
    max_seq_len: int = options.option(compiler.DEFAULT_MAX_SEQ_LEN, help="maximum input length")
    min_ops: int = options.option(1, flag="--ops", upper="max_ops", help="operations per program, N or A-B")
    max_ops: int = 10
    op_weights: tuple[tuple[str, float], ...] = (
        ("Map", 3.0),
        ("SequenceMap", 2.0),
        ("LinearSequenceMap", 0.5),
        ("Aggregate", 3.0),
        ("SelectorWidth", 1.5),
    )
    predicate_weights: tuple[tuple[str, float], ...] = (
        ("EQ", 2.0),
        ("NEQ", 1.0),
        ("LT", 1.0),
        ("LEQ", 1.0),
        ("GT", 1.0),
        ("GEQ", 1.0),
        ("TRUE", 1.0),
    )
    numerical: tuple[tuple[str, float], ...] = (("Map", 0.25), ("Aggregate", 0.5), ("SelectorWidth", 0.0))
    function_weights: tuple[tuple[str, float], ...] | None = None
    linear_coeffs: tuple[float, ...] = (-1.0, 1.0, 2.0)
    max_value_set: int = 24
    max_constant_fraction: float = 0.95
    max_undefined_fraction: float = 0.5
    battery_per_length: int = 8
    max_attempts: int = 1000
    # Open vocabulary (0 = the closed library only): chance that a Map/SequenceMap is a random value table
    # (over at most max_table_entries inputs) and that a Select's predicate is a random table.
    table_probability: float = 0.0
    predicate_table_probability: float = 0.0
    max_table_entries: int = 64
    causal: bool = False  # judge programs as a causally masked model computes them

    def __post_init__(self) -> None:
        compiler.settings_for(self.vocab, self.max_seq_len)  # the compile settings are valid
        if not 1 <= self.min_ops <= self.max_ops:
            raise MetamodelsError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}..{self.max_ops}")
        for name, _ in self.op_weights:
            if name not in SOP_KINDS:
                raise MetamodelsError(f"op_weights: unknown op {name!r}; expected one of {SOP_KINDS}")
        for name, _ in self.predicate_weights:
            if name not in functions.PREDICATES:
                raise MetamodelsError(
                    f"predicate_weights: unknown predicate {name!r}; expected one of {functions.PREDICATES}"
                )
        for name, _ in self.function_weights or ():
            functions.by_name(name)
        for name in ("table_probability", "predicate_table_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MetamodelsError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def battery(self) -> list[tuple[Value, ...]]:
        return battery.make_battery(self.vocab, self.max_seq_len, per_length=self.battery_per_length, seed=0)


def read_config(path: Path) -> dict:
    """SamplerConfig keyword arguments from a JSON file (see :func:`config_fields`)."""
    try:
        return config_fields(json.loads(Path(path).read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetamodelsError(f"{path}: cannot read JSON ({e})") from None


def config_fields(data: object) -> dict:
    """SamplerConfig keyword arguments from JSON-style data ({name: weight} maps allowed for weights)."""
    if not isinstance(data, dict):
        raise MetamodelsError(f"a sampler config must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(SamplerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MetamodelsError(f"unknown sampler config field(s) {unknown}; expected some of {sorted(known)}")
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = tuple((str(k), float(v)) for k, v in value.items())
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


@dataclasses.dataclass(frozen=True)
class Sampled:
    """One accepted program, with the (seed, index) that regenerates it and what it took."""

    program: Program
    seed: int
    index: int
    target_ops: int
    rejected: dict[str, int]

    def describe(self) -> str:
        """The program file ``metamodels sample`` writes: a comment saying how to regenerate it, then the program."""
        return f"# seed {self.seed}, index {self.index}, {self.program.n_ops} ops\n{text.format_program(self.program)}"


@dataclasses.dataclass
class _Var:
    encoding: str
    values: frozenset
    from_mean: bool = False  # derives from a numerical Aggregate (Tracr mis-infers its value set)
    bos_dirty: bool = False  # non-zero at the BOS position (see module docstring)


class SamplerExhausted(MetamodelsError):
    """No candidate was accepted in ``max_attempts`` (the settings leave too few valid programs)."""


def sample(config: SamplerConfig, seed: int, index: int) -> Sampled:
    """Program ``index`` of stream ``seed`` (canonical form), deterministic.

    Raises SamplerExhausted if no candidate is accepted in ``config.max_attempts``.
    """
    rng = np.random.default_rng([seed, index])
    target = int(rng.integers(config.min_ops, config.max_ops + 1))
    inputs = config.battery
    rejected: collections.Counter[str] = collections.Counter()
    for _ in range(config.max_attempts):
        program = _propose(config, rng, target)
        reason = "no_valid_choice" if program is None else _judge(config, program, target, inputs)
        if reason is None:
            return Sampled(canonical.canonicalize(program), seed, index, target, dict(rejected))  # type: ignore[arg-type]
        rejected[reason] += 1
    raise SamplerExhausted(f"no program with {target} ops accepted in {config.max_attempts} attempts: {dict(rejected)}")


def sample_unique(
    config: SamplerConfig, n: int, seed: int, *, progress: bool = False
) -> tuple[list[Sampled], dict[str, int]]:
    """``n`` programs with distinct canonical hashes (indices 0, 1, ... skipping duplicates) and rejection counts."""
    return unique(lambda index: sample(config, seed, index), lambda s: canonical.canonical_hash(s.program), n, progress)


T = TypeVar("T")


def unique(
    draw: Callable[[int], T], digest: Callable[[T], str], n: int, progress: bool = False
) -> tuple[list[T], dict[str, int]]:
    """The first ``n`` of ``draw(0), draw(1), ...`` with distinct ``digest`` s, and the rejections counted.

    A drawn sample's ``rejected`` counts (candidates rejected on the way) are summed; a repeat counts as
    ``duplicate``. Shared by the RASP and the Python program samplers.
    """
    if n < 1:
        raise MetamodelsError(f"--n must be at least 1, got {n}")
    seen: set[str] = set()
    out: list[T] = []
    rejected: collections.Counter[str] = collections.Counter()
    with tqdm(total=n, desc="sampling", unit="prog", disable=not progress) as bar:
        for index in itertools.count():
            if len(out) == n:
                break
            s = draw(index)
            rejected.update(s.rejected)  # type: ignore[attr-defined]
            key = digest(s)
            if key in seen:
                rejected["duplicate"] += 1
                continue
            seen.add(key)
            out.append(s)
            bar.update()
    return out, dict(rejected)


def _choice(rng: np.random.Generator, weighted: Sequence[tuple[str, float]]) -> str:
    names, weights = zip(*weighted)
    p = np.asarray(weights, dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _propose(config: SamplerConfig, rng: np.random.Generator, target: int) -> Program | None:
    """A candidate with ``target`` sequence operations whose last op is the output."""
    env: dict[str, _Var] = {
        "tokens": _Var("categorical", frozenset(config.vocab)),
        "indices": _Var("categorical", frozenset(range(config.max_seq_len))),
    }
    used: set[str] = set()
    ops: list[Op] = []
    for i in range(target):
        for _ in range(20):
            new = _propose_op(config, rng, env, used, f"v{i}")
            if new is not None:
                break
        else:
            return None
        new_ops, var = new
        ops.extend(new_ops)
        for op in new_ops:
            used.update(op.args)
        env[new_ops[-1].name] = var
    return Program(ops=tuple(ops), output=ops[-1].name)


def _pick(rng: np.random.Generator, env: dict[str, _Var], used: set[str], ok) -> str | None:
    """A variable satisfying ``ok``, favouring ones not yet used (so programs stay connected)."""
    names = [n for n, v in env.items() if ok(v)]
    if not names:
        return None
    weights = np.array([1.0 if n in used or n in INPUTS else 40.0 for n in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _functions(config: SamplerConfig, arity: int) -> list[tuple[str, float]]:
    weights = dict(config.function_weights) if config.function_weights is not None else None
    return [
        (f.name, 1.0 if weights is None else weights.get(f.name, 0.0))
        for f in functions.FUNCTIONS.values()
        if f.arity == arity and (weights is None or weights.get(f.name, 0.0) > 0)
    ]


def _apply(fn: functions.Function | Table, *value_sets: frozenset) -> frozenset | None:
    f = fn if isinstance(fn, Table) else fn.fn
    try:
        if len(value_sets) == 1:
            return frozenset(f(x) for x in value_sets[0])
        return frozenset(f(x, y) for x in value_sets[0] for y in value_sets[1])
    except (TypeError, ValueError, ZeroDivisionError, ArithmeticError):
        return None


def _fn_field(fn: functions.Function | Table) -> str | Table:
    return fn if isinstance(fn, Table) else fn.name


def _table_or_function(config, rng, env, args: list[str], numerical: bool) -> functions.Function | Table:
    """A random value table (with ``table_probability``, if the inputs are few enough) or a library function."""
    domains = [tables.sort_values(env[a].values) for a in args]
    size = int(np.prod([len(d) for d in domains]))
    # No draw at probability 0, so closed-library streams are exactly what they were before tables existed.
    if not config.table_probability or size > config.max_table_entries or rng.random() >= config.table_probability:
        return functions.by_name(_choice(rng, _functions(config, len(args))))
    if numerical:  # numerical outputs feed numerical Aggregates, which need {0, 1}
        outputs: list = [0, 1]
    else:
        pools = [domains[0], list(config.vocab), list(range(int(rng.integers(2, 9))))]
        pool = tables.sort_values(set(pools[int(rng.integers(len(pools)))]))
        k = int(rng.integers(2, max(2, min(len(pool), 6)) + 1))
        outputs = [pool[i] for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
    keys = domains[0] if len(args) == 1 else list(itertools.product(*domains))
    return Table(tuple((key, outputs[int(rng.integers(len(outputs)))]) for key in keys), len(args))


def _random_predicate(config, rng, keys: frozenset, queries: frozenset) -> str | Table:
    """A named comparison, or (with ``predicate_table_probability``) a table: ``query == key + c`` or random."""
    p = config.predicate_table_probability
    if not p or len(keys) * len(queries) > config.max_table_entries or rng.random() >= p:
        return _choice(rng, config.predicate_weights)
    ks, qs = tables.sort_values(keys), tables.sort_values(queries)
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in [*ks, *qs])
    if numbers and rng.random() < 0.5:
        c = int(rng.choice([-2, -1, 1, 2]))
        return Table.tabulate(lambda k, q: q == k + c, ks, qs)
    density = float(rng.uniform(0.15, 0.5))
    return Table(tuple(((k, q), bool(rng.random() < density)) for k in ks for q in qs), 2)


def _propose_op(config: SamplerConfig, rng: np.random.Generator, env: dict[str, _Var], used: set[str], name: str):
    """New ops (a Select first for Aggregate/SelectorWidth) and the variable they define, or None."""
    kind = _choice(rng, config.op_weights)
    numerical = bool(rng.random() < dict(config.numerical).get(kind, 0.0))
    propose = {"Map": _map, "SequenceMap": _sequence_map, "LinearSequenceMap": _linear_sequence_map}.get(
        kind, _attention
    )
    return propose(config, rng, env, used, name, kind, numerical)


def _categorical(v: _Var) -> bool:
    return v.encoding == "categorical"


def _map(config, rng, env, used, name, kind, numerical):
    x = _pick(rng, env, used, lambda v: _categorical(v) or not v.from_mean)
    if x is None:
        return None
    fn = _table_or_function(config, rng, env, [x], numerical)
    values = _apply(fn, env[x].values)
    if values is None or (numerical and not all(_nonnegative_number(v) for v in values)):
        return None
    op = Op(name, "Map", (x,), "numerical" if numerical else "categorical", fn=_fn_field(fn))
    dirty = env[x].encoding == "numerical" or env[x].bos_dirty
    return _checked(config, [op], _Var(op.encoding, values, bos_dirty=dirty))  # type: ignore[arg-type]


def _sequence_map(config, rng, env, used, name, kind, numerical):
    x = _pick(rng, env, used, _categorical)
    y = _pick(rng, {k: v for k, v in env.items() if k != x}, used, _categorical)
    if x is None or y is None:
        _choice(rng, _functions(config, 2))  # the draw earlier versions made here: keeps seeded streams unchanged
        return None
    fn = _table_or_function(config, rng, env, [x, y], False)
    if (values := _apply(fn, env[x].values, env[y].values)) is None:
        return None
    var = _Var("categorical", values, bos_dirty=env[x].bos_dirty or env[y].bos_dirty)
    return _checked(config, [Op(name, "SequenceMap", (x, y), fn=_fn_field(fn))], var)


def _linear_sequence_map(config, rng, env, used, name, kind, numerical):
    x = _pick(rng, env, used, lambda v: not _categorical(v))
    y = _pick(rng, {k: v for k, v in env.items() if k != x}, used, lambda v: not _categorical(v))
    if x is None or y is None:
        return None
    a, b = (float(rng.choice(config.linear_coeffs)) for _ in range(2))
    values = frozenset(a * u + b * w for u in env[x].values for w in env[y].values)
    if not all(v >= 0 for v in values):
        return None
    op = Op(name, "LinearSequenceMap", (x, y), "numerical", coeffs=(a, b))
    var = _Var("numerical", values, env[x].from_mean or env[y].from_mean, env[x].bos_dirty or env[y].bos_dirty)
    return _checked(config, [op], var)


def _attention(config, rng, env, used, name, kind, numerical):
    """Aggregate or SelectorWidth, with its Select (keys must be zero at BOS, see module docstring)."""
    keys = _pick(rng, env, used, lambda v: _categorical(v) and not v.bos_dirty)
    queries = _pick(rng, env, used, _categorical)
    if keys is None or queries is None:
        return None
    predicate = _random_predicate(config, rng, env[keys].values, env[queries].values)
    select = Op(f"{name}_select", "Select", (keys, queries), None, predicate=predicate)
    dirty = env[queries].bos_dirty
    if kind == "SelectorWidth":
        op = Op(name, "SelectorWidth", (select.name,), "numerical" if numerical else "categorical")
        return _checked(
            config, [select, op], _Var(op.encoding, frozenset(range(config.max_seq_len + 1)), bos_dirty=dirty)
        )
    if numerical:
        sop = _pick(rng, env, used, lambda v: v.encoding == "numerical" and v.values <= {0, 1} and not v.bos_dirty)
        n = config.max_seq_len
        var = _Var("numerical", frozenset(k / m for m in range(1, n + 1) for k in range(m + 1)), True, dirty)
    else:
        sop = _pick(rng, env, used, _categorical)
        var = _Var("categorical", env[sop].values, bos_dirty=env[sop].bos_dirty or dirty) if sop else None
    if sop is None:
        return None
    return _checked(config, [select, Op(name, "Aggregate", (select.name, sop), var.encoding)], var)  # type: ignore[union-attr]


def _nonnegative_number(v: object) -> bool:
    return isinstance(v, (int, float)) and v >= 0


def _checked(config: SamplerConfig, ops: list[Op], var: _Var):
    if not var.values or len(var.values) > config.max_value_set or None in var.values:
        return None
    return ops, var


def _judge(config: SamplerConfig, program: Program, target: int, inputs: list[tuple[Value, ...]]) -> str | None:
    """The rejection reason for a candidate, or None if it is accepted."""
    if program.without_dead_code().n_ops != target:
        return "dead_code"
    live = program.without_dead_code()
    if not _reads_tokens(live):
        return "no_tokens"
    try:  # one pass per input: RASP output and Tracr's dynamic validation together
        results = [compiler.evaluate_validated(live, xs, config.causal) for xs in inputs]
    except (ValueError, TypeError, ArithmeticError):  # e.g. a Select comparing an undefined (None) value
        return "eval_error"
    if compiler.validate(live) or not all(valid for _, valid in results):
        return "tracr_invalid"
    outputs = [out for out, _ in results]
    if all(list(out) == list(xs) for out, xs in zip(outputs, inputs)) or all(
        list(out) == list(range(len(xs))) for out, xs in zip(outputs, inputs)
    ):
        return "identity"
    flat = [v for out in outputs for v in out]
    if sum(v is None for v in flat) > config.max_undefined_fraction * len(flat):
        return "undefined"
    most_common = collections.Counter(v for v in flat if v is not None).most_common(1)
    if not most_common or most_common[0][1] > config.max_constant_fraction * len(flat):
        return "constant"
    return None


def _reads_tokens(program: Program) -> bool:
    return any("tokens" in op.args for op in program.ops)


def describe_stats(samples: Sequence[Sampled], rejected: dict, config: SamplerConfig, seed: int) -> str:
    """What ``metamodels sample --stats`` prints: realised histograms and rejections by reason."""
    lines = [f"{len(samples)} programs (seed {seed}, ops {config.min_ops}-{config.max_ops})"]
    lines += [stats.format_counts(name, c) for name, c in histograms([s.program for s in samples]).items()]
    return "\n".join([*lines, stats.format_counts("rejected candidates", {k: rejected.get(k, 0) for k in REJECTIONS})])


def histograms(programs: Sequence[Program]) -> dict[str, collections.Counter]:
    """Realised marginals: op kinds, encodings, predicates, functions, ops per program."""
    h: dict[str, collections.Counter] = {
        k: collections.Counter() for k in ("ops per program", "op kind", "encoding", "predicate", "function")
    }
    for p in programs:
        h["ops per program"][p.n_ops] += 1
        for op in p.ops:
            if op.kind == "Select":
                h["predicate"]["table" if isinstance(op.predicate, Table) else op.predicate] += 1
                continue
            h["op kind"][op.kind] += 1
            h["encoding"][f"{op.kind}:{op.encoding}"] += 1
            if op.fn:
                h["function"]["table" if isinstance(op.fn, Table) else op.fn] += 1
    return h
