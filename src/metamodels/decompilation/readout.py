"""Readout: a decoded program's functions and predicates, read from the model's weights.

The meta-model reads a program's *structure* well (which operations, where,
on which variables) but names functions from a closed library. Tracr stores
every function as a lookup table: a categorical MLP maps each input direction
to an output direction, a Select's attention logits are high exactly on the
(query, key) pairs its predicate accepts. Given the decoded structure and the
model's residual labels (Tracr's basis: ``name:value`` per categorical
direction, ``name`` for a numerical one), readout

1. groups the residual directions into variables and finds, from the non-zero
   blocks of each sublayer's weights, which variable every MLP and attention
   head writes and which it reads;
2. matches the program's variables to the model's (same sublayer, same
   encoding, reads the matched arguments), in definition order;
3. probes each Map/SequenceMap MLP with one residual vector per input value
   (a one-hot per categorical argument, the value itself on a numerical one,
   ``one`` = 1) and reads the output; reads each Select's table from the
   query-key logits between the two variables' value directions;
4. returns the program with those tables (named library functions or
   comparisons where a table equals one on its domain).

A model whose residual basis is not Tracr's (densified) has no labels: readout
raises :class:`ReadoutError`, as it does when the structure does not fit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.rasp import layers
from metamodels.rasp.program import INPUTS, Op, Program
from metamodels.rasp.tables import Table, agrees, library_function, library_predicate
from metamodels.transformer import battery, compiled
from metamodels.transformer.compiled import CompiledModel, Value

EPS = 1e-6
ONE = "one"


class ReadoutError(MetamodelsError):
    """The structure does not fit the model (or the model has no residual labels)."""


@dataclasses.dataclass(frozen=True)
class Variable:
    """A residual-stream variable: its directions and, if categorical, the value of each."""

    name: str
    dims: tuple[int, ...]
    values: tuple[Value, ...] | None  # None for a numerical variable (one direction)


@dataclasses.dataclass(frozen=True)
class Writer:
    """The sublayer (and head, for attention) writing a variable, and what it reads.

    ``reads``: (inputs,) for an MLP; (queries, keys, values) for an attention head.
    """

    sublayer: int
    head: int | None
    reads: tuple[frozenset[str], ...]


def variables(model: CompiledModel) -> dict[str, Variable]:
    """The model's residual variables, from its labels (ReadoutError if it has none)."""
    if not model.residual_labels:
        raise ReadoutError("the model has no residual labels (its basis is not Tracr's); tables cannot be read")
    tokens = {str(v): v for v in model.input_values}
    dims: dict[str, list[int]] = {}
    values: dict[str, list] = {}  # Tracr values: numbers, strings, bools, tuples
    for i, label in enumerate(model.residual_labels):
        name, colon, raw = label.partition(":")
        dims.setdefault(name, []).append(i)
        if colon:
            values.setdefault(name, []).append(tokens[raw] if name == "tokens" and raw in tokens else compiled.label_value(raw))
    return {n: Variable(n, tuple(d), tuple(values[n]) if n in values else None) for n, d in dims.items()}


def writers(model: CompiledModel, variables_: dict[str, Variable]) -> dict[str, Writer]:
    """Which sublayer (and head) writes each variable, from the non-zero weight blocks."""

    special = (model.settings.bos, model.settings.pad)
    # BOS is Tracr's helper (a head attends to it when nothing else matches): not a read of ``tokens``.
    dims = {n: [d for d, x in zip(v.dims, v.values or [None] * len(v.dims)) if n != "tokens" or x not in special]
            for n, v in variables_.items()}  # fmt: skip

    def touched(matrix: np.ndarray) -> frozenset[str]:  # matrix [D, n]: variables with a non-zero row
        return frozenset(n for n in variables_ if np.abs(matrix[dims[n]]).max(initial=0) > EPS)

    out: dict[str, Writer] = {}
    k = model.key_size
    for layer in range(model.n_layers):
        w_o = model.layer(layer, "attn/linear/w")  # [H*K, D]
        for h in range(model.n_heads):
            cols = slice(h * k, (h + 1) * k)
            reads = tuple(touched(model.layer(layer, f"attn/{p}/w")[:, cols]) for p in ("query", "key", "value"))
            for name in touched(w_o[cols].T):
                out.setdefault(name, Writer(2 * layer, h, reads))
        w1, w2 = model.layer(layer, "mlp/linear_1/w"), model.layer(layer, "mlp/linear_2/w")  # [D, M], [M, D]
        for name in touched(w2.T):
            hidden = np.abs(w2[:, list(variables_[name].dims)]).max(axis=1) > EPS
            out.setdefault(name, Writer(2 * layer + 1, None, (touched(w1[:, hidden]),)))
    return out


def match(program: Program, model: CompiledModel) -> dict[str, str]:
    """Program variable -> model variable, for every live sequence operation.

    Depth-first over the operations in definition order: each takes an unused
    model variable written at its sublayer, of its encoding, whose writer reads
    the variables its arguments matched; a dead end backtracks (two Maps of the
    same inputs in one layer are told apart by what reads them later).
    ReadoutError names the first operation nothing fits.
    """
    vars_ = variables(model)
    return _match(program, vars_, writers(model, vars_))


def _match(program: Program, vars_: dict[str, Variable], written: dict[str, Writer]) -> dict[str, str]:
    sublayer = layers.assign_sublayers(program)
    ops = [op for op in program.ops if op.name in sublayer]
    stuck: list[Op] = []

    def extend(i: int, mapping: dict[str, str]) -> dict[str, str] | None:
        if i == len(ops):
            return mapping
        op = ops[i]
        target = sublayer[op.name] + (op.kind == "SelectorWidth")  # its MLP writes the count
        numerical = op.encoding == "numerical"
        fits = [
            (fit, name)
            for name, w in written.items()
            if w.sublayer == target and name not in mapping.values() and (vars_[name].values is None) == numerical
            if (fit := _reads_fit(program, op, w, mapping, written))
        ]
        for _, name in sorted(fits, key=lambda f: -f[0]):  # exact fits first, stable otherwise
            found = extend(i + 1, {**mapping, op.name: name})
            if found is not None:
                return found
        stuck.append(op)
        return None

    found = extend(0, {name: name for name in INPUTS})
    if found is None:
        op = max(stuck, key=ops.index)
        raise ReadoutError(f"{op.name}: no {op.encoding} {op.kind} at sublayer {sublayer[op.name]} reads what it reads")
    return found


def _reads_fit(program: Program, op: Op, w: Writer, mapping: dict[str, str], written: dict[str, Writer]) -> int:
    """How well writer ``w`` fits ``op``: 2 it reads exactly the op's arguments; 1 it is of the right
    kind but reads less (an argument with a single value has no weights); 0 not at all."""
    if op.kind in ("Map", "SequenceMap", "LinearSequenceMap"):
        reads, args = w.reads[0] - {ONE}, {mapping[a] for a in op.args}
        return 0 if w.head is not None or not reads <= args else 2 if reads == args else 1
    keys, queries = (mapping[a] for a in program.by_name[op.args[0]].args)
    if op.kind == "Aggregate":
        if w.head is None:
            return 0
        q, k, v = w.reads
        return 2 if queries in q and keys in k and mapping[op.args[1]] in v else 1

    # SelectorWidth: an MLP reading the count its attention head wrote.
    heads = [written.get(n) for n in w.reads[0] - {ONE}] if w.head is None else []
    found = [h for h in heads if h is not None and h.head is not None]
    return 0 if not found else 2 if any(queries in h.reads[0] and keys in h.reads[1] for h in found) else 1


def read_tables(
    program: Program, model: CompiledModel, *, per_length: int = 30, seed: int = 0, named: bool = True
) -> Program:
    """``program`` with every Map/SequenceMap function and Select predicate read from ``model``'s weights.

    A read table that equals the decoded library function (or comparison) keeps
    that name, else the first equal library one, else it stays a table (``named``
    False: every one stays a table). Value sets
    of numerical arguments come from evaluating the program so far on a battery
    of ``per_length`` inputs per length. ReadoutError if the structure does not fit.
    """
    program = program.without_dead_code()
    vars_ = variables(model)
    written = writers(model, vars_)
    mapping = _match(program, vars_, written)
    ops = list(program.ops)
    s = model.settings
    inputs = battery.make_battery(s.vocab, s.max_seq_len, per_length=per_length, seed=seed)
    for i, op in enumerate(ops):
        if op.kind in ("Map", "SequenceMap"):
            current = Program(tuple(ops), program.output)
            domains = [_domain(current, a, mapping, vars_, model, inputs) for a in op.args]
            table = mlp_table(
                model,
                written[mapping[op.name]].sublayer // 2,
                vars_,
                [mapping[a] for a in op.args],
                domains,
                vars_[mapping[op.name]],
            )
            ops[i] = dataclasses.replace(op, fn=named_table(op, table) if named else table)
        elif op.kind in ("Aggregate", "SelectorWidth"):
            j = next(j for j, o in enumerate(ops) if o.name == op.args[0])
            select = ops[j]
            w = written[mapping[op.name]]
            if op.kind == "SelectorWidth":
                w = next(written[n] for n in w.reads[0] if n in written and written[n].head is not None)
            keys, queries = (vars_[mapping[a]] for a in select.args)
            table = _attention_table(model, w.sublayer // 2, w.head, keys, queries)  # type: ignore[arg-type]
            ops[j] = dataclasses.replace(select, predicate=named_table(select, table) if named else table)
    return Program(tuple(ops), program.output)


def read_tables_or_none(program: Program, model: CompiledModel) -> Program | None:
    """:func:`read_tables`, or None where the structure does not fit the model (or it has no labels)."""
    try:
        return read_tables(program, model)
    except ReadoutError:
        return None


def named_table(op: Op, table: Table) -> str | Table:
    """The decoded library name if it computes ``table``, else the first library equal, else the table."""
    decoded = op.predicate if op.kind == "Select" else op.fn
    if isinstance(decoded, str) and agrees(op.function, table):  # type: ignore[arg-type]
        return decoded
    return (library_predicate if op.kind == "Select" else library_function)(table) or table


def _domain(program: Program, name: str, mapping, vars_, model: CompiledModel, inputs) -> list[Value]:
    """Values ``name`` can take: its labelled values if categorical, else those the program computes."""
    var = vars_[mapping[name]]
    if var.values is not None:
        s = model.settings
        return [v for v in var.values if not (name == "tokens" and v in (s.bos, s.pad))]
    upto = Program(program.ops, name) if name not in INPUTS else None
    seen: set[Value] = set()
    for xs in inputs:
        try:
            seen.update(v for v in (upto.evaluate(xs) if upto else xs) if v is not None)  # type: ignore[misc]
        except Exception as e:  # noqa: BLE001 - a wrong earlier table can make evaluation fail
            raise ReadoutError(f"{name}: cannot evaluate its values ({type(e).__name__}: {e})") from None
    return sorted(seen)  # type: ignore[type-var]


def mlp_table(model, layer: int, vars_, args: list[str], domains: list[list[Value]], out: Variable) -> Table:
    """Probe the MLP of ``layer`` with every combination of argument values; read ``out``."""
    combos = [(x,) for x in domains[0]] if len(args) == 1 else [(x, y) for x in domains[0] for y in domains[1]]
    if not combos:
        raise ReadoutError(f"{out.name}: its arguments take no values")
    residual = np.zeros((len(combos), model.d_model), dtype=np.float32)
    if ONE in vars_:
        residual[:, vars_[ONE].dims[0]] = 1.0
    for row, combo in enumerate(combos):
        for arg, value in zip(args, combo):
            var = vars_[arg]
            if var.values is None and isinstance(value, (int, float)):
                residual[row, var.dims[0]] = float(value)
            elif var.values is not None and value in var.values:
                residual[row, var.dims[var.values.index(value)]] = 1.0
            else:
                raise ReadoutError(f"{out.name}: argument {arg} cannot hold the value {value!r}")
    hidden = np.maximum(residual @ model.layer(layer, "mlp/linear_1/w") + model.layer(layer, "mlp/linear_1/b"), 0)
    result = (hidden @ model.layer(layer, "mlp/linear_2/w") + model.layer(layer, "mlp/linear_2/b"))[:, list(out.dims)]
    entries: list[tuple[object, object]] = []
    for combo, row in zip(combos, result):
        key = combo[0] if len(combo) == 1 else combo
        if out.values is None:
            entries.append((key, _snap(float(row[0]))))
        else:  # a categorical MLP writes exactly one direction, or none where the function's value is None
            entries.append((key, out.values[int(row.argmax())] if row.max() > 0.5 else None))
    if all(v is None for _, v in entries):  # an MLP that writes nothing for any input reads other variables
        raise ReadoutError(f"{out.name}: its MLP writes no value for any input of {args}: it reads other variables")
    return Table(tuple(entries), len(args))


def _snap(x: float) -> Value:
    r = round(x, 4)
    return int(r) if r.is_integer() else r


def _attention_table(model: CompiledModel, layer: int, head: int, keys: Variable, queries: Variable) -> Table:
    """A head's predicate: (key, query) selected where its logit is at least half the largest."""
    if keys.values is None or queries.values is None:
        raise ReadoutError("a Select reads categorical variables only")
    cols = slice(head * model.key_size, (head + 1) * model.key_size)
    q = model.layer(layer, "attn/query/w")[list(queries.dims), cols]
    k = model.layer(layer, "attn/key/w")[list(keys.dims), cols]
    logits = q @ k.T  # [queries, keys]
    top = logits.max(initial=0.0)
    special = (model.settings.bos, model.settings.pad)
    rows = [i for i, qv in enumerate(queries.values) if qv not in special]
    cols_ = [j for j, kv in enumerate(keys.values) if kv not in special]
    entries = [
        ((keys.values[j], queries.values[i]), bool(top > EPS and logits[i, j] > top / 2)) for i in rows for j in cols_
    ]
    # A head that selects nothing between these variables reads other ones: the structure does not fit. (A
    # compiled Select(..., FALSE) selects nothing too, but only in a degenerate program: its Aggregate is constant.)
    if not any(v for _, v in entries):
        raise ReadoutError(f"the head selects no ({keys.name}, {queries.name}) pair: it reads other variables")
    block = logits[np.ix_(rows, cols_)]
    if all(v for _, v in entries) and block.max() - block.min() > EPS:  # a compiled TRUE scores every pair alike
        raise ReadoutError(
            f"the head selects every ({keys.name}, {queries.name}) pair unevenly: it reads other variables"
        )
    return Table(tuple(entries), 2)
