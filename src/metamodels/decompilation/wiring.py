"""Wiring: a program's whole structure read from a model in Tracr's basis, without the meta-model.

The residual labels name every variable (``name:value`` per categorical value,
``name`` for a numerical one), and the non-zero weight blocks say which sublayer
writes each variable and which variables it reads (:func:`readout.writers`):

- an attention head writing ``y`` reads its Select's queries and keys and its
  Aggregate's values: ``y = Aggregate(Select(keys, queries, ?), values)``;
- a head whose values read nothing but BOS writes the count that an MLP then
  decodes: ``y = SelectorWidth(Select(keys, queries, ?))``;
- an MLP writing ``y`` from one variable is a Map, from two a SequenceMap
  (LinearSequenceMap when all three are numerical);
- the unembedding reads the output.

Tracr's helpers are stripped from the reads: the ``one`` direction (biases,
thresholds) and BOS (attended when nothing else is). The functions and
predicates are then read by :func:`readout.read_tables`, and LinearSequenceMap
coefficients by probing the MLP. Deep programs come out as deep as they are:
nothing here depends on the number of ops. ReadoutError when the weights do not
have this shape (no residual labels, a head reading two variables on one side,
...), so the caller falls back on the meta-model's candidates.
"""

from __future__ import annotations

import re

import numpy as np

from metamodels.decompilation import readout
from metamodels.decompilation.readout import ReadoutError
from metamodels.rasp.program import INPUTS, Encoding, Op, Program, identifier
from metamodels.rasp.tables import Table
from metamodels.transformer.compiled import CompiledModel


def read_structure(model: CompiledModel) -> Program:
    """The model's program with placeholder functions and predicates (empty tables, ``TRUE``)."""
    vars_ = readout.variables(model)
    written = readout.writers(model, vars_)
    names = {name: name for name in INPUTS}
    ops: list[Op] = []

    def name_of(var: str) -> str:
        if var not in names:
            names[var] = identifier(re.sub(r"_\d+$", "", var), set(names.values()))
        return names[var]

    def one(read: frozenset[str], role: str, var: str) -> str:
        real = sorted(read - {readout.ONE})
        if len(real) != 1:
            raise ReadoutError(f"{var}: its {role} read {real or 'nothing'}, not one variable")
        if real[0] not in INPUTS and real[0] not in names:
            raise ReadoutError(f"{var}: reads {real[0]} before anything writes it")
        return names[real[0]]

    counts = {var for var, w in written.items() if w.head is not None and not (w.reads[2] - {readout.ONE})}
    for var, w in sorted(written.items(), key=lambda item: item[1].sublayer):
        if var in counts:  # a SelectorWidth's attention half: the MLP below is the op
            continue
        encoding: Encoding = "categorical" if vars_[var].values is not None else "numerical"
        if w.head is not None:
            select = Op(f"select_{name_of(var)}", "Select", (one(w.reads[1], "keys", var), one(w.reads[0], "queries", var)),
                        None, predicate="TRUE")  # fmt: skip
            ops += [select, Op(name_of(var), "Aggregate", (select.name, one(w.reads[2], "values", var)), encoding)]
            continue
        reads = sorted(w.reads[0] - {readout.ONE})
        if len(reads) == 1 and reads[0] in counts:
            head = written[reads[0]]
            select = Op(f"select_{name_of(var)}", "Select",
                        (one(head.reads[1], "keys", var), one(head.reads[0], "queries", var)), None, predicate="TRUE")  # fmt: skip
            ops += [select, Op(name_of(var), "SelectorWidth", (select.name,), encoding)]
        elif len(reads) in (1, 2):
            args = tuple(one(frozenset([r]), "input", var) for r in reads)
            ops.append(_mlp_op(name_of(var), args, encoding, [vars_[r] for r in reads]))
        else:
            raise ReadoutError(f"{var}: its MLP reads {reads or 'nothing'}")
    return Program(tuple(ops), _output(model, vars_, names)).without_dead_code()


def _mlp_op(name: str, args: tuple[str, ...], encoding: Encoding, inputs: list[readout.Variable]) -> Op:
    if len(args) == 2 and encoding == "numerical" and all(v.values is None for v in inputs):
        return Op(name, "LinearSequenceMap", args, encoding, coeffs=(1.0, 1.0))  # read by _with_coefficients
    kind = "Map" if len(args) == 1 else "SequenceMap"
    return Op(name, kind, args, encoding, fn=Table.unread(len(args)))  # type: ignore[arg-type]


def _output(model: CompiledModel, vars_: dict[str, readout.Variable], names: dict[str, str]) -> str:
    unembed = model.params["unembed"]  # [D, O]
    read = [n for n, v in vars_.items() if n in names and np.abs(unembed[list(v.dims)]).max(initial=0) > readout.EPS]
    if len(read) != 1:
        raise ReadoutError(f"the unembedding reads {read or 'no written variable'}, not one")
    return names[read[0]]


def read_program(model: CompiledModel, *, named: bool = True) -> Program:
    """The model's whole program read from its weights: structure, coefficients, tables (ReadoutError if not).

    ``named``: a table equal to a library function or comparison is named by it (see ``readout.read_tables``).

    LinearSequenceMap coefficients are read before the tables: a table's domain is what the program so far
    computes, so a placeholder coefficient would hide values (a balance of -1 read as 1 + 1).
    """
    return readout.read_tables(_with_coefficients(read_structure(model), model), model, named=named)


def _with_coefficients(program: Program, model: CompiledModel) -> Program:
    """Each LinearSequenceMap's (a, b), probed from its MLP at (1, 0) and (0, 1)."""
    if not any(op.kind == "LinearSequenceMap" for op in program.ops):
        return program
    vars_ = readout.variables(model)
    written = readout.writers(model, vars_)
    mapping = readout.match(program, model)
    ops = list(program.ops)
    for i, op in enumerate(ops):
        if op.kind == "LinearSequenceMap":
            out = vars_[mapping[op.name]]
            layer = written[mapping[op.name]].sublayer // 2
            table = readout.mlp_table(model, layer, vars_, [mapping[a] for a in op.args], [[0, 1], [0, 1]], out)
            a, b = table(1, 0), table(0, 1)
            if not all(isinstance(c, (int, float)) for c in (a, b)):
                raise ReadoutError(f"{op.name}: cannot read its coefficients")
            ops[i] = Op(op.name, op.kind, op.args, op.encoding, coeffs=(float(a), float(b)))  # type: ignore[arg-type]
    return Program(tuple(ops), program.output)


def read_program_or_none(model: CompiledModel) -> Program | None:
    try:
        return read_program(model)
    except ReadoutError:
        return None
