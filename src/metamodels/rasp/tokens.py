"""Program tokens: the layer-structured vocabulary and grammar of paper 000.

A program is written sublayer by sublayer (attention of layer 0, MLP of layer 0,
attention of layer 1, ...) exactly where Tracr places each operation::

    BOS  sop_0 categorical SelectorWidth tokens tokens LT EOO  EOL   (attention 0)
         EOL                                                          (MLP 0)
         sop_1 categorical SelectAggregate sop_0 indices EQ tokens EOO  EOL
         EOL  EOS

Select is fused into the operation that uses it (``SelectAggregate keys queries
PREDICATE sop``, ``SelectorWidth keys queries PREDICATE``); every sublayer is
closed by EOL, empty ones included; variables are named ``sop_k`` in order of
definition; the output is the one variable nothing else reads. Operations are
in canonical order (see :mod:`metamodels.rasp.canonical`), so
``detokenize(tokenize(p)) == canonicalize(p)``, except that a value table is the
one token ``fn:table`` (``TABLE`` for a predicate) and comes back empty
(``Table.unread``): tokens carry a program's structure, and
:mod:`metamodels.decompilation.readout` reads a table's entries from the weights.

:class:`Grammar` reads a token sequence one token at a time and knows the set of
valid next tokens (defined variables, arity, encodings and types, which
operations each sublayer holds), for constrained decoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.rasp import canonical, functions, layers
from metamodels.rasp.program import INPUTS, Op, Program
from metamodels.rasp.tables import Table

SPECIAL: tuple[str, ...] = ("PAD", "BOS", "EOS", "EOO", "EOL")
MAX_VARS = 32
MAX_SUBLAYERS = 32
ENCODINGS: tuple[str, ...] = ("categorical", "numerical")
ATTN_OPS: tuple[str, ...] = ("SelectAggregate", "SelectorWidth")
MLP_OPS: tuple[str, ...] = ("Map", "SequenceMap", "LinearSequenceMap")
COEFFS: tuple[float, ...] = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)
# A value table (a function or predicate outside the library): tokens say "a table here"; its entries are
# read from the weights (metamodels.decompilation.readout). Appended last so older vocabularies are a prefix of this one.
FN_TABLE, PREDICATE_TABLE = "fn:table", "TABLE"
# Argument slots after the op-kind token (functions, variables, predicates, factors).
_ARITY = {"Map": 2, "SequenceMap": 3, "LinearSequenceMap": 4, "SelectAggregate": 4, "SelectorWidth": 3}


def coeff_token(c: float) -> str:
    return f"c:{int(c) if float(c).is_integer() else c}"


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Token strings and their ids; ``version`` names the exact list (saved with every artifact)."""

    tokens: tuple[str, ...]

    @property
    def version(self) -> str:
        return "v1-" + hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()[:10]

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self._ids[token]

    @property
    def _ids(self) -> dict[str, int]:
        return _ids_of(self.tokens)


_ID_CACHE: dict[tuple[str, ...], dict[str, int]] = {}


def _ids_of(tokens: tuple[str, ...]) -> dict[str, int]:
    if tokens not in _ID_CACHE:
        _ID_CACHE[tokens] = {t: i for i, t in enumerate(tokens)}
    return _ID_CACHE[tokens]


def default_vocabulary() -> Vocabulary:
    """SPECIAL, inputs, sop_0..sop_31, encodings, op kinds, predicates, functions, coefficients, tables."""
    return Vocabulary(
        SPECIAL
        + INPUTS
        + tuple(f"sop_{i}" for i in range(MAX_VARS))
        + ENCODINGS
        + ATTN_OPS
        + MLP_OPS
        + functions.PREDICATES
        + tuple(f"fn:{name}" for name in functions.FUNCTIONS)
        + tuple(coeff_token(c) for c in COEFFS)
        + (FN_TABLE, PREDICATE_TABLE)
    )


VOCAB = default_vocabulary()


class TokenError(MetamodelsError):
    """An invalid token sequence; names the position and what was expected there."""

    def __init__(self, position: int, token: str, expected: Iterable[str]) -> None:
        shown = sorted(expected)
        more = f" (and {len(shown) - 12} more)" if len(shown) > 12 else ""
        super().__init__(f"token {position} ({token!r}): expected one of {shown[:12]}{more}")
        self.position, self.token = position, token


# ----------------------------------------------------------------------------- tokenize


def tokenize_strings(program: Program) -> list[str]:
    """Token strings of the canonical form of ``program``."""
    program = canonical.canonicalize(program)
    sublayer = layers.assign_sublayers(program)
    n_sublayers = 2 * layers.n_layers(program)
    if program.n_ops > MAX_VARS or n_sublayers > MAX_SUBLAYERS:
        raise MetamodelsError(
            f"program too large to tokenize: {program.n_ops} ops (max {MAX_VARS}), {n_sublayers} sublayers (max {MAX_SUBLAYERS})"
        )
    out = ["BOS"]
    for s in range(n_sublayers):
        for op in program.ops:
            if op.is_sop and sublayer[op.name] == s:
                out += op_tokens(program, op)
        out.append("EOL")
    return out + ["EOS"]


def op_tokens(program: Program, op: Op) -> list[str]:
    """One sequence operation's tokens: name, encoding, kind, argument slots, EOO (a Select fused into its user)."""
    head: list[str] = [op.name, str(op.encoding)]
    if op.kind == "Map":
        return head + ["Map", _fn_token(op), op.args[0], "EOO"]  # type: ignore[list-item]
    if op.kind == "SequenceMap":
        return head + ["SequenceMap", _fn_token(op), *op.args, "EOO"]  # type: ignore[list-item]
    if op.kind == "LinearSequenceMap":
        bad = [c for c in op.coeffs if c not in COEFFS]  # type: ignore[union-attr]
        if bad:
            raise MetamodelsError(
                f"{op.name}: LinearSequenceMap factor(s) {bad} have no token; representable: {COEFFS}"
            )
        return head + ["LinearSequenceMap", *op.args, *(coeff_token(c) for c in op.coeffs), "EOO"]  # type: ignore[list-item,union-attr]
    select = program.by_name[op.args[0]]
    fused = [*select.args, PREDICATE_TABLE if isinstance(select.predicate, Table) else select.predicate]
    if op.kind == "Aggregate":
        return head + ["SelectAggregate", *fused, op.args[1], "EOO"]  # type: ignore[list-item]
    return head + ["SelectorWidth", *fused, "EOO"]  # type: ignore[list-item]


def _fn_token(op: Op) -> str:
    return FN_TABLE if isinstance(op.fn, Table) else f"fn:{op.fn}"


def tokenize(program: Program, vocab: Vocabulary = VOCAB) -> list[int]:
    """Token ids of the canonical form of ``program`` (BOS ... EOS)."""
    return [vocab.id(t) for t in tokenize_strings(program)]


def detokenize(ids: Sequence[int], vocab: Vocabulary = VOCAB) -> Program:
    """The program a complete token sequence describes; TokenError if it is invalid.

    Trailing PAD tokens after EOS are ignored.
    """
    grammar = Grammar()
    for position, i in enumerate(ids):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(vocab):
            raise TokenError(position, repr(i), ["an integer token id from 0 to " + str(len(vocab) - 1)])
        if grammar.done:
            if vocab.tokens[i] != "PAD":
                raise TokenError(position, vocab.tokens[i], ["PAD"])
            continue
        grammar.step(vocab.tokens[i], position)
    if not grammar.done:
        raise TokenError(len(ids), "<end>", grammar.allowed())
    return grammar.program()


# ----------------------------------------------------------------------------- grammar


@dataclasses.dataclass
class _Var:
    encoding: str
    sublayer: int


class Grammar:
    """Incremental parser of program tokens that knows every valid next token.

    Enforced: BOS first; fresh variables named in order; encodings and op kinds
    that Tracr supports in the current sublayer (attention: SelectAggregate,
    SelectorWidth; MLP: Map, SequenceMap (categorical), LinearSequenceMap
    (numerical)); arguments defined in an earlier sublayer and of the right
    encoding (Select keys/queries categorical, Aggregate input of the op's
    encoding); library functions of the right arity;
    EOS only after a complete, non-empty layer when exactly one variable is
    unread (at MAX_VARS variables or MAX_SUBLAYERS sublayers EOS is allowed with
    several unread, the last defined being the output, so decoding never reaches
    a dead end). Not enforced: that each op sits at exactly the sublayer Tracr would
    choose, and the canonical order inside a sublayer.
    """

    def __init__(self) -> None:
        self.vars: dict[str, _Var] = {name: _Var("categorical", -1) for name in INPUTS}
        self.used: set[str] = set()
        self.sublayer = 0
        self.ops_in_sublayer: dict[int, int] = {}
        self.ops: list[Op] = []
        self.current: list[str] = []  # tokens of the op being read
        self.started = False
        self.done = False
        self.position = 0  # tokens consumed

    def copy(self) -> Grammar:
        """An independent copy (for beam search); ops are immutable, containers are copied."""
        other = Grammar.__new__(Grammar)
        other.__dict__.update(self.__dict__)
        other.vars, other.used = dict(self.vars), set(self.used)
        other.ops_in_sublayer, other.ops, other.current = dict(self.ops_in_sublayer), list(self.ops), list(self.current)
        return other

    # -- what may come next
    def allowed(self) -> set[str]:
        if not self.started:
            return {"BOS"}
        if self.done:
            return set()
        if not self.current:
            return self._between_ops()
        return self._in_op()

    def _between_ops(self) -> set[str]:
        out = set()
        n_defined = len(self.vars) - len(INPUTS)
        full = n_defined == MAX_VARS or self.sublayer == MAX_SUBLAYERS
        if not full:
            out.add(f"sop_{n_defined}")
        if self.sublayer < MAX_SUBLAYERS and (n_defined > 0 or self.sublayer + 1 < MAX_SUBLAYERS):
            out.add("EOL")
        sinks = [v for v in self.vars if v not in INPUTS and v not in self.used]
        layer_closed = self.sublayer % 2 == 0 and self.sublayer >= 2 and not self.ops_in_sublayer.get(self.sublayer)
        last_layer_used = self.ops_in_sublayer.get(self.sublayer - 1) or self.ops_in_sublayer.get(self.sublayer - 2)
        # At the size limits, stop whatever is left rather than reach a dead end.
        if layer_closed and sinks and (full or (last_layer_used and len(sinks) == 1)):
            out.add("EOS")
        return out

    def _args(self, ok) -> set[str]:
        return {n for n, v in self.vars.items() if v.sublayer < self.sublayer and ok(v)}

    def _in_op(self) -> set[str]:
        cur = self.current
        if len(cur) == 1:
            return {e for e in ENCODINGS if self._kinds(e)}
        if len(cur) == 2:
            return self._kinds(cur[1])
        return self._slot(cur[1], cur[2], len(cur) - 3)

    def _kinds(self, encoding: str) -> set[str]:
        """Op kinds of this sublayer whose every argument slot can be filled now."""
        candidates = ATTN_OPS if self.sublayer % 2 == 0 else MLP_OPS
        return {k for k in candidates if all(self._slot(encoding, k, i) for i in range(_ARITY[k]))}

    def _slot(self, encoding: str, kind: str, i: int) -> set[str]:
        """Valid tokens for argument slot ``i`` of a ``kind`` op with ``encoding`` (EOO after the last)."""
        cat = lambda v: v.encoding == "categorical"  # noqa: E731
        num = lambda v: v.encoding == "numerical"  # noqa: E731
        if i >= _ARITY[kind]:
            return {"EOO"} if i == _ARITY[kind] else set()
        if kind == "Map":
            return (
                {f"fn:{f.name}" for f in functions.MAP_FUNCTIONS} | {FN_TABLE} if i == 0 else self._args(lambda v: True)
            )
        if kind == "SequenceMap":
            if encoding != "categorical":
                return set()
            return (
                {f"fn:{f.name}" for f in functions.SEQUENCE_MAP_FUNCTIONS} | {FN_TABLE} if i == 0 else self._args(cat)
            )
        if kind == "LinearSequenceMap":
            if encoding != "numerical":
                return set()
            return self._args(num) if i < 2 else {coeff_token(c) for c in COEFFS}
        if i < 2:
            return self._args(cat)
        if i == 2:
            return {*functions.PREDICATES, PREDICATE_TABLE}
        return self._args(lambda v: v.encoding == encoding)  # the aggregated sop

    # -- consuming tokens
    def step(self, token: str, position: int | None = None) -> None:
        """Consume one token string; TokenError if it is not allowed here."""
        allowed = self.allowed()
        if token not in allowed:
            raise TokenError(self.position if position is None else position, token, allowed)
        self.position += 1
        if token == "BOS":
            self.started = True
        elif token == "EOS":
            self.done = True
        elif token == "EOL" and not self.current:
            self.sublayer += 1
        elif token == "EOO":
            self._finish_op()
        else:
            self.current.append(token)

    def _finish_op(self) -> None:
        name, encoding, kind, *slots = self.current
        self.current = []
        if kind in ("Map", "SequenceMap"):
            args = tuple(slots[1:])
            fn = Table.unread(len(args)) if slots[0] == FN_TABLE else slots[0][3:]
            ops = [Op(name, kind, args, encoding, fn=fn)]  # type: ignore[arg-type]
        elif kind == "LinearSequenceMap":
            ops = [
                Op(
                    name,
                    "LinearSequenceMap",
                    (slots[0], slots[1]),
                    encoding,  # type: ignore[arg-type]
                    coeffs=(float(slots[2][2:]), float(slots[3][2:])),
                )
            ]  # type: ignore[arg-type]
        else:
            predicate = Table.unread(2) if slots[2] == PREDICATE_TABLE else slots[2]
            select = Op(f"sel_{name.removeprefix('sop_')}", "Select", (slots[0], slots[1]), None, predicate=predicate)
            args = (select.name, slots[3]) if kind == "SelectAggregate" else (select.name,)
            ops = [select, Op(name, "Aggregate" if kind == "SelectAggregate" else "SelectorWidth", args, encoding)]  # type: ignore[arg-type]
        reads = [a for op in ops for a in op.args if a in self.vars]
        self.used.update(reads)
        self.vars[name] = _Var(encoding, self.sublayer)
        self.ops_in_sublayer[self.sublayer] = self.ops_in_sublayer.get(self.sublayer, 0) + 1
        self.ops.extend(ops)

    def program(self) -> Program:
        """The program read so far (complete sequences only)."""
        if not self.done:
            raise MetamodelsError("the token sequence is not complete (no EOS yet)")
        sink = [v for v in self.vars if v not in INPUTS and v not in self.used][-1]
        return Program(ops=tuple(self.ops), output=sink)
