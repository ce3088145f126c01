"""Wiring-guided decoding: the meta-model decodes, the data flow read from the weights says what may come next.

:func:`metamodels.decompilation.wiring.read_structure` reads which sublayer writes
each variable and what it reads (keys, queries, values, MLP inputs) from the
weights, by Tracr's residual labels. A :class:`WiringGuide` turns that structure
into a filter on the grammar's next tokens (:class:`metamodels.meta.decoding.Guide`): a sublayer
holds as many operations as the model's does; each operation has the encoding,
kind and argument wiring of one of the model's operations there. Where the
tables read too (:func:`metamodels.decompilation.readout.read_tables`), a
function or predicate is one of the library's that equals its table on the
table's domain (the table token where none does) and LinearSequenceMap factors
are the ones read; which of several equal library functions stays the
meta-model's choice. So a decoded program has the model's data flow whatever
its depth, and names its functions the way the meta-model learnt programs do.

Decoded operations are matched to the structure's one to one (see
:class:`WiringGuide`). SequenceMap and LinearSequenceMap arguments match in
either order (the weights do not order an MLP's inputs).
Where the filter leaves nothing (the structure and the grammar disagree) the
decoder falls back on the grammar alone.
"""

from __future__ import annotations

import dataclasses

from metamodels.decompilation import wiring
from metamodels.decompilation.readout import ReadoutError
from metamodels.rasp import functions, layers, tables
from metamodels.rasp import tokens as tokens_mod
from metamodels.rasp.program import Op, Program
from metamodels.rasp.tables import Table
from metamodels.transformer.compiled import CompiledModel

_KIND_TOKEN = {"Aggregate": "SelectAggregate"}
Slot = frozenset[str] | None  # the tokens (structure variables, function names, ...) a slot may hold; None: any


@dataclasses.dataclass(frozen=True)
class _Shape:
    """One operation as its tokens may lay it out: ``layouts[j][i]`` is what slot i may hold in layout j.

    Two layouts for SequenceMap and LinearSequenceMap: the arguments in either order (the weights do not order an
    MLP's inputs), with the function or factors that order needs.
    """

    name: str
    sublayer: int
    encoding: str
    kind: str  # token kind (SelectAggregate, SelectorWidth, Map, SequenceMap, LinearSequenceMap)
    layouts: tuple[tuple[Slot, ...], ...]


def _shape(by_name: dict[str, Op], op: Op, sublayer: int, tables_read: bool) -> _Shape:
    """``op``'s slots; variables as themselves, functions, predicates and factors from the read tables (else any)."""
    read = by_name if tables_read else None
    var = lambda name: frozenset([name])  # noqa: E731
    kind = _KIND_TOKEN.get(op.kind, op.kind)
    if op.kind in ("Aggregate", "SelectorWidth"):
        keys, queries = by_name[op.args[0]].args
        predicate = _predicates(read[op.args[0]].predicate) if read else None  # type: ignore[arg-type]
        layouts: tuple[tuple[Slot, ...], ...] = ((var(keys), var(queries), predicate, *map(var, op.args[1:])),)
    elif op.kind == "LinearSequenceMap":
        coeffs = read[op.name].coeffs if read else None
        a, b = map(var, op.args)
        if coeffs is None:
            layouts = ((a, b, None, None), (b, a, None, None))
        else:
            ca, cb = (frozenset([tokens_mod.coeff_token(c)]) for c in coeffs)
            layouts = ((a, b, ca, cb), (b, a, cb, ca))
    elif op.kind == "SequenceMap":
        table = read[op.name].fn if read else None
        a, b = map(var, op.args)
        swapped = _swapped(table) if isinstance(table, Table) else None
        layouts = ((_functions(table), a, b), (_functions(swapped), b, a))
    else:
        layouts = ((_functions(read[op.name].fn) if read else None, var(op.args[0])),)
    return _Shape(op.name, sublayer, str(op.encoding), kind, layouts)


def _swapped(table: Table) -> Table:
    """The two-argument table with its arguments the other way round."""
    return Table(tuple(((key[1], key[0]), value) for key, value in table.entries), 2)  # type: ignore[index]


def _functions(table: object) -> Slot:
    """Library functions equal to a read table on its domain, else the table token (None: not read)."""
    if not isinstance(table, Table):
        return None
    pool = functions.MAP_FUNCTIONS if table.arity == 1 else functions.SEQUENCE_MAP_FUNCTIONS
    return frozenset(f"fn:{f.name}" for f in pool if tables.agrees(f.fn, table, loose=True)) or frozenset(
        [tokens_mod.FN_TABLE]
    )


def _predicates(table: Table) -> frozenset[str]:
    """Comparisons equal to a read predicate table on its domain, else the table token."""
    names = (p for p in functions.PREDICATES if tables.agrees(functions.predicate_fn(p), table, loose=True))
    return frozenset(names) or frozenset([tokens_mod.PREDICATE_TABLE])


def _fits(shape: _Shape, encoding: str | None, kind: str | None, slots: list[str]) -> bool:
    """Whether a decoded operation (slot tokens with variables as structure names; None: not decoded yet) fits."""
    return (
        encoding in (None, shape.encoding)
        and kind in (None, shape.kind)
        and any(
            len(slots) <= len(lay) and all(w is None or t in w for w, t in zip(lay, slots)) for lay in shape.layouts
        )
    )


@dataclasses.dataclass(frozen=True)
class _Decoded:
    """A decoded operation, or the one being decoded (``name`` None; encoding, kind, slots as far as decoded)."""

    name: str | None
    sublayer: int
    encoding: str | None
    kind: str | None
    slots: tuple[str, ...]


class WiringGuide:
    """Next-token filter from a model's wired structure (see the module docstring).

    Decoded variables must match the structure's one to one: a next token is allowed when some assignment of
    decoded operations to distinct structure operations of their sublayers fits every decoded operation (its
    arguments through the assignment) and the one being decoded.
    """

    def __init__(self, structure: Program, tables_read: bool) -> None:
        """``structure``: the model's program as read from its weights; ``tables_read``: its functions, predicates
        and factors too (``wiring.read_program(model, named=False)``), else placeholders (``read_structure``)."""
        sublayer = layers.assign_sublayers(structure)
        by_name = structure.by_name
        shapes = [_shape(by_name, op, sublayer[op.name], tables_read) for op in structure.ops if op.is_sop]
        self.n_sublayers = 2 * layers.n_layers(structure)
        self.by_sublayer = {s: [sh for sh in shapes if sh.sublayer == s] for s in range(self.n_sublayers)}

    def allowed(self, grammar: tokens_mod.Grammar) -> set[str]:
        """The grammar's next tokens that keep the decoded program's wiring the model's."""
        allowed = grammar.allowed()
        if not grammar.started or grammar.done:
            return allowed
        here = grammar.sublayer
        if not grammar.current:  # between operations
            decoded, wanted = grammar.ops_in_sublayer.get(here, 0), len(self.by_sublayer.get(here, []))
            keep = {"EOS"} if here >= self.n_sublayers else {"EOL"} if decoded == wanted else set()
            return {t for t in allowed if t in keep or (t.startswith("sop_") and decoded < wanted)}
        done: list[_Decoded] = []
        if grammar.ops:  # the program so far (its last op is a sequence op: a Select comes before its user)
            so_far = Program(tuple(grammar.ops), grammar.ops[-1].name)
            done = [_Decoded(op.name, grammar.vars[op.name].sublayer, *_head(tokens_mod.op_tokens(so_far, op)))
                    for op in grammar.ops if op.is_sop]  # fmt: skip
        cur = grammar.current

        def fits(t: str) -> bool:
            head = [*cur[1:], t]
            now = _Decoded(None, here, head[0], head[1] if len(head) > 1 else None, tuple(head[2:]))
            return t == "EOO" or self._assignable([*done, now], 0, {}, set())

        return {t for t in allowed if fits(t)}

    def _assignable(self, ops: list[_Decoded], i: int, mapping: dict[str, str], used: set[str]) -> bool:
        """Whether ``ops[i:]`` can be assigned to unused structure operations, given ``mapping`` for ``ops[:i]``."""
        if i == len(ops):
            return True
        op = ops[i]
        slots = [mapping.get(t, t) for t in op.slots]
        for sh in self.by_sublayer.get(op.sublayer, []):
            if sh.name in used or not _fits(sh, op.encoding, op.kind, slots):
                continue
            if op.name is None:
                return True
            mapping[op.name] = sh.name
            used.add(sh.name)
            if self._assignable(ops, i + 1, mapping, used):
                return True
            del mapping[op.name]
            used.discard(sh.name)
        return False


def _head(tokens: list[str]) -> tuple[str, str, tuple[str, ...]]:
    """(encoding, kind, slots) of one operation's tokens (name, encoding, kind, slots..., EOO)."""
    _, encoding, kind, *slots, _ = tokens
    return encoding, kind, tuple(slots)


def guide_or_none(model: CompiledModel) -> WiringGuide | None:
    """The guide of a model whose structure its weights show by Tracr's residual labels, else None.

    Functions, predicates and factors are narrowed to what the weights compute where the tables read. A model
    without labels (dense) gets no guide: its structure traced from the activations (:mod:`tracing`) names
    whichever variables explain a reader, often not the source's, and guiding by it was measured to hurt
    (ds3k test, dense 0.99: greedy functional with readout 0.344 unguided, 0.250 guided by the traced structure).
    """
    try:  # the structure with its tables, read once
        return WiringGuide(wiring.read_program(model, named=False), tables_read=True)
    except ReadoutError:
        pass
    try:
        return WiringGuide(wiring.read_structure(model), tables_read=False)
    except ReadoutError:
        return None
