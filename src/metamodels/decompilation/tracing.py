"""Tracing: a whole program's structure read from a model's activations, in any residual basis (no labels).

:mod:`~metamodels.decompilation.wiring` reads the data flow from Tracr's residual
labels. A dense model has none, but each variable still lives where its writer
puts it, and every reader still depends on the values of what it reads. Layer by
layer, with the variables known so far (the tokens and indices first), on the
probe's battery (:mod:`~metamodels.decompilation.probing`):

- an **attention head** is a Select of the pair of known categorical variables
  whose values explain its query-key logits (relative to BOS); a head whose values
  side carries nothing but BOS is a SelectorWidth (its count goes on to the MLP
  below); any other head is an Aggregate of the known variable whose aggregate
  under that Select explains the head's output (categorical: the output is a
  function of it; numerical: proportional to it);
- an **MLP**'s hidden units are grouped by the smallest set of one or two known
  variables whose values explain them (units a SelectorWidth's count explains are
  that SelectorWidth's), and by the direction numerical units write: each group is
  a Map, a SequenceMap, or a LinearSequenceMap (two numerical arguments, one
  numerical direction written, a linear function of them), categorical unless it
  writes one direction;
- the **output** is the last variable the model's decoded output is a function of.

Among variables that explain a reader equally well the one with the fewest values
is taken (a function of a variable explains whatever the variable does; the
coarser keeps tables small). Parallel Maps of one argument in one MLP come out as
one categorical Map whose values are the pairs: equal in behaviour, not in text.
A head, or a whole MLP, that no known variable explains is taken as unused:
compression leaves noise where nothing downstream reads it (a program with a
constant part), and what does read it then finds no variable to read.

Units are grouped into as few ops as explain them (Tracr gives a Map or a
SequenceMap one hidden unit per argument value or pair, and a unit alone may be
explained by a coarser variable); an op's values are the means of what its units
write per argument value (compression noise out). The tables are then read by
:func:`probing.read_tables`, and completed on a wider battery where the probe's
random inputs missed a value combination the program reaches. ReadoutError where
the output is explained by no traced variable, or a structure's tables cannot be
read (the model is not a compiled RASP program, or not one this reads).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools

import numpy as np

from metamodels.decompilation import probing
from metamodels.decompilation.readout import ReadoutError
from metamodels.rasp.program import Encoding, Op, Program
from metamodels.rasp.tables import NoEntry, Table
from metamodels.transformer import battery, forward
from metamodels.transformer.compiled import CompiledModel, Value

EXPLAINED = 0.9  # a variable explains a reader when its values account for this much of the reader's variance
FIT_TIE = 0.01  # fits this close explain a reader equally well (then the variable with the fewest values is taken)
OUTPUT_SLACK = 0.03  # share of positions where the output may differ from the function of the output variable
# (a model compressed to 99% of inputs right errs on a few % of the probe's positions: seen 1.7% and 2.5%)
MIXED = object()  # a categorical Aggregate's value where the selected values differ (undefined in RASP)
MIN_CLEAN = 0.25  # a categorical Aggregate is fitted where its selected values agree: on at least this share
NO_INTERACTION = 0.99  # two variables' main effects explaining this much of a write: they do not interact
QUIET = 1e-6  # size below which a head does nothing
COVERAGE = 8  # tables are completed on a battery this many times the probe's inputs per length (every input
EXHAUSTIVE = 20_000  # when there are at most this many), adding one input per table entry the probe missed ...
COVERAGE_ROUNDS = 3  # ... this many times at most (an entry read anew can lead to others)
ATTENDED = 0.25  # a head attends to a key whose weight is over this share of the query's largest
OFF_BOS = 0.1  # a head whose values off BOS are this small beside its value at BOS counts (a SelectorWidth); not
# zero: compression leaks a little of every direction into the others (seen: 1.5%; an Aggregate has 0 at BOS)


@dataclasses.dataclass
class _Variable:
    name: str
    encoding: Encoding
    values: list[Value]  # at every probed position
    count_of: str | None = None  # a SelectorWidth's attention half: the Select it counts


def read_program(model: CompiledModel, probed: probing.Probe | None = None) -> Program:
    """The model's whole program traced from its activations, tables read (ReadoutError if it cannot be)."""
    probed = probed if probed is not None else probing.probe(model)
    structure, sublayer = read_structure(model, probed)
    program = probing.read_tables(structure, model, probed, sublayer)
    s = model.settings
    wider = battery.make_battery(s.vocab, s.max_seq_len, per_length=COVERAGE * probing.PER_LENGTH, seed=1,
                                 exhaustive_up_to=EXHAUSTIVE)  # fmt: skip
    extra: list[tuple[Value, ...]] = []
    for _ in range(COVERAGE_ROUNDS):  # the tables again, on the probe plus inputs reaching entries it missed
        missed = _uncovered(program, wider, s.causal)
        if not missed:
            break
        extra += missed
        try:
            program = probing.read_tables(structure, model, probing.probe(model, extra=extra), sublayer)
        except ReadoutError:
            break
    return program


def _uncovered(program: Program, inputs: list[tuple[Value, ...]], causal: bool) -> list[tuple[Value, ...]]:
    """One input for each table entry ``program`` lacks that one of ``inputs`` reaches: a value combination the
    probe's random inputs never met."""
    out: dict[str, tuple[Value, ...]] = {}
    for xs in inputs:
        try:
            program.evaluate(xs, causal=causal)
        except NoEntry as e:
            out.setdefault(str(e), xs)
        except Exception:  # noqa: BLE001, S112 - undefined elsewhere (a None argument): verification judges it
            continue
    return list(out.values())


def read_program_or_none(model: CompiledModel, probed: probing.Probe | None = None) -> Program | None:
    try:
        return read_program(model, probed)
    except ReadoutError:
        return None


def read_structure(model: CompiledModel, probed: probing.Probe) -> tuple[Program, dict[str, int]]:
    """(the program's structure, tables placeholders read later; each op's sublayer in the model), traced layer by
    layer."""
    known = {
        "tokens": _Variable("tokens", "categorical", [probed.inputs[i][t] for i, t in probed.where]),
        "indices": _Variable("indices", "categorical", [t for _, t in probed.where]),
    }
    ops: list[Op] = []
    sublayer: dict[str, int] = {}
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            _trace_head(model, probed, layer, head, known, ops)
        sublayer.update({op.name: 2 * layer for op in ops if op.name not in sublayer})
        _trace_mlp(model, probed, layer, known, ops)
        sublayer.update({op.name: 2 * layer + 1 for op in ops if op.name not in sublayer})
        for name in [n for n, v in known.items() if v.count_of is not None]:  # read by this layer's MLP only
            del known[name]
    if not ops:
        raise ReadoutError("the model writes nothing the battery shows")
    output = _output(probed, known, ops)
    return Program(tuple(ops), output).without_dead_code(), sublayer


def _fresh(prefix: str, known: dict, ops: list[Op]) -> str:
    taken = set(known) | {op.name for op in ops}
    return next(f"{prefix}{i}" for i in itertools.count(1) if f"{prefix}{i}" not in taken)


def _explained(matrix: np.ndarray, values: list) -> float:
    """Share of the variance of ``matrix`` [P, n] that grouping by ``values`` explains (None is a group)."""
    total = float(((matrix - matrix.mean(axis=0)) ** 2).sum())
    if total <= 0:
        return 1.0
    within = sum(float(((matrix[r] - matrix[r].mean(axis=0)) ** 2).sum()) for r in _rows_by_value(values))
    return 1.0 - within / total


def _rows_by_value(values: list) -> list[list[int]]:
    """The positions of each distinct value in ``values``, in order of first appearance."""
    rows: dict[object, list[int]] = {}
    for p, v in enumerate(values):
        rows.setdefault(v, []).append(p)
    return list(rows.values())


def _n_values(var: _Variable) -> int:
    return len(set(var.values))


# ----------------------------------------------------------------------------- attention


@dataclasses.dataclass
class _Head:
    out: np.ndarray  # [P, D] what the head adds to the residual at the real positions
    values: np.ndarray  # [P, K] its value vectors there
    at_bos: float  # the largest size of its value vector at BOS
    attended: list[frozenset[int]]  # per position, the positions of its input it attends to (BOS left out)


def _head_outputs(model: CompiledModel, probed: probing.Probe, layer: int, head: int) -> _Head:
    """What one head does on the probe. A key is attended where its weight is over ATTENDED of the query's largest
    (BOS's included: Tracr's head attends to BOS alone where it selects nothing)."""
    cols = slice(head * model.key_size, (head + 1) * model.key_size)
    w_o = model.layer(layer, "attn/linear/w")[cols]
    x, bos = probed.streams[2 * layer], probed.bos[2 * layer]
    out, values = np.zeros_like(x), np.zeros((len(x), model.key_size), dtype=x.dtype)
    at_bos = 0.0
    attended: list[frozenset[int]] = []
    starts = [p for p, (_, t) in enumerate(probed.where) if t == 0]
    for start, end in zip(starts, starts[1:] + [len(probed.where)]):
        seq = np.concatenate([bos[start : start + 1], x[start:end]])[None]  # [1, T + 1, D], BOS first
        weights, v = forward.attention(model, layer, seq)  # [1, H, T+1, T+1], [1, T+1, H, K]
        out[start:end] = (weights[0, head] @ v[0, :, head])[1:] @ w_o
        values[start:end] = v[0, 1:, head]
        at_bos = max(at_bos, float(np.abs(v[0, 0, head]).max(initial=0.0)))
        w = weights[0, head, 1:]  # [T, T + 1]
        picked = w[:, 1:] > ATTENDED * w.max(axis=1, keepdims=True)
        attended += [frozenset(start + np.flatnonzero(row)) for row in picked]
    return _Head(out, values, at_bos, attended)


def _trace_head(model, probed, layer: int, head: int, known: dict[str, _Variable], ops: list[Op]) -> None:
    seen = _head_outputs(model, probed, layer, head)
    out, values, at_bos = seen.out, seen.values, seen.at_bos
    scale = np.abs(out).max(initial=0.0)
    if scale <= QUIET:
        return  # an unused head
    select = _best_select(model, probed, layer, head, known, seen.attended)
    if select is None:
        return  # unexplained: taken as unused (what reads it, if anything, then finds no variable to read)
    keys, queries, table = select
    chosen = _selected(probed, known[keys].values, known[queries].values, table, model.settings.causal)
    sel = Op(_fresh("select", known, ops), "Select", (keys, queries), None, predicate=Table(tuple(table.items()), 2))
    if np.abs(values).max(initial=0.0) <= OFF_BOS * at_bos:
        # values carry (next to) nothing off BOS: a SelectorWidth's attention half; its MLP (below) writes the count
        widths: list[Value] = [len(row) for row in chosen]
        name = _fresh("width", known, ops)
        known[name] = _Variable(name, "categorical", widths, count_of=sel.name)
        ops.append(sel)
        return
    fits: list[tuple[float, float, int, str, Encoding, list]] = []  # (coverage, fit, values, name, encoding, agg)
    for var in list(known.values()):
        if var.count_of is not None:
            continue
        agg = _aggregate(chosen, var.values, var.encoding)
        if var.encoding == "categorical":
            # Where the selected values differ the model averages them (Tracr's categorical Aggregate is undefined
            # there, and the probe's random inputs make that common): those positions are no evidence.
            clean = [p for p, a in enumerate(agg) if a is not MIXED]
            coverage = len(clean) / len(agg)
            fit = _explained(out[clean], [agg[p] for p in clean]) if coverage >= MIN_CLEAN else 0.0
            agg = [None if a is MIXED else a for a in agg]
        else:
            coverage, fit = 1.0, _linear_fit(out, agg)
        if fit >= EXPLAINED:
            fits.append((coverage, fit, _n_values(var), var.name, var.encoding, agg))
    if not fits:
        return  # unexplained: taken as unused (compression leaves noise where nothing downstream reads a head)
    # Explained on more positions first (a fit on few is weaker); then, among fits as good within FIT_TIE, the fewest
    # values: a finer variable (tokens and indices together, say) always fits a little better, as it fits noise too.
    coverage = max(f[0] for f in fits)
    top = max(f[1] for f in fits if f[0] == coverage)
    *_, source, encoding, agg = min((f for f in fits if f[0] == coverage and f[1] >= top - FIT_TIE), key=lambda f: f[2])
    name = _fresh("agg", known, ops)
    ops += [sel, Op(name, "Aggregate", (sel.name, source), encoding)]
    known[name] = _Variable(name, encoding, agg)


def _best_select(model, probed, layer: int, head: int, known: dict[str, _Variable], attended: list[frozenset[int]]
                 ) -> tuple[str, str, dict] | None:  # fmt: skip
    """(keys, queries, {(key, query): selected}) of the pair of known categorical variables that explains the
    head's logits best; on a tie, the pair whose Select attends where the head does at the most positions (the
    logits are fitted on a few representatives per value), then the fewest values. None if none does."""
    candidates = [v for v in known.values() if v.encoding == "categorical" and v.count_of is None]
    fits = []  # (unexplained, number of values, keys, queries, table)
    for k, q in itertools.product(candidates, repeat=2):
        fit = probing.head_predicate(model, probed, layer, head, k.values, q.values)
        if fit is not None:
            fits.append((fit[1], _n_values(k) + _n_values(q), k.name, q.name, fit[0]))
    if not fits:
        return None
    least = min(f[0] for f in fits)
    tied = [f for f in fits if f[0] <= least + FIT_TIE]

    def misses(f: tuple) -> int:
        chosen = _selected(probed, known[f[2]].values, known[f[3]].values, f[4], model.settings.causal)
        return sum(frozenset(row) != seen for row, seen in zip(chosen, attended))

    if len(tied) > 1:
        missed = [misses(f) for f in tied]
        tied = [f for f, m in zip(tied, missed) if m == min(missed)]
    *_, keys, queries, table = min(tied, key=lambda f: (f[1], f[0]))
    return keys, queries, table


def _selected(probed, keys: list, queries: list, table: dict, causal: bool) -> list[list[int]]:
    """Per position, the positions of the same input it selects (by the table; key <= query when causal)."""
    out: list[list[int]] = []
    starts = [p for p, (_, t) in enumerate(probed.where) if t == 0]
    for start, end in zip(starts, starts[1:] + [len(probed.where)]):
        for qp in range(start, end):
            out.append([kp for kp in range(start, end if not causal else qp + 1)
                        if table.get((keys[kp], queries[qp]), False)])  # fmt: skip
    return out


def _aggregate(chosen: list[list[int]], values: list, encoding: Encoding) -> list:
    """RASP's Aggregate at every position: the mean of the selected values (numerical, 0 if none), or their common
    value (categorical; None if none is selected, MIXED if they differ)."""
    out: list = []
    for keys in chosen:
        picked = [values[k] for k in keys]
        if encoding == "numerical":
            nums = [float(v) for v in picked if isinstance(v, (int, float))]  # type: ignore[arg-type]
            out.append(sum(nums) / len(nums) if nums and len(nums) == len(picked) else (0.0 if not picked else None))
        else:
            out.append(None if not picked else picked[0] if all(v == picked[0] for v in picked) else MIXED)
    return out


def _linear_fit(matrix: np.ndarray, values: list) -> float:
    """Share of ``matrix``'s variance [P, n] a line through ``values`` explains (0 where a value is missing)."""
    if any(v is None for v in values):
        return 0.0
    x = np.asarray(values, dtype=np.float64)[:, None]
    share = _least_squares_share(matrix, np.concatenate([x, np.ones_like(x)], axis=1))
    return 0.0 if share is None else share


def _least_squares_share(matrix: np.ndarray, design: np.ndarray) -> float | None:
    """Share of the variance of ``matrix`` [P, n] that a least-squares fit on ``design`` [P, m] explains (None when
    ``matrix`` does not vary)."""
    coef, *_ = np.linalg.lstsq(design, matrix.astype(np.float64), rcond=None)
    total = float(((matrix - matrix.mean(axis=0)) ** 2).sum())
    return None if total <= 0 else 1.0 - float(((matrix - design @ coef) ** 2).sum()) / total


# ----------------------------------------------------------------------------- MLP


def _trace_mlp(model, probed, layer: int, known: dict[str, _Variable], ops: list[Op]) -> None:
    x = probed.streams[2 * layer + 1]
    hidden = np.maximum(x @ model.layer(layer, "mlp/linear_1/w") + model.layer(layer, "mlp/linear_1/b"), 0)
    w2 = model.layer(layer, "mlp/linear_2/w")
    live = probing.live_units(hidden, w2, x)
    readers = list(known.values())
    explaining = {int(u): _explaining(hidden[:, u : u + 1], readers) for u in np.flatnonzero(live)}
    stray = [u for u, fits in explaining.items() if not fits]
    counts = {n for n, v in known.items() if v.count_of is not None}
    by_args = _fewest_ops({u: fits for u, fits in explaining.items() if fits}, counts)
    # A unit no variable explains fires on leftovers of an imperfect one-hot (a SequenceMap's unit for a pair that
    # cannot occur): it joins the op whose arguments explain it best. With no op in the layer, the layer is taken
    # as unused (compression leaves noise where nothing downstream reads an MLP; what reads it finds no variable).
    for leftover in stray if by_args else []:
        column = hidden[:, leftover : leftover + 1]
        best = max(by_args, key=lambda a: _explained(column, list(zip(*(known[n].values for n in a)))))
        by_args[best].append(leftover)
    by_args = _merge_same_direction(_absorb_pairs(_merge_lifted(by_args, known), hidden, w2, known), hidden, w2)
    for args, units in by_args.items():
        counted = [known[a] for a in args if known[a].count_of is not None]
        if counted:
            if len(args) != 1:
                raise ReadoutError(f"layer {layer}: units read a count and another variable")
            _add_width(known[args[0]], units, hidden, w2, known, ops)
            continue
        whole, *directions = _groups_by_write(units, hidden, w2)
        labels = _add_mlp_op(args, whole, hidden, w2, known, ops, list(zip(*(known[a].values for a in args))))
        for group in directions:  # each a function of the whole's values (what is written, noise out)
            _add_mlp_op(args, group, hidden, w2, known, ops, labels)


def _merge_lifted(by_args: dict[tuple[str, ...], list[int]], known: dict[str, _Variable]
                  ) -> dict[tuple[str, ...], list[int]]:  # fmt: skip
    """Unit groups whose arguments differ in one variable each, both functions of one known variable, are one op
    of that variable instead (the coarsest such); a group of one argument that is a function of another group's
    two joins it. Tracr gives a Map or a SequenceMap a hidden unit per argument value (or pair): each unit alone
    is explained by an indicator of its own value, which a function of the argument (such as one direction of a
    categorical Map written in several) may be, or by a function of both arguments, or one; together they are
    the op."""
    merged = dict(by_args)
    changed = True
    while changed:
        changed = False
        for a, b in itertools.combinations(list(merged), 2):
            lifted = _lift(a, b, known)
            if lifted is not None:
                units = merged.pop(a) + merged.pop(b)
                merged[lifted] = merged.pop(lifted, []) + units
                changed = True
                break
    return merged


def _lift(a: tuple[str, ...], b: tuple[str, ...], known: dict[str, _Variable]) -> tuple[str, ...] | None:
    """The arguments of one op covering groups ``a`` and ``b`` (see :func:`_merge_lifted`), or None."""
    if any(known[n].count_of is not None for n in a + b):
        return None
    if len(a) != len(b):  # a unit per pair of values: where one value fixes the other, one argument explains it
        shorter, longer = sorted((a, b), key=len)
        joint = list(zip(*(known[n].values for n in longer)))
        return longer if _function_of(known[shorter[0]].values, joint) else None
    shared = [n for n in a if n in b]
    if len(shared) != len(a) - 1:
        return None
    (x,), (y,) = [n for n in a if n not in shared], [n for n in b if n not in shared]
    covers = [v for v in known.values() if v.count_of is None and v.name not in shared
              and _function_of(known[x].values, v.values) and _function_of(known[y].values, v.values)]  # fmt: skip
    if not covers:
        return None
    cover = min(covers, key=lambda v: (_n_values(v), v.name not in (x, y)))
    return tuple(sorted(shared + [cover.name], key=list(known).index))


def _function_of(a: list, b: list) -> bool:
    """Whether the value in ``a`` is determined by the one in ``b`` at every probed position."""
    seen: dict[object, object] = {}
    return all(seen.setdefault(vb, va) == va for va, vb in zip(a, b))


def _absorb_pairs(by_args: dict[tuple[str, ...], list[int]], hidden: np.ndarray, w2: np.ndarray,
                  known: dict[str, _Variable]) -> dict[tuple[str, ...], list[int]]:  # fmt: skip
    """Units explained by a pair (a, b) are a's when what they write (alone, or with the units of a's own Map) a
    alone explains and b adds to it without interacting (explained by main effects): compression leaks a little of
    every direction into the others, so a unit of a Map of a can look like a unit of a SequenceMap of a and b
    although the Map's output as a whole depends on a only. A real SequenceMap's arguments interact."""
    out = dict(by_args)
    for pair in [args for args in by_args if len(args) == 2]:
        for single in pair:
            if pair not in out or known[single].count_of is not None:
                continue
            other = pair[1] if single == pair[0] else pair[0]
            for units in (out[pair], out.get((single,), []) + out[pair]):
                written = hidden[:, units] @ w2[units]
                if (_explained(written, known[single].values) >= EXPLAINED
                        and _additive(written, known[single].values, known[other].values) >= NO_INTERACTION):  # fmt: skip
                    out[(single,)] = out.get((single,), []) + out.pop(pair)
                    break
    return out


def _additive(matrix: np.ndarray, a: list, b: list) -> float:
    """Share of the variance of ``matrix`` [P, n] that the main effects of ``a`` and ``b`` explain (a value of each
    adds its own vector; no interaction)."""
    share = _least_squares_share(matrix, np.concatenate([_one_hot(a), _one_hot(b)], axis=1))
    return 1.0 if share is None else share


def _one_hot(values: list) -> np.ndarray:
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    out = np.zeros((len(values), len(index)))
    out[np.arange(len(values)), [index[v] for v in values]] = 1.0
    return out


def _merge_same_direction(by_args: dict[tuple[str, ...], list[int]], hidden: np.ndarray, w2: np.ndarray
                          ) -> dict[tuple[str, ...], list[int]]:  # fmt: skip
    """Unit groups of one argument each that write the same single direction are one op of both arguments (a
    LinearSequenceMap's units read its two arguments apart and add up in one direction)."""
    single = {a: u for a, u in by_args.items() if len(a) == 1 and _rank_one(hidden[:, u] @ w2[u])}
    direction = {a: np.linalg.svd(hidden[:, u] @ w2[u], full_matrices=False)[2][0] for a, u in single.items()}
    merged = dict(by_args)
    for a, b in itertools.combinations(single, 2):
        if a in merged and b in merged and abs(float(direction[a] @ direction[b])) > 0.99:
            merged[a + b] = merged.pop(a) + merged.pop(b)
    return merged


def _explaining(column: np.ndarray, readers: list[_Variable]) -> list[tuple[int, tuple[str, ...]]]:
    """(-number of values, arguments) of every variable or pair whose values explain a unit as well as the best
    one does, to FIT_TIE (a pair's values: the pairs seen); empty where none explains it."""
    fits: list[tuple[float, int, tuple[str, ...]]] = [
        (_explained(column, v.values), -_n_values(v), (v.name,)) for v in readers
    ]
    fits += [  # pairs too: a unit of a SequenceMap can be a function of one variable that fixes both arguments
        (_explained(column, pairs_of), -len(set(pairs_of)), (a.name, b.name))
        for a, b in itertools.combinations(readers, 2)
        if a.count_of is None and b.count_of is None
        for pairs_of in [list(zip(a.values, b.values))]
    ]
    if max(fits)[0] < EXPLAINED:
        return []
    top = max(f[0] for f in fits)
    return [(f[1], f[2]) for f in fits if f[0] >= top - FIT_TIE]


def _fewest_ops(explaining: dict[int, list[tuple[int, tuple[str, ...]]]], counts: set[str]
                ) -> dict[tuple[str, ...], list[int]]:  # fmt: skip
    """Units grouped by arguments explaining them, as few groups as a greedy cover gives: a SelectorWidth's count
    (in ``counts``) alone first (Tracr computes it in the MLP right after its attention), then the arguments
    explaining the most units, the fewest values on a tie (a unit explained equally well by two pairs of
    variables, one of them a function of the other, goes with the units of its op). A unit one variable explains
    is covered by variables first; then a group of such units that a pair group's arguments explain as well
    joins it (a SequenceMap's unit can be a function of one variable that fixes both arguments; parallel Maps of
    two variables stay apart)."""
    first = {u: [f for f in fits if len(f[1]) == min(len(a) for _, a in fits)] for u, fits in explaining.items()}
    left = dict(first)
    out: dict[tuple[str, ...], list[int]] = {}
    while left:
        count: dict[tuple[str, ...], int] = {}
        size: dict[tuple[str, ...], int] = {}
        for fits in left.values():
            for n_values, args in fits:
                count[args] = count.get(args, 0) + 1
                size[args] = n_values
        best = max(count, key=lambda a: (len(a) == 1 and a[0] in counts, count[a], size[a]))
        out[best] = [u for u, fits in left.items() if any(a == best for _, a in fits)]
        left = {u: fits for u, fits in left.items() if u not in out[best]}
    for single in [a for a in out if len(a) == 1 and a[0] not in counts]:
        pair = next((p for p in out if len(p) == 2 and all(any(a == p for _, a in explaining[u]) for u in out[single])),
                    None)  # fmt: skip
        if pair is not None:
            out[pair] += out.pop(single)
    return out


def _groups_by_write(units: list[int], hidden: np.ndarray, w2: np.ndarray) -> list[tuple[list[int], Encoding]]:
    """The ops the units may be: all of them as one op (numerical when they write one direction, else categorical)
    and, where they write several directions one unit group each, one numerical op per direction (two numerical
    Maps of one argument side by side look like one categorical Map: both are offered; what reads them decides)."""
    whole: Encoding = "numerical" if _rank_one(hidden[:, units] @ w2[units]) else "categorical"
    out: list[tuple[list[int], Encoding]] = [(units, whole)]
    directions = probing.by_direction(np.asarray(units), w2)
    if whole == "categorical" and 1 < len(directions) <= 4:
        out += [(group, "numerical") for group in directions]
    return out


def _rank_one(written: np.ndarray) -> bool:
    s = np.linalg.svd(written.astype(np.float64), compute_uv=False)
    return bool(s.size and s[0] > 0 and (s.size == 1 or s[1] <= 1e-3 * s[0]))


def _add_mlp_op(args, group, hidden, w2, known: dict[str, _Variable], ops: list[Op], by: list) -> list[Value]:
    """The op of ``group``'s units; its values (returned) are the means of what they write grouped ``by`` these
    values (its arguments', or the values of the op all the layer's units of these arguments make)."""
    units, encoding = group
    name = _fresh("v", known, ops)
    numerical_args = all(known[a].encoding == "numerical" for a in args)
    if len(args) == 2 and encoding == "numerical" and numerical_args:
        ops.append(Op(name, "LinearSequenceMap", tuple(args), encoding, coeffs=(1.0, 1.0)))
    else:
        ops.append(Op(name, "Map" if len(args) == 1 else "SequenceMap", tuple(args), encoding, fn=Table.unread(len(args))))  # type: ignore[arg-type]
    known[name] = _Variable(name, encoding, _written_values(_group_means(hidden[:, units] @ w2[units], by), encoding))
    return known[name].values


def _group_means(matrix: np.ndarray, values: list) -> np.ndarray:
    """``matrix`` [P, n] with each row replaced by the mean of the rows sharing its ``values``: an op's output is a
    function of its arguments, and a compressed model's activations carry a little of everything else."""
    out = np.empty_like(matrix)
    for rows in _rows_by_value(values):
        out[rows] = matrix[rows].mean(axis=0)
    return out


def _add_width(count: _Variable, units, hidden, w2, known: dict[str, _Variable], ops: list[Op]) -> None:
    encoding: Encoding = "numerical" if _rank_one(hidden[:, units] @ w2[units]) else "categorical"
    name = _fresh("n", known, ops)
    ops.append(Op(name, "SelectorWidth", (count.count_of,), encoding))  # type: ignore[arg-type]
    known[name] = _Variable(name, encoding, list(count.values))


def _written_values(written: np.ndarray, encoding: Encoding) -> list[Value]:
    """Labels of what the units write at each position (a categorical op's values up to relabelling), or the
    coordinate along the direction written."""
    if encoding == "numerical":
        values, _ = probing.coordinates(written)
        return values
    return probing.labels(written)


# ----------------------------------------------------------------------------- output


def _output(probed: probing.Probe, known: dict[str, _Variable], ops: list[Op]) -> str:
    """The last variable (in definition order) the model's decoded output is a function of: to 1% for a numerical
    output; for a categorical one but for at most OUTPUT_SLACK of the positions (a compressed model decodes a few
    inputs unlike its source)."""
    outputs = list(probed.outputs)
    by_name = {op.name: op for op in ops}
    for op in reversed(ops):
        if op.kind == "Select" or op.name not in known:
            continue
        pairs = [(v, o) for v, o in zip(known[op.name].values, outputs) if v is not None]
        if not _relabelled(op.name, by_name):  # its values are what it outputs: the output must be they
            if pairs and sum(not _close(v, o) for v, o in pairs) <= OUTPUT_SLACK * len(pairs):
                return op.name
            continue
        if any(isinstance(o, float) for _, o in pairs):
            mapping: dict[object, object] = {}
            if all(_close(mapping.setdefault(v, o), o) for v, o in pairs):
                return op.name
            continue
        groups: dict[object, collections.Counter] = {}
        for v, o in pairs:
            groups.setdefault(v, collections.Counter())[o] += 1
        off = len(pairs) - sum(max(g.values()) for g in groups.values())
        if pairs and off <= OUTPUT_SLACK * len(pairs):
            return op.name
    raise ReadoutError("no variable the program computes explains the model's output")


def _relabelled(name: str, by_name: dict[str, Op]) -> bool:
    """Whether reading the tables names the variable's values by the model's outputs, were it the output: an MLP
    op's (probing reads an output MLP's values from the model's read-out), or an Aggregate's of one; not the
    tokens', indices' or a SelectorWidth's (their values are what they are)."""
    while name in by_name and by_name[name].kind == "Aggregate":
        name = by_name[name].args[1]
    return name in by_name and by_name[name].kind in ("Map", "SequenceMap", "LinearSequenceMap")


def _close(a: object, b: object) -> bool:
    """Equal, or (a float among them) numbers within 1% of the larger or of 1."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and float in (type(a), type(b)):
        return abs(a - b) <= 1e-2 * max(1.0, abs(a))
    return a == b
