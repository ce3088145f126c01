"""The program model: a DAG of named RASP operations over ``tokens`` and ``indices``.

A :class:`Program` is the boundary object of every stage: the sampler makes
them, the printer/parser and tokenizer convert them, the compiler compiles them,
and decompilation returns them. Tracr's ``rasp`` module is the reference
semantics; :meth:`Program.to_rasp` and :func:`program_from_rasp` convert both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence
from typing import Literal, get_args

from tracr.rasp import rasp

from metamodels.rasp import functions

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
    SelectorWidth (selector,). ``fn`` names a library function (Map, SequenceMap),
    ``predicate`` a comparison (Select), ``coeffs`` the two factors of a
    LinearSequenceMap. ``encoding`` is None exactly for Select.
    """

    name: str
    kind: OpKind
    args: tuple[str, ...]
    encoding: Encoding | None = "categorical"
    fn: str | None = None
    predicate: str | None = None
    coeffs: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"{self.name}: unknown op kind {self.kind!r}; expected one of {OP_KINDS}")
        if len(self.args) != _ARITY[self.kind]:
            raise ValueError(f"{self.name}: {self.kind} takes {_ARITY[self.kind]} arguments, got {len(self.args)}")
        if (self.kind == "Select") != (self.encoding is None):
            raise ValueError(f"{self.name}: encoding must be None for Select only, got {self.encoding!r}")
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise ValueError(f"{self.name}: unknown encoding {self.encoding!r}; expected one of {ENCODINGS}")
        if (self.kind in ("Map", "SequenceMap")) != (self.fn is not None):
            raise ValueError(f"{self.name}: a function is required for Map/SequenceMap only")
        if self.fn is not None and functions.by_name(self.fn).arity != _ARITY[self.kind]:
            raise ValueError(f"{self.name}: function {self.fn!r} has the wrong arity for {self.kind}")
        if (self.kind == "Select") != (self.predicate is not None):
            raise ValueError(f"{self.name}: a predicate is required for Select only")
        if self.predicate is not None and self.predicate not in functions.PREDICATES:
            raise ValueError(
                f"{self.name}: unknown predicate {self.predicate!r}; expected one of {functions.PREDICATES}"
            )
        if (self.kind == "LinearSequenceMap") != (self.coeffs is not None):
            raise ValueError(f"{self.name}: coefficients are required for LinearSequenceMap only")

    @property
    def is_sop(self) -> bool:
        """True for sequence operations (everything but Select)."""
        return self.kind != "Select"


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
                raise ValueError(f"variable {op.name!r} is not a fresh identifier")
            wanted = (
                ("selector", "sop")
                if op.kind == "Aggregate"
                else ("selector",)
                if op.kind == "SelectorWidth"
                else ("sop", "sop")
            )
            for arg, want in zip(op.args, wanted):
                if arg not in kinds:
                    raise ValueError(f"{op.name}: argument {arg!r} is not defined before use")
                if kinds[arg] != want:
                    raise ValueError(f"{op.name}: argument {arg!r} is a {kinds[arg]}, expected a {want}")
            kinds[op.name] = "sop" if op.is_sop else "selector"
        if kinds.get(self.output) != "sop" or self.output in INPUTS:
            raise ValueError(f"output {self.output!r} must name a sequence operation of the program")

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

    def to_rasp(self) -> rasp.SOp:
        """Tracr ``rasp`` expression of the output, every SOp labelled with its name."""
        return _to_rasp(self)

    def evaluate(self, xs: Sequence[object]) -> list[object]:
        """Reference semantics: Tracr's ``rasp.evaluate`` on one input sequence."""
        return MemoEvaluator().evaluate(self.to_rasp(), list(xs))  # type: ignore[return-value]


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


@functools.lru_cache(maxsize=4096)
def _to_rasp(program: Program) -> rasp.SOp:
    env: dict[str, rasp.RASPExpr] = {"tokens": rasp.tokens, "indices": rasp.indices}
    for op in program.ops:
        a = [env[x] for x in op.args]
        if op.kind == "Map":
            expr: rasp.RASPExpr = rasp.Map(functions.by_name(op.fn).fn, a[0], simplify=False)  # type: ignore[arg-type]
        elif op.kind == "SequenceMap":
            expr = rasp.SequenceMap(functions.by_name(op.fn).fn, a[0], a[1])  # type: ignore[arg-type]
        elif op.kind == "LinearSequenceMap":
            expr = rasp.LinearSequenceMap(a[0], a[1], *op.coeffs)  # type: ignore[misc]
        elif op.kind == "Select":
            expr = rasp.Select(a[0], a[1], rasp.Comparison[op.predicate])  # type: ignore[misc]
        elif op.kind == "Aggregate":
            expr = rasp.Aggregate(a[0], a[1], default=0 if op.encoding == "numerical" else None)  # type: ignore[arg-type]
        else:
            expr = rasp.SelectorWidth(a[0])  # type: ignore[arg-type]
        if op.fn is not None:
            expr = expr.annotated(fn_name=op.fn)
        if op.encoding == "numerical":
            expr = rasp.numerical(expr)
        elif op.encoding == "categorical":
            expr = rasp.categorical(expr)
        env[op.name] = expr.named(op.name)
    return env[program.output]  # type: ignore[return-value]


def program_from_rasp(sop: rasp.SOp) -> Program:
    """Convert a Tracr ``rasp`` expression into a :class:`Program`.

    Ops come in a dependency-first order (rasp records no definition order).
    Names are the expressions' names (labels where two share a name). Functions are recognised by the
    ``fn_name`` annotation that :meth:`Program.to_rasp` writes, else by the source
    text of their lambda. Raises ValueError naming the expression when a
    function, predicate or construct is outside what a Program can express.
    """
    ops: list[Op] = []
    names: dict[int, str] = {}

    def visit(expr: rasp.RASPExpr) -> str:
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            return expr.label
        if expr.unique_id not in names:
            children = tuple(visit(child) for child in expr.children)
            # Tracr labels are `name_id`; keep the user's name unless two expressions share it.
            taken = set(names.values()) | set(INPUTS)
            names[expr.unique_id] = expr.name if expr.name.isidentifier() and expr.name not in taken else expr.label
            ops.append(_op_from_rasp(expr, names[expr.unique_id], children))
        return names[expr.unique_id]

    output = visit(sop)
    return Program(ops=tuple(ops), output=output)


def _op_from_rasp(expr: rasp.RASPExpr, name: str, args: tuple[str, ...]) -> Op:
    encoding = None if isinstance(expr, rasp.Selector) else rasp.get_encoding(expr).value
    if isinstance(expr, rasp.LinearSequenceMap):
        return Op(name, "LinearSequenceMap", args, encoding, coeffs=(expr.fst_fac, expr.snd_fac))
    if isinstance(expr, (rasp.Map, rasp.SequenceMap)):
        kind = "Map" if isinstance(expr, rasp.Map) else "SequenceMap"
        return Op(name, kind, args, encoding, fn=_function_name(expr))
    if isinstance(expr, rasp.Select):
        if not isinstance(expr.predicate, rasp.Comparison):
            raise ValueError(f"{name}: custom selector predicates are not supported yet")
        return Op(name, "Select", args, None, predicate=expr.predicate.name)
    if isinstance(expr, rasp.Aggregate):
        return Op(name, "Aggregate", args, encoding)
    if isinstance(expr, rasp.SelectorWidth):
        return Op(name, "SelectorWidth", args, encoding)
    raise ValueError(f"{name}: {type(expr).__name__} is not supported (expected one of {OP_KINDS})")


def _function_name(expr: rasp.Map | rasp.SequenceMap) -> str:
    if "fn_name" in expr.annotations:
        return str(expr.annotations["fn_name"])
    try:
        source = inspect.getsource(expr.f).strip()
        start = source.index("lambda")
    except (OSError, TypeError, ValueError):
        source, start = "", -1
    # The lambda is the longest prefix of its source line that parses as a lambda.
    for end in range(len(source), start, -1):
        try:
            found = functions.by_text(functions.normalise_lambda(source[start:end]))
        except SyntaxError:
            continue
        if found is not None:
            return found.name
        break
    raise ValueError(f"{expr.name}: its function is not in the library (see metamodels.rasp.functions)")
