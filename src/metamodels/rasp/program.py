"""The program model: a DAG of named RASP operations over ``tokens`` and ``indices``.

A :class:`Program` is the boundary object of every stage: the sampler makes
them, the printer/parser and tokenizer convert them, the compiler compiles them,
and decompilation returns them. Tracr's ``rasp`` module is the reference
semantics; :meth:`Program.to_rasp` and :func:`program_from_rasp` convert both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

from tracr.rasp import rasp

from metamodels.errors import MetamodelsError
from metamodels.rasp import functions
from metamodels.rasp.tables import Table, library_function, library_predicate

OpKind = Literal["Map", "SequenceMap", "LinearSequenceMap", "Select", "Aggregate", "SelectorWidth"]
Encoding = Literal["categorical", "numerical"]
INPUTS: tuple[str, ...] = ("tokens", "indices")
OP_KINDS: tuple[str, ...] = get_args(OpKind)
ENCODINGS: tuple[str, ...] = get_args(Encoding)
_ARITY = {"Map": 1, "SequenceMap": 2, "LinearSequenceMap": 2, "Select": 2, "Aggregate": 2, "SelectorWidth": 1}


@dataclasses.dataclass(frozen=True)
class Op:
    """One named operation.

    ``args`` name earlier variables (or the inputs): Map (x,), SequenceMap and
    LinearSequenceMap (x, y), Select (keys, queries), Aggregate (selector, sop),
    SelectorWidth (selector,). ``fn`` names a library function or is a
    :class:`~metamodels.rasp.tables.Table` (Map, SequenceMap); ``predicate`` names a
    comparison or is a (key, query) → bool table (Select); ``coeffs`` are the two
    factors of a LinearSequenceMap. ``encoding`` is None exactly for Select.
    """

    name: str
    kind: OpKind
    args: tuple[str, ...]
    encoding: Encoding | None = "categorical"
    fn: str | Table | None = None
    predicate: str | Table | None = None
    coeffs: tuple[float, float] | None = None
    label: str = dataclasses.field(default="", compare=False)  # the source's own label when it is no identifier

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise MetamodelsError(f"{self.name}: unknown op kind {self.kind!r}; expected one of {OP_KINDS}")
        if len(self.args) != _ARITY[self.kind]:
            raise MetamodelsError(f"{self.name}: {self.kind} takes {_ARITY[self.kind]} arguments, got {len(self.args)}")
        if (self.kind == "Select") != (self.encoding is None):
            raise MetamodelsError(f"{self.name}: encoding must be None for Select only, got {self.encoding!r}")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise MetamodelsError(f"{self.name}: unknown encoding {self.encoding!r}; expected one of {ENCODINGS}")
        if (self.kind in ("Map", "SequenceMap")) != (self.fn is not None):
            raise MetamodelsError(f"{self.name}: a function is required for Map/SequenceMap only")
        if self.fn is not None and _arity(self.fn) != _ARITY[self.kind]:
            raise MetamodelsError(f"{self.name}: function {self.fn} has the wrong arity for {self.kind}")
        if (self.kind == "Select") != (self.predicate is not None):
            raise MetamodelsError(f"{self.name}: a predicate is required for Select only")
        if isinstance(self.predicate, Table):
            if self.predicate.arity != 2 or not all(isinstance(v, bool) for _, v in self.predicate.entries):
                raise MetamodelsError(f"{self.name}: a predicate table maps (key, query) pairs to True/False")
        elif self.predicate is not None and self.predicate not in functions.PREDICATES:
            raise MetamodelsError(
                f"{self.name}: unknown predicate {self.predicate!r}; expected one of {functions.PREDICATES}"
            )
        if self.coeffs is not None and not all(math.isfinite(c) for c in self.coeffs):
            raise MetamodelsError(f"{self.name}: LinearSequenceMap coefficients must be finite, got {self.coeffs}")
        if (self.kind == "LinearSequenceMap") != (self.coeffs is not None):
            raise MetamodelsError(f"{self.name}: coefficients are required for LinearSequenceMap only")

    @property
    def is_sop(self) -> bool:
        """True for sequence operations (everything but Select)."""
        return self.kind != "Select"

    @property
    def function(self) -> Callable[..., object] | None:
        """The callable of ``fn`` (Map, SequenceMap) or ``predicate`` (Select, called as (key, query))."""
        if self.fn is not None:
            return self.fn if isinstance(self.fn, Table) else functions.by_name(self.fn).fn
        if self.predicate is not None:
            return self.predicate if isinstance(self.predicate, Table) else functions.predicate_fn(self.predicate)
        return None


def _arity(fn: str | Table) -> int:
    return fn.arity if isinstance(fn, Table) else functions.by_name(fn).arity


@dataclasses.dataclass(frozen=True)
class Program:
    """A RASP program: ops in definition order and the name of the output.

    Invariants (checked): names are unique identifiers distinct from the inputs;
    every argument is defined earlier; selectors are used only as selectors and
    sequences only as sequences; the output is a sequence operation.
    """

    ops: tuple[Op, ...]
    output: str

    def __post_init__(self) -> None:
        kinds: dict[str, str] = {name: "sop" for name in INPUTS}
        for op in self.ops:
            if not op.name.isidentifier() or op.name in kinds:
                raise MetamodelsError(f"variable {op.name!r} is not a fresh identifier")
            wanted = (
                ("selector", "sop")
                if op.kind == "Aggregate"
                else ("selector",)
                if op.kind == "SelectorWidth"
                else ("sop", "sop")
            )
            for arg, want in zip(op.args, wanted):
                if arg not in kinds:
                    raise MetamodelsError(f"{op.name}: argument {arg!r} is not defined before use")
                if kinds[arg] != want:
                    raise MetamodelsError(f"{op.name}: argument {arg!r} is a {kinds[arg]}, expected a {want}")
            kinds[op.name] = "sop" if op.is_sop else "selector"
        if kinds.get(self.output) != "sop" or self.output in INPUTS:
            raise MetamodelsError(f"output {self.output!r} must name a sequence operation of the program")

    @functools.cached_property
    def by_name(self) -> dict[str, Op]:
        return {op.name: op for op in self.ops}

    @property
    def n_ops(self) -> int:
        """Number of sequence operations (Selects and inputs not counted)."""
        return sum(op.is_sop for op in self.ops)

    def without_dead_code(self) -> Program:
        """The program restricted to the operations its output depends on."""
        live: set[str] = set()
        stack = [self.output]
        while stack:
            name = stack.pop()
            if name not in live and name not in INPUTS:
                live.add(name)
                stack.extend(self.by_name[name].args)
        return Program(ops=tuple(op for op in self.ops if op.name in live), output=self.output)

    def encoding_of(self, name: str) -> Encoding:
        return "categorical" if name in INPUTS else self.by_name[name].encoding  # type: ignore[return-value]

    def to_rasp(self, causal: bool = False) -> rasp.SOp:
        """Tracr ``rasp`` expression of the output, every SOp labelled with its name.

        ``causal=True`` masks every Select to earlier positions: the semantics of a causal
        model, for evaluation (compile the unmasked expression with the causal setting).
        """
        return _to_rasp(self, causal)

    def evaluate(self, xs: Sequence[object], causal: bool = False) -> list[object]:
        """Reference semantics: Tracr's ``rasp.evaluate`` on one input sequence.

        ``causal``: what a causally masked model computes — every Select also requires
        key position <= query position.
        """
        return MemoEvaluator().evaluate(self.to_rasp(causal), list(xs))  # type: ignore[return-value]


class Memoized:
    """Mixin for Tracr evaluators: compute each shared sub-expression once per call.

    Tracr's own recursion re-evaluates a sub-expression once per path to it,
    which is exponential in the depth of a DAG. Use one instance per input.
    """

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[int, object] = {}

    def evaluate(self, expr: rasp.RASPExpr, xs: Sequence[object]):
        if id(expr) not in self._memo:
            self._memo[id(expr)] = super().evaluate(expr, xs)  # type: ignore[misc]
        return self._memo[id(expr)]


class MemoEvaluator(Memoized, rasp.DefaultRASPEvaluator):
    """Tracr's reference evaluator, memoized."""


_EARLIER = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("causal_mask")


@functools.lru_cache(maxsize=4096)
def _to_rasp(program: Program, causal: bool = False) -> rasp.SOp:
    env: dict[str, rasp.RASPExpr] = {"tokens": rasp.tokens, "indices": rasp.indices}
    for op in program.ops:
        a = [env[x] for x in op.args]
        if op.kind == "Map":
            expr: rasp.RASPExpr = rasp.Map(op.function, a[0], simplify=False)  # type: ignore[arg-type]
        elif op.kind == "SequenceMap":
            expr = rasp.SequenceMap(op.function, a[0], a[1])  # type: ignore[arg-type]
        elif op.kind == "LinearSequenceMap":
            expr = rasp.LinearSequenceMap(a[0], a[1], *op.coeffs)  # type: ignore[misc]
        elif op.kind == "Select":
            predicate = op.predicate if isinstance(op.predicate, Table) else rasp.Comparison[op.predicate]
            expr = rasp.Select(a[0], a[1], predicate)  # type: ignore[misc,arg-type]
            if causal:
                expr = rasp.selector_and(expr.named(f"{op.name}_unmasked"), _EARLIER)
        elif op.kind == "Aggregate":
            expr = rasp.Aggregate(a[0], a[1], default=0 if op.encoding == "numerical" else None)  # type: ignore[arg-type]
        else:
            expr = rasp.SelectorWidth(a[0])  # type: ignore[arg-type]
        if isinstance(op.fn, str):
            expr = expr.annotated(fn_name=op.fn)
        if op.encoding == "numerical":
            expr = rasp.numerical(expr)
        elif op.encoding == "categorical":
            expr = rasp.categorical(expr)
        env[op.name] = expr.named(op.name)
    return env[program.output]  # type: ignore[return-value]


def program_from_rasp(sop: rasp.SOp, value_sets: Callable[[], Mapping[str, set]] | None = None) -> Program:
    """Convert a Tracr ``rasp`` expression into a :class:`Program`.

    ``value_sets`` gives the value set of every expression by label (Tracr's
    inference; see :func:`metamodels.transformer.compiler.program_from_rasp`,
    which supplies it from a vocabulary and a length); it is called only when a
    function or predicate outside the library must be read as a table.

    Ops come in a dependency-first order (rasp records no definition order).
    Names are the expressions' names (labels where two share a name). Functions
    are recognised by the ``fn_name`` annotation that :meth:`Program.to_rasp`
    writes, else by the source text of their lambda. Any other function or
    selector predicate is read as a :class:`~metamodels.rasp.tables.Table` over
    those value sets (printed as a library function or comparison when it equals
    one there); without them it is a ValueError. Raises ValueError naming the expression for constructs a
    Program cannot express.
    """
    ops: list[Op] = []
    names: dict[int, str] = {}
    known: dict[str, set] = {}

    def domains(expr: rasp.RASPExpr) -> list[set]:
        """Value sets of ``expr``'s arguments, from Tracr's inference over the whole program."""
        if not known:
            if value_sets is None:
                what = "predicate" if isinstance(expr, rasp.Select) else "function"
                raise MetamodelsError(
                    f"{expr.name}: its {what} is not in the library; pass vocab and max_seq_len to read it as a table"
                )
            known.update(value_sets())
        return [known[child.label] for child in expr.children]

    def visit(expr: rasp.RASPExpr) -> str:
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            return expr.label
        if expr.unique_id not in names:
            children = tuple(visit(child) for child in expr.children)
            names[expr.unique_id] = name = identifier(expr.name, set(names.values()) | set(INPUTS))
            op = _op_from_rasp(expr, name, children, domains)
            ops.append(dataclasses.replace(op, label=expr.name) if name != expr.name else op)
        return names[expr.unique_id]

    output = visit(sop)
    return Program(ops=tuple(ops), output=output)


def identifier(label: str, taken: set[str]) -> str:
    """A fresh Python identifier for a label: ``shift_by(1)`` -> ``shift_by_1``, ``x+1`` -> ``x_1``, ``2x`` -> ``v_2x``;
    a keyword gets a trailing ``_``; a name already taken gets ``_2``, ``_3``, ... (any label is allowed in Tracr)."""
    base = re.sub(r"\W+", "_", label).strip("_") or "v"
    base = f"v_{base}" if base[0].isdigit() else base
    base = f"{base}_" if keyword.iskeyword(base) or base in (*OP_KINDS, "numerical", "categorical") else base
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def _op_from_rasp(expr: rasp.RASPExpr, name: str, args: tuple[str, ...], domains: Callable) -> Op:
    encoding = None if isinstance(expr, rasp.Selector) else rasp.get_encoding(expr).value
    if isinstance(expr, rasp.LinearSequenceMap):
        return Op(name, "LinearSequenceMap", args, encoding, coeffs=(expr.fst_fac, expr.snd_fac))
    if isinstance(expr, (rasp.Map, rasp.SequenceMap)):
        kind = "Map" if isinstance(expr, rasp.Map) else "SequenceMap"
        fn = _function_name(expr)
        if fn is None:
            table = Table.tabulate(expr.f, *domains(expr))
            fn = library_function(table) or table
        return Op(name, kind, args, encoding, fn=fn)  # type: ignore[arg-type]
    if isinstance(expr, rasp.Select):
        if isinstance(expr.predicate, rasp.Comparison):
            return Op(name, "Select", args, None, predicate=expr.predicate.name)
        if isinstance(expr.predicate, Table):
            table = expr.predicate
        else:
            table = Table.tabulate(lambda k, q: bool(expr.predicate(k, q)), *domains(expr))
        return Op(name, "Select", args, None, predicate=library_predicate(table) or table)
    if isinstance(expr, rasp.Aggregate):
        return Op(name, "Aggregate", args, encoding)
    if isinstance(expr, rasp.SelectorWidth):
        return Op(name, "SelectorWidth", args, encoding)
    raise MetamodelsError(f"{name}: {type(expr).__name__} is not supported (expected one of {OP_KINDS})")


def _function_name(expr: rasp.Map | rasp.SequenceMap) -> str | Table | None:
    """The op's library function (or table) if it is recognisable without value sets, else None."""
    if "fn_name" in expr.annotations:
        return str(expr.annotations["fn_name"])
    if isinstance(expr.f, Table):
        return library_function(expr.f) or expr.f
    found = functions.by_code(expr.f)
    return found.name if found is not None else None


def neighbours(program: Program) -> list[Program]:
    """Programs differing from ``program`` in one library function or one predicate."""
    out = []
    for i, op in enumerate(program.ops):
        if op.fn is not None:
            pool = functions.MAP_FUNCTIONS if op.kind == "Map" else functions.SEQUENCE_MAP_FUNCTIONS
            changes = [dataclasses.replace(op, fn=f.name) for f in pool if f.name != op.fn]
        elif op.predicate is not None:
            changes = [dataclasses.replace(op, predicate=p) for p in functions.PREDICATES if p != op.predicate]
        else:
            continue
        out += [dataclasses.replace(program, ops=program.ops[:i] + (new,) + program.ops[i + 1 :]) for new in changes]
    return out
