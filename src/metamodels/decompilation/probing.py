"""Readout without residual labels: a decoded structure's tables probed from the model's activations.

:mod:`~metamodels.decompilation.readout` reads tables from the weight blocks of
named residual directions; a dense model (rotated, PCA-compressed) or any model
outside Tracr's basis has no names. What it still has is behaviour inside: this
module runs the model on a battery of inputs, keeps the residual stream entering
every sublayer, and reads each table of a decoded structure from what the
sublayer assigned to the op does there, with the op's argument values given by
evaluating the program read so far (the tokens and indices are known):

- **Select** (of an Aggregate or SelectorWidth at attention sublayer 2l): one
  residual per value of the queries and of the keys, taken where the program puts
  that value; a head of layer l fits when its query-key logit depends on those two
  values alone (every representative pair agrees); (key, query) is selected where
  the logit is above 3/4 of the query's logit to BOS (Tracr gives BOS half a
  selected key's score, or all of it in a SelectorWidth, and an unselected key 0).
- **Map / SequenceMap / LinearSequenceMap** (MLP sublayer 2l+1): the hidden units
  whose activation is a function of the op's argument values are the op's; their
  output, per argument value, is the op's value. On the program's output it is
  what the model outputs (its read-out names the values); elsewhere a categorical
  value is a canonical label (0, 1, ... in order of first appearance: an
  intermediate variable's values are defined only up to relabelling) and a
  numerical one the output's coordinate along its direction.

Only observed values are read: a table has an entry for every argument value the
battery reaches. The result is a program equal to the model's up to relabelling
of intermediate values; verification decides whether it is the model's.
ReadoutError where the structure does not fit (no head or no units fit an op).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from metamodels.decompilation import readout
from metamodels.decompilation.readout import ReadoutError, named_table
from metamodels.rasp import layers
from metamodels.rasp.program import Op, Program
from metamodels.rasp.tables import Table, is_literal
from metamodels.transformer import battery, forward
from metamodels.transformer.compiled import CompiledModel, Value

PER_LENGTH = 24  # random battery inputs per length (plus edge cases)
REPRESENTATIVES = 8  # residuals taken per value when a head's logits are probed
SELECTED = 0.75  # a key is selected where its logit exceeds this fraction of the query's logit to BOS
TOLERANCE = 0.02  # a logit to BOS below this fraction of the largest logit counts as none
EXPLAINED = 0.5  # a hidden unit is an op's when the op's argument values explain this much of its variance
EXPLAINED_LOGITS = 0.9  # a head is a Select's when its keys' and queries' values explain this much of its logits
NOISE = 0.05  # ... or its logits (relative to BOS's) vary less than this within each pair of values
CLOSE = 1e-3  # numerical coordinates this close (of the largest) are one value
DEAD = 1e-3  # an MLP unit whose write varies less than this share of its layer's busiest (or of the residual
# stream's size) does nothing
NOTHING, SAME = 0.03, 0.3  # output vectors this short (of the longest) write no value; this close (of the longer
# of the two), the same value


@dataclasses.dataclass(frozen=True, eq=False)
class Probe:
    """A model run on a battery; every array is over the P real (non-BOS) positions of all inputs.

    ``streams[s]`` [P, D]: the residual stream entering sublayer s (s = 0 .. 2 * n_layers; the last is the final
    residual); ``bos[s]`` [P, D]: the same at the BOS position of each position's input; ``outputs``: the model's
    decoded output at each position.
    """

    inputs: tuple[tuple[Value, ...], ...]
    where: tuple[tuple[int, int], ...]  # (input index, position) of each of the P positions
    streams: tuple[np.ndarray, ...]
    bos: tuple[np.ndarray, ...]
    outputs: tuple[Value, ...]


def probe(model: CompiledModel, *, per_length: int = PER_LENGTH, seed: int = 0,
          extra: Sequence[Sequence[Value]] = ()) -> Probe:  # fmt: skip
    """Run ``model`` on its battery (``per_length`` random inputs per length, edge cases, seeded; then ``extra``)
    and keep its residual streams, position by position."""
    inputs = list(dict.fromkeys(probe_inputs(model, per_length=per_length, seed=seed) + [tuple(xs) for xs in extra]))
    order, streams, bos, outputs = [], [], [], []
    for length in sorted({len(xs) for xs in inputs}):
        batch = [i for i, xs in enumerate(inputs) if len(xs) == length]
        res = forward.residuals(model, np.stack([forward.encode(model, inputs[i]) for i in batch]))  # [B, T, D] each
        streams.append([r[:, 1:].reshape(-1, r.shape[-1]) for r in res])
        bos.append([np.repeat(r[:, 0], length, axis=0) for r in res])
        outputs += [v for row in forward.decode(model, res[-1] @ model.params["unembed"]) for v in row]
        order += [(i, t) for i in batch for t in range(length)]
    n = len(streams[0])
    return Probe(
        tuple(inputs),
        tuple(order),
        tuple(np.concatenate([part[k] for part in streams]) for k in range(n)),
        tuple(np.concatenate([part[k] for part in bos]) for k in range(n)),
        tuple(outputs),
    )


def probe_inputs(model: CompiledModel, *, per_length: int = PER_LENGTH, seed: int = 0) -> list[tuple[Value, ...]]:
    """The battery, plus every vocabulary value at every position (the vocabulary cycled, each offset, at the
    longest length): a SequenceMap of tokens and indices, or of neighbouring tokens, meets every pair."""
    s = model.settings
    values = list(s.vocab)
    cycled = [tuple(values[(i + shift) % len(values)] for i in range(s.max_seq_len)) for shift in range(len(values))]
    inputs = battery.make_battery(s.vocab, s.max_seq_len, per_length=per_length, seed=seed)
    return list(dict.fromkeys(inputs + cycled))


def read_tables(
    program: Program, model: CompiledModel, probed: Probe | None = None, sublayer: dict[str, int] | None = None
) -> Program:
    """``program`` with every function, predicate and coefficient probed from ``model`` (any residual basis).

    ReadoutError if the structure does not fit. ``probed``: the model's :func:`probe`, when already run;
    ``sublayer``: where each op is in the model, when known (default: where Tracr would put it).
    """
    program = program.without_dead_code()
    if sublayer is None:
        if layers.n_layers(program) > model.n_layers:
            raise ReadoutError(f"the structure needs {layers.n_layers(program)} layers; the model has {model.n_layers}")
        sublayer = layers.assign_sublayers(program)
    probed = probed if probed is not None else probe(model)
    read, values = _read_tables(program, model, probed, sublayer, {})
    source = _labels_source(read)
    if source is None:
        return read
    # The output carries an intermediate variable's canonical labels (through categorical Aggregates): named by
    # what the model outputs where the output has each label, read again (readers of that variable key on names).
    names = _names(values[read.output], probed.outputs)
    return _read_tables(program, model, probed, sublayer, {source: names})[0] if names else read


def _labels_source(program: Program) -> str | None:
    """The categorical MLP op whose values reach the output through categorical Aggregates alone (the output not
    itself an MLP op, whose values are read as the model's outputs), or None."""
    name = program.output
    while name in program.by_name and program.by_name[name].kind == "Aggregate":
        op = program.by_name[name]
        if op.encoding != "categorical":
            return None
        name = op.args[1]
    source = program.by_name.get(name)
    mlp = source is not None and source.kind in ("Map", "SequenceMap") and source.encoding == "categorical"
    return name if mlp and name != program.output else None


def _names(labels: list[Value], outputs: Sequence[Value]) -> dict[Value, Value] | None:
    """{label: the model's most frequent output where the output variable has it}; None unless one to one."""
    seen: dict[Value, list[Value]] = {}
    for label, out in zip(labels, outputs):
        if label is not None:
            seen.setdefault(label, []).append(out)
    names = {label: _model_value(outs) for label, outs in seen.items()}
    return names if len(set(names.values())) == len(names) else None


def _read_tables(program: Program, model: CompiledModel, probed: Probe, sublayer: dict[str, int],
                 names: dict[str, dict[Value, Value]]) -> tuple[Program, dict[str, list[Value]]]:  # fmt: skip
    """(:func:`read_tables`'s program, each variable's values on the probe); ``names``: {variable: {canonical
    label: name}} for intermediate categorical variables whose values are to be named."""
    values: dict[str, list[Value]] = {
        "tokens": [probed.inputs[i][t] for i, t in probed.where],
        "indices": [t for _, t in probed.where],
    }
    ops = list(program.ops)
    claimed: set[tuple] = set()  # (layer, head) and (layer, units) already read as another op's
    directions: dict[str, np.ndarray] = {}  # numerical variables written by an MLP: the direction written [D]
    for i, op in enumerate(ops):
        if op.kind in ("Aggregate", "SelectorWidth"):
            j = next(j for j, o in enumerate(ops) if o.name == op.args[0])
            keys, queries = ops[j].args
            layer = sublayer[op.name] // 2
            reads = directions.get(op.args[1]) if op.kind == "Aggregate" else None
            head, table = _select_table(model, probed, layer, values[keys], values[queries], claimed, reads)
            claimed.add((layer, head))
            ops[j] = dataclasses.replace(ops[j], predicate=named_table(ops[j], table))
        elif op.kind in ("Map", "SequenceMap", "LinearSequenceMap"):
            ops[i] = _mlp_op(op, model, probed, sublayer[op.name] // 2, [values[a] for a in op.args],
                             op.name == program.output, claimed, directions, names.get(op.name, {}))  # fmt: skip
        values[op.name] = _evaluate(Program(tuple(ops[: i + 1]), op.name), probed, model) if op.is_sop else []
    return Program(tuple(ops), program.output), values


def read_tables_or_none(program: Program, model: CompiledModel, probed: Probe | None = None) -> Program | None:
    """:func:`read_tables`, or None where the structure does not fit the model."""
    try:
        return read_tables(program, model, probed)
    except ReadoutError:
        return None


def read_any_or_none(program: Program, model: CompiledModel, probed: Probe | None = None) -> Program | None:
    """Tables read by residual labels where the model has Tracr's (:mod:`readout`), else probed (here); None where
    the structure does not fit. ``probed``: the model's :func:`probe`, when already run."""
    if model.residual_labels:
        return readout.read_tables_or_none(program, model)
    return read_tables_or_none(program, model, probed)


def _evaluate(program: Program, probed: Probe, model: CompiledModel) -> list[Value]:
    """The program's output at every probed position (None where undefined); ReadoutError if it fails."""
    out: dict[int, list] = {}
    for i, _ in probed.where:
        if i not in out:
            try:
                out[i] = list(program.evaluate(probed.inputs[i], causal=model.settings.causal))
            except Exception as e:  # noqa: BLE001 - a table read from another structure may not cover a value
                raise ReadoutError(f"{program.output}: cannot evaluate ({type(e).__name__}: {e})") from None
    return [out[i][t] for i, t in probed.where]


def _representatives(values: Sequence[Value]) -> dict[Value, list[int]]:
    """Up to REPRESENTATIVES positions per value (None left out), spread evenly over the value's occurrences (the
    battery runs short inputs first: the first few would all share a length); values in order of first appearance."""
    found: dict[Value, list[int]] = {}
    for p, v in enumerate(values):
        if v is not None:
            found.setdefault(v, []).append(p)
    return {v: [ps[i] for i in np.unique(np.linspace(0, len(ps) - 1, REPRESENTATIVES).astype(int))]
            for v, ps in found.items()}  # fmt: skip


def _select_table(model: CompiledModel, probed: Probe, layer: int, keys: Sequence[Value], queries: Sequence[Value],
                  claimed: set[tuple], reads: np.ndarray | None) -> tuple[int, Table]:  # fmt: skip
    """(head, predicate table): an unclaimed head of ``layer`` whose logits are a function of the two values; of
    several, the one whose values side reads ``reads`` [D] most (a numerical Aggregate's values), else the first."""
    fits: list[tuple[float, int, Table]] = []
    for head in range(model.n_heads):
        fit = head_predicate(model, probed, layer, head, keys, queries) if (layer, head) not in claimed else None
        if fit is None:
            continue
        cols = slice(head * model.key_size, (head + 1) * model.key_size)
        ov = model.layer(layer, "attn/value/w")[:, cols] @ model.layer(layer, "attn/linear/w")[cols]  # [D, D]
        norm = max(float(np.linalg.norm(ov, 2)), 1e-12)
        read = 0.0 if reads is None else float(np.linalg.norm(reads @ ov)) / norm
        fits.append((-read, head, Table(tuple(fit[0].items()), 2)))
    if not fits:
        raise ReadoutError(f"no head of layer {layer} attends by these keys and queries")
    best = min(fits, key=lambda f: (f[0], f[1]))
    return best[1], best[2]


def head_predicate(model: CompiledModel, probed: Probe, layer: int, head: int, keys: Sequence[Value],
                   queries: Sequence[Value]) -> tuple[dict[tuple[Value, Value], bool], float] | None:  # fmt: skip
    """({(key, query): selected}, share of the logits' variance the values leave unexplained) for one head, or None
    where the two variables' values do not explain its logits (see :func:`_predicate`)."""
    key_reps, query_reps = _representatives(keys), _representatives(queries)
    if not key_reps or not query_reps:
        return None
    x = probed.streams[2 * layer]
    kp = [p for ps in key_reps.values() for p in ps]
    qp = [p for ps in query_reps.values() for p in ps]
    size = model.key_size
    cols = slice(head * size, (head + 1) * size)
    wq, bq = model.layer(layer, "attn/query/w")[:, cols], model.layer(layer, "attn/query/b")[cols]
    wk, bk = model.layer(layer, "attn/key/w")[:, cols], model.layer(layer, "attn/key/b")[cols]
    q = x[qp] @ wq + bq  # [query reps, K]
    logits = q @ (x[kp] @ wk + bk).T / np.sqrt(size)  # [query reps, key reps]
    to_bos = np.einsum("qk,qk->q", q, probed.bos[2 * layer][qp] @ wk + bk) / np.sqrt(size)
    fit = _predicate(logits, to_bos, list(key_reps.values()), list(query_reps.values()), kp, qp)
    if fit is None:
        return None
    table, unexplained = fit
    return {(k, qv): table[a][b] for a, qv in enumerate(query_reps) for b, k in enumerate(key_reps)}, unexplained


def _predicate(logits: np.ndarray, to_bos: np.ndarray, key_groups: list[list[int]], query_groups: list[list[int]],
               kp: list[int], qp: list[int]) -> tuple[list[list[bool]], float] | None:  # fmt: skip
    """(selected [query value][key value], unexplained share of the variance), or None where the logits (relative to BOS) are not a function of the two
    values (the values explain less than EXPLAINED_LOGITS of their variance) or the head does not attend to BOS."""
    scale = max(np.abs(logits).max(initial=0.0), np.abs(to_bos).max(initial=0.0))
    # Tracr's heads all attend to BOS: +half a match's logit, or -half where BOS itself matches the query (a
    # SelectorWidth's output is 0 at BOS, so a Select keyed by one matches a query 0 there); the size is what counts
    bos = np.abs(to_bos)
    if scale <= 1e-6 or np.mean(bos > TOLERANCE * scale) < EXPLAINED_LOGITS:
        return None
    relative = logits / np.maximum(bos, TOLERANCE * scale)[:, None]  # Tracr: 0 or 2 (1 in a SelectorWidth)
    k_index = {p: i for i, p in enumerate(kp)}
    q_index = {p: i for i, p in enumerate(qp)}
    out, within = [], 0.0
    for qs in query_groups:
        rows = [q_index[p] for p in qs]
        row_out = []
        for ks in key_groups:
            block = relative[np.ix_(rows, [k_index[p] for p in ks])]
            within += float(((block - block.mean()) ** 2).sum())
            row_out.append(bool(np.median(block) > SELECTED))
        out.append(row_out)
    total = float(((relative - relative.mean()) ** 2).sum())
    if within > (1 - EXPLAINED_LOGITS) * total + NOISE**2 * relative.size or not any(any(r) for r in out):
        return None  # logits the values do not explain, or a head selecting nothing: it reads other variables
    return out, within / total if total > 0 else 0.0


def _mlp_op(op: Op, model: CompiledModel, probed: Probe, layer: int, args: list[list[Value]], is_output: bool,
            claimed: set[tuple], directions: dict[str, np.ndarray], names: dict[Value, Value]) -> Op:  # fmt: skip
    """``op`` with its table (or coefficients) read from the MLP of ``layer``: per argument value, the mean of
    what the op's units write there (a compressed model's activations carry a little of everything). A numerical
    op's units are those writing one direction (two numerical Maps of one argument share a layer's MLP): the
    first such set not ``claimed`` by an earlier op; its direction goes to ``directions``. ``names``: a
    categorical op's {canonical label: value}, where known."""
    keep = [p for p in range(len(probed.where)) if all(a[p] is not None for a in args)]
    if not keep:
        raise ReadoutError(f"{op.name}: its arguments take no value on the battery")
    groups: dict[object, list[int]] = {}
    for row, p in enumerate(keep):
        groups.setdefault(args[0][p] if len(args) == 1 else (args[0][p], args[1][p]), []).append(row)
    if not all(is_literal(k) for k in groups):
        raise ReadoutError(f"{op.name}: an argument value cannot key a table")
    keys = list(groups)
    x = probed.streams[2 * layer + 1][keep]
    hidden = np.maximum(x @ model.layer(layer, "mlp/linear_1/w") + model.layer(layer, "mlp/linear_1/b"), 0)
    w2 = model.layer(layer, "mlp/linear_2/w")
    units = _units_of(hidden, list(groups.values())) & live_units(hidden, w2, x)
    if not units.any():
        raise ReadoutError(f"{op.name}: no hidden unit of layer {layer} is a function of its arguments")
    if op.encoding == "numerical" and not is_output:
        free = [u for u in by_direction(np.flatnonzero(units), w2) if (layer, tuple(u)) not in claimed]
        if not free:
            raise ReadoutError(f"{op.name}: the numerical units of layer {layer} are all read as other ops")
        claimed.add((layer, tuple(free[0])))
        units = np.isin(np.arange(len(units)), free[0])
    written = hidden[:, units] @ w2[units]  # [P', D]
    means = np.stack([written[rows].mean(axis=0) for rows in groups.values()])  # [keys, D]
    if is_output:  # the model's read-out names the values
        out = [_model_value([probed.outputs[keep[r]] for r in rows]) for rows in groups.values()]
    elif op.encoding == "numerical":
        out, directions[op.name] = coordinates(means)
    else:
        out = [names.get(label, label) for label in labels(means)]
    if op.kind == "LinearSequenceMap":
        return dataclasses.replace(op, coeffs=_coefficients(op, keys, out))
    read = Table(tuple(zip(keys, out)), len(args))  # type: ignore[arg-type]
    return dataclasses.replace(op, fn=named_table(op, read))


def _model_value(decoded: list[Value]) -> Value:
    """What the model outputs for one argument value: the most frequent decoded value (numerical: the mean)."""
    if isinstance(decoded[0], float):
        return _snap(float(np.mean(np.asarray(decoded, dtype=np.float64))))
    counts: dict[Value, int] = {}
    for v in map(_as_value, decoded):
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=counts.__getitem__)


def _as_value(decoded: object) -> Value:
    """A decoded value as a table holds it: a tuple value decodes as a list."""
    return tuple(map(_as_value, decoded)) if isinstance(decoded, list) else decoded  # type: ignore[return-value]


def live_units(hidden: np.ndarray, w2: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[M] bool: MLP units whose write varies, beside the layer's busiest unit and the residual stream's size (of
    ``hidden`` [P, M] from stream ``x`` [P, D], written by ``w2`` [M, D]). One of Tracr's units that never fires
    sits at a pre-activation of exactly 0 where it almost does, which a rotation's rounding lifts a little."""
    writes = np.ptp(hidden, axis=0) * np.linalg.norm(w2, axis=1)  # [M]
    return writes > DEAD * max(writes.max(initial=0.0), float(np.median(np.linalg.norm(x, axis=1))))


def _units_of(hidden: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """[M] bool: units that vary and whose variation the op's argument values explain (R² >= EXPLAINED)."""
    total = hidden.var(axis=0) * len(hidden)  # [M]
    within = sum(((hidden[rows] - hidden[rows].mean(axis=0)) ** 2).sum(axis=0) for rows in groups)
    varies = np.ptp(hidden, axis=0) > 1e-5 * np.maximum(1.0, np.abs(hidden).max(axis=0))
    return varies & (within <= (1 - EXPLAINED) * np.maximum(total, 1e-30))


def labels(means: np.ndarray) -> list[Value]:
    """Canonical labels of what a categorical MLP writes: 0, 1, ... per distinct output vector; None for nothing."""
    norms = np.linalg.norm(means, axis=1)
    scale = norms.max(initial=0.0)
    centres: list[np.ndarray] = []
    out: list[Value] = []
    for row, norm in zip(means, norms):
        if norm <= NOTHING * scale:
            out.append(None)  # type: ignore[arg-type]
            continue
        found = next((c for c, centre in enumerate(centres)
                      if np.linalg.norm(row - centre) <= SAME * max(norm, np.linalg.norm(centre))), None)  # fmt: skip
        if found is None:
            centres.append(row)
            found = len(centres) - 1
        out.append(found)
    return out


def by_direction(units: np.ndarray, w2: np.ndarray) -> list[list[int]]:
    """``units`` grouped by the residual direction they write (rows of ``w2`` [M, D] parallel up to sign)."""
    groups: list[tuple[np.ndarray, list[int]]] = []
    for u in units:
        row = w2[u] / max(np.linalg.norm(w2[u]), 1e-12)
        found = next((g for d, g in groups if abs(float(row @ d)) > 0.9), None)
        if found is None:
            groups.append((row, [int(u)]))
        else:
            found.append(int(u))
    return [g for _, g in groups]


def coordinates(means: np.ndarray) -> tuple[list[Value], np.ndarray]:
    """A numerical MLP's values (the coordinate of what it writes along its direction, sign mostly positive) and
    that direction [D]."""
    _, _, vt = np.linalg.svd(means.astype(np.float64), full_matrices=False)
    direction = vt[0]
    if (means @ direction).sum() < 0:
        direction = -direction
    coords = means @ direction
    return [_snap(c) for c in _merge_close(coords)], direction


def _merge_close(coords: np.ndarray) -> list[float]:
    """Coordinates within CLOSE of the largest of each other (in sorted runs) replaced by their run's mean: one
    value written from different argument values differs by rounding, or a compressed model's leakage."""
    order = np.argsort(coords)
    tolerance = CLOSE * max(float(np.abs(coords).max(initial=0.0)), 1e-12)
    out = np.array(coords, dtype=np.float64)
    run: list[int] = []
    for i in [*order, None]:
        if i is not None and (not run or coords[i] - coords[run[-1]] <= tolerance):
            run.append(int(i))
            continue
        out[run] = float(np.mean(coords[run]))
        run = [int(i)] if i is not None else []
    return [float(c) for c in out]


def _snap(x: float) -> Value:
    r = round(x, 4)
    return int(r) if r.is_integer() else r


def _coefficients(op: Op, keys: list, out: list[Value]) -> tuple[float, float]:
    """A LinearSequenceMap's (a, b) by least squares, ReadoutError unless they fit every probed value."""
    xy = np.array(keys, dtype=np.float64).reshape(len(keys), 2)
    z = np.array(out, dtype=np.float64)
    coeffs, *_ = np.linalg.lstsq(xy, z, rcond=None)
    if np.abs(xy @ coeffs - z).max(initial=0.0) > 1e-3 * max(1.0, np.abs(z).max(initial=0.0)):
        raise ReadoutError(f"{op.name}: the model's values are not a linear function of its arguments")
    return float(_snap(float(coeffs[0]))), float(_snap(float(coeffs[1])))
