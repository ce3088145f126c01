"""Verification: evidence of whether a program is what a compiled model computes.

Two independent verdicts:

1. **Behaviour.** Run the program (RASP evaluation) and the model (numpy forward
   pass) on an input set — every sequence of every length when that is at most
   ``max_inputs``, otherwise random sequences of every length plus edge cases —
   and compare position by position. Positions where the program is undefined
   (None) are counted separately, never as agreement. An input on which Tracr's
   dynamic validation rejects the program (a selector that makes a categorical
   Aggregate average different values; a numerical Aggregate of values outside
   {0, 1} is not rejected here: its mean is compared like any output, and Tracr
   compiles no such Aggregate) *refutes* it where the model is itself
   well defined there (every categorical variable one-hot in the model's
   residual stream: the model's own program was valid there); where the model
   is undefined too, or cannot be read (no residual labels), the input is
   counted as outside the domain and gives no evidence either way. Likewise a
   position where the program is undefined (None) refutes it on an input where
   the model is well defined (a well-defined Tracr model has no None anywhere:
   None is an empty categorical block). On a model without residual labels a
   None refutes where the model's read-out decides a value, unless RASP makes
   it itself (an Aggregate that selects nothing: Tracr's model then decodes
   something although its program is undefined); a table's empty entry is the
   program's own claim and refutes.
   The verdict needs evidence: see :func:`verdict_of` (the README states the rule).
2. **Weights.** Recompile the program with the model's settings and look for
   permutations of residual directions, MLP hidden units and heads (and any
   basis change inside a head: heads are compared by their QK and OV circuits)
   that make the two models' weights equal. Sound but incomplete: "match" is a
   proof of equality up to those symmetries; "no match found" is not a proof of
   difference.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from tqdm import tqdm

from metamodels import options
from metamodels.errors import MetamodelsError
from metamodels.rasp.program import Program
from metamodels.rasp.tables import Table
from metamodels.transformer import battery, compiler, forward, residual_basis
from metamodels.transformer.compiled import CompiledModel, Value

Verdict = Literal["equivalent", "agrees_where_defined", "agrees_at_fidelity", "inconclusive", "refuted"]
MIN_DEFINED = 0.5  # of the positions inside the domain, the program must be defined on at least this fraction
MIN_PER_LENGTH = 20  # inputs inside the domain needed at every input length (or half of them, if fewer)
# Raised by a program's own functions on values they do not accept; the program then fails to describe the model.
EVALUATION_ERRORS = (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError)


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """How :func:`verify` chooses its inputs and how long it may compare (``metamodels verify``'s options)."""

    max_inputs: int = battery.inputs_option()
    seed: int = options.option(0, help="seed of the random inputs")
    seconds: float | None = options.option(None, help="stop comparing after this long (then inconclusive unless "
                                           "every length already has its evidence)")  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_inputs < 1:
            raise MetamodelsError(f"--inputs must be at least 1, got {self.max_inputs}")
        if self.seconds is not None and not self.seconds >= 0:
            raise MetamodelsError(f"--seconds must not be negative, got {self.seconds}")


@dataclasses.dataclass(frozen=True)
class Counterexample:
    """An input on which the model and the program disagree at a defined position."""

    input: tuple[Value, ...]
    model_output: tuple[Value, ...]
    program_output: tuple[Value, ...]


@dataclasses.dataclass(frozen=True)
class WeightCertificate:
    """Result of the recompile-and-compare check; ``match`` is None when it could not be run."""

    match: bool | None
    reason: str


@dataclasses.dataclass(frozen=True)
class VerificationReport:
    """Behavioural verdict with its evidence, and the weight certificate.

    ``agreement_by_position[i]`` is the fraction of inputs long enough to have
    position i, and defined there, on which model and program agree.
    """

    verdict: Verdict
    n_inputs: int
    exhaustive: bool
    outside_domain: int
    compared_positions: int
    undefined_positions: int
    disagreeing_positions: int
    agreement_by_position: tuple[float, ...]
    counterexamples: tuple[Counterexample, ...]
    weights: WeightCertificate | None
    input_lengths: int = 0  # distinct input lengths checked
    compared_lengths: int = 0  # ... of which some input was inside the program's domain and defined
    refuted_outside_domain: int = 0  # inputs outside the program's domain where the model is well defined
    shortfall: str = ""  # why the verdict is inconclusive ("" otherwise)
    wrong_inputs: int = 0  # inputs with a disagreement (or an evaluation failure, or refuted outside the domain)
    fidelity: float | None = None  # a compressed model's own fidelity to its source, when the verdict allowed for it
    allowed_inputs: int = 0  # wrong inputs allowed for that fidelity, summed over lengths (see fidelity_allowance)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The report as ``metamodels verify`` prints it."""
        how = "all" if self.exhaustive else "random"
        lines = [
            f"verdict: {self.verdict} ({self.n_inputs} inputs, {how}; {self.outside_domain} outside the program's domain)",
            f"positions: {self.compared_positions} compared, {self.disagreeing_positions} disagree, "
            f"{self.undefined_positions} undefined in the program",
            "agreement by position: " + " ".join(f"{a:.3f}" for a in self.agreement_by_position),
        ]
        lines += [f"  counterexample {list(c.input)}: model {list(c.model_output)}, program {list(c.program_output)}"
                  for c in self.counterexamples]  # fmt: skip
        if self.weights is not None:
            match = {True: "match", False: "no match", None: "not checked"}[self.weights.match]
            lines.append(f"weights: {match} ({self.weights.reason})")
        if self.shortfall:
            lines.append(f"inconclusive: {self.shortfall}")
        if self.fidelity is not None:
            lines.append(f"compressed model (fidelity {self.fidelity:.4f} to its source): the program disagrees on "
                         f"{self.wrong_inputs} of {self.n_inputs} inputs, allowed {self.allowed_inputs} (at each length its own share)")
        return "\n".join(lines)

    def holds(self) -> bool:
        """The program verifies: "equivalent" or "agrees_where_defined" (not refuted, and enough evidence), or, on a
        compressed model, "agrees_at_fidelity" (see :func:`fidelity_allowance`)."""
        return self.verdict in ("equivalent", "agrees_where_defined", "agrees_at_fidelity")


def _round_robin(inputs: list[tuple]) -> list[tuple]:
    """``inputs`` reordered to take one of each length in turn (each length's own order kept)."""
    by_length: dict[int, list[tuple]] = {}
    for xs in inputs:
        by_length.setdefault(len(xs), []).append(xs)
    queues = list(by_length.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _run_in_chunks(model: CompiledModel, inputs: list[tuple], chunk: int = 1024):
    """(input, model output, model well defined, read-out decided per position) one at a time; the model runs a
    chunk ahead, so a deadline bounds the forward passes too."""
    for start in range(0, len(inputs), chunk):
        part = inputs[start : start + chunk]
        yield from zip(part, *forward.run_checked(model, part))


def verification_inputs(
    model: CompiledModel, max_inputs: int = battery.MAX_EXHAUSTIVE, seed: int = 0
) -> tuple[list[tuple], bool]:
    """(inputs, exhaustive): every sequence if there are at most ``max_inputs``, else a random set of that size."""
    vocab, n = model.settings.vocab, model.settings.max_seq_len
    if battery.input_space_size(vocab, n) <= max_inputs:
        return battery.make_battery(vocab, n, exhaustive_up_to=max_inputs), True
    per_length = min(2000, max(1, (max_inputs - 6 * n) // n))
    inputs = battery.make_battery(vocab, n, per_length=per_length, seed=seed)
    # Plus sequences of distinct tokens: random ones of length 30 over 60 tokens almost never are, and that is
    # the whole domain of a sort or a rank (Tracr's categorical Aggregate): without them no evidence there.
    rng, values, seen = np.random.default_rng(seed + 1), list(vocab), set(inputs)
    distinct = [tuple(values[i] for i in rng.permutation(len(values))[:length])
                for length in range(2, min(n, len(values)) + 1) for _ in range(min(per_length, MIN_PER_LENGTH * 5))]  # fmt: skip
    return inputs + [xs for xs in dict.fromkeys(distinct) if xs not in seen], False


def verify(
    program: Program,
    model: CompiledModel,
    *,
    max_inputs: int = VerifyConfig.max_inputs,
    seed: int = VerifyConfig.seed,
    weights: bool = True,
    n_counterexamples: int = 5,
    seconds: float | None = VerifyConfig.seconds,
    progress: bool = False,
) -> VerificationReport:
    """Check ``program`` against ``model`` (see module docstring).

    ``seconds``: stop comparing after this long; the inputs not reached count as checked with nothing inside
    the domain, so a cut-short check is ``inconclusive`` unless every length already has its evidence.
    """
    VerifyConfig(max_inputs, seed, seconds)  # the arguments are valid
    inputs, exhaustive = verification_inputs(model, max_inputs, seed)
    inputs = _round_robin(inputs)  # a check cut short by ``seconds`` still has evidence at every length
    deadline = None if seconds is None else time.monotonic() + seconds
    bar = tqdm(total=len(inputs), disable=not progress, desc="verify", unit="input", leave=False)
    n = model.settings.max_seq_len
    agree, defined = np.zeros(n), np.zeros(n)
    outside = undefined = disagreeing = refuted_outside = 0
    counterexamples: list[Counterexample] = []
    compared_lengths: set[int] = set()
    checked_lengths: list[int] = []  # the length of every input compared
    wrong_lengths: list[int] = []  # ... and of every input with a disagreement
    filled = _with_filled_tables(program)
    per_length: dict[int, list[int]] = {}  # length -> [inputs checked, inputs inside the program's domain]
    blind: collections.Counter = collections.Counter()  # length -> positions it leaves undefined, the model decides
    for xs in inputs:
        per_length.setdefault(len(xs), [0, 0])[0] += 1
    for xs, got, clean, decided in _run_in_chunks(model, inputs):
        if deadline is not None and time.monotonic() > deadline:
            exhaustive = False  # cut short: the rest were not compared
            break
        bar.update(1)
        checked_lengths.append(len(xs))
        seen = per_length[len(xs)]
        try:
            want, failures = compiler.evaluate_checked(program, xs, model.settings.causal)
        except EVALUATION_ERRORS as e:  # e.g. a numeric function applied to string values: a wrong program
            disagreeing += len(xs)
            wrong_lengths.append(len(xs))
            if len(counterexamples) < n_counterexamples:
                counterexamples.append(Counterexample(tuple(xs), tuple(got), (f"error: {type(e).__name__}: {e}",)))
            continue
        # A numerical Aggregate of values outside {0, 1} is a mean, compared like any other output: it does not put
        # the input outside the program's domain (a candidate could otherwise hide almost every input there).
        failures = tuple(f for f in failures if not f.reason.startswith(compiler.NUMERICAL_AGGREGATION))
        if failures:
            if clean and any(f.reason.startswith(compiler.AGGREGATION) for f in failures):
                refuted_outside += 1  # the model is well defined here and the program is not: not its program
                disagreeing += len(xs)
                wrong_lengths.append(len(xs))
                if len(counterexamples) < n_counterexamples:
                    reason = (f"outside Tracr's domain: {failures[0]}",)
                    counterexamples.append(Counterexample(tuple(xs), tuple(got), reason))
            else:
                outside += 1
            continue
        seen[1] += 1
        wrong = False
        own: list[bool] | None = None  # per position: a None of the program's own RASP semantics (computed on demand)
        for i, w in enumerate(want):
            # The model's own program is defined everywhere here: this one is not it. Where the model's variables
            # cannot be read (clean is None), a None refutes where the read-out decides a value, unless RASP itself
            # makes it (an Aggregate that selects nothing: Tracr's model decodes something there although its
            # program is undefined); a None from a table's empty entry is the program's claim, and it is wrong.
            if w is None:
                if clean is None and decided[i]:
                    own = own if own is not None else _own_nones(filled, xs, model.settings.causal, len(want))
                    refutes = not own[i]
                else:
                    refutes = bool(clean)
                if refutes:
                    disagreeing += 1
                    wrong = True
                else:
                    undefined += 1
                    blind[len(xs)] += clean is None and bool(decided[i])  # labels show the model's own None
                continue
            defined[i] += 1
            compared_lengths.add(len(xs))
            if forward.outputs_match([got[i]], [w]):
                agree[i] += 1
            else:
                disagreeing += 1
                wrong = True
        if wrong:
            wrong_lengths.append(len(xs))
        if wrong and len(counterexamples) < n_counterexamples:
            counterexamples.append(Counterexample(tuple(xs), tuple(got), tuple(want)))
    bar.close()
    fidelity = compressed_fidelity(model)
    allowed = allowance_by_length(model, checked_lengths)
    refuting = disagreeing if _exceeds(allowed, wrong_lengths) else 0
    blind_lengths = sorted(n for n, k in blind.items() if k and n not in compared_lengths and n > 1)
    verdict, shortfall = verdict_of(refuting, int(defined.sum()), undefined, per_length, len(compared_lengths),
                                    blind_lengths)  # fmt: skip
    if disagreeing and verdict in ("equivalent", "agrees_where_defined"):  # within the compressed model's allowance
        verdict = "agrees_at_fidelity"
    return VerificationReport(
        verdict=verdict,
        n_inputs=len(inputs),
        exhaustive=exhaustive,
        outside_domain=outside,
        compared_positions=int(defined.sum()),
        undefined_positions=undefined,
        disagreeing_positions=disagreeing,
        agreement_by_position=tuple(float(a / d) if d else float("nan") for a, d in zip(agree, defined)),
        counterexamples=tuple(counterexamples),
        weights=compare_weights(program, model) if weights else None,
        input_lengths=len(per_length),
        compared_lengths=len(compared_lengths),
        refuted_outside_domain=refuted_outside,
        shortfall=shortfall,
        wrong_inputs=len(wrong_lengths),
        fidelity=fidelity,
        allowed_inputs=sum(allowed.values()),
    )


NO_VALUE = "<no value>"  # stands in for a table's empty output when telling where a program's None comes from


def _with_filled_tables(program: object) -> Program | None:
    """``program`` with every function table's empty (None) output replaced by :data:`NO_VALUE`, or None when no
    table has one (a Tracr expression has no tables). A None that the filled program still gives is RASP's own (an
    Aggregate that selects nothing)."""
    if not isinstance(program, Program):
        return None
    ops, filled = [], False
    for op in program.ops:
        if isinstance(op.fn, Table) and any(v is None for _, v in op.fn.entries):
            entries = tuple((k, NO_VALUE if v is None else v) for k, v in op.fn.entries)
            op, filled = dataclasses.replace(op, fn=Table(entries, op.fn.arity)), True
        ops.append(op)
    return dataclasses.replace(program, ops=tuple(ops)) if filled else None


def _own_nones(filled: Program | None, xs: tuple, causal: bool, n: int) -> list[bool]:
    """Per position of ``xs`` (``n`` of them), whether the program's None there is RASP's own rather than a table's
    (``filled``: :func:`_with_filled_tables`' program; a filled value that makes the program fail is a table's)."""
    if filled is None:
        return [True] * n
    try:
        return [v is None for v in compiler.evaluate_checked(filled, xs, causal)[0]]
    except EVALUATION_ERRORS:
        return [False] * n


def compressed_fidelity(model: CompiledModel) -> float | None:
    """The fidelity a densified model's file records to its source, when below 1 (None otherwise)."""
    recorded = (model.densified or {}).get("fidelity")
    return float(recorded) if recorded is not None and recorded < 1.0 else None


def error_rates(model: CompiledModel) -> dict[int, float] | None:
    """Per input length 1..max_seq_len, the share of inputs on which a compressed model decodes unlike its source,
    as its file records it (per length where recorded, else its overall fidelity); None for an uncompressed model."""
    fidelity = compressed_fidelity(model)
    if fidelity is None:
        return None
    by_length = (model.densified or {}).get("fidelity_by_length") or {}
    return {n: 1.0 - float(by_length.get(str(n), fidelity)) for n in range(1, model.settings.max_seq_len + 1)}


def beyond_fidelity(model: CompiledModel, lengths: Iterable[int], wrong: Iterable[int]) -> bool:
    """Whether a program checked against ``model`` on inputs of these ``lengths`` (one per input) and wrong on inputs
    of the lengths ``wrong`` (one per wrong input) is refuted: on a compressed model, when it is wrong on more inputs
    of some length than :func:`fidelity_allowance` allows there; on any other model, when it is wrong anywhere."""
    return _exceeds(allowance_by_length(model, lengths), wrong)


def allowance_by_length(model: CompiledModel, lengths: Iterable[int]) -> dict[int, int]:
    """:func:`fidelity_allowance` for ``model``'s recorded error rates; none at all ({}) on an uncompressed model."""
    rates = error_rates(model)
    return {} if rates is None else fidelity_allowance(rates, lengths)


def _exceeds(allowed: Mapping[int, int], wrong: Iterable[int]) -> bool:
    """Whether the wrong inputs (their lengths, one each) are more than ``allowed`` at some length (0 where absent)."""
    return any(count > allowed.get(n, 0) for n, count in collections.Counter(wrong).items())


def fidelity_allowance(rates: Mapping[int, float], lengths: Iterable[int]) -> dict[int, int]:
    """Per input length, the inputs on which a program may disagree with a compressed model and still agree at
    fidelity, when the inputs checked have these ``lengths`` (one per input) and the model decodes unlike its source
    at ``rates`` by length.

    At each length the model's source disagrees with the model on about E = rate x inputs of it: the allowance is E
    plus three binomial standard deviations (at most sqrt(E); E floored at one input). A program that differs from
    the model on more inputs of some length than that is refuted; one that differs on fewer cannot be told apart
    from the source by behaviour (the README states this rule). By length, because a model's errors are: a short
    input it gets right does not lend its allowance to the long ones it gets wrong.
    """
    counts = collections.Counter(lengths)
    return {n: int(np.floor(rates[n] * k + 3.0 * np.sqrt(max(rates[n] * k, 1.0)))) for n, k in counts.items()}


def verdict_of(
    disagreeing: int,
    compared: int,
    undefined: int,
    per_length: dict[int, list[int]],
    compared_lengths: int,
    blind_lengths: Sequence[int] = (),
) -> tuple[Verdict, str]:
    """(verdict, why it is inconclusive) from the counts of :func:`verify`.

    The rule: any disagreement refutes. Otherwise the program verifies only with evidence at every scale:
    (1) at every input length checked, at least ``min(MIN_PER_LENGTH, ceil(half))`` of that length's inputs
    are inside the program's domain (a selector widened so that the program is invalid on almost every
    input leaves a few short inputs to agree on: that is not evidence); (2) the program is defined on at
    least ``MIN_DEFINED`` of the positions compared (a program undefined almost everywhere agrees
    vacuously); (3) defined positions were compared at two input lengths at least (when two were checked);
    (4) no input length past 1 is ``blind``: one where the program defines no position and a model without
    residual labels decides some (a Select read as selecting nothing at some lengths leaves the program
    undefined, RASP's own None, exactly where it would disagree; with labels the model's own variables show
    whether it is defined there). Length 1 is exempt: a Select of another position (the previous or next
    token) is rightly empty there, and 5 of 121 densified lib and written programs lost their verification to
    it; a wrong program that differs from the model only at length 1 is the hole this leaves.
    """
    if disagreeing:
        return "refuted", ""
    if blind_lengths:
        shown = ", ".join(map(str, blind_lengths))
        return "inconclusive", f"the program is undefined at every position of length {shown}, where the model decides"
    thin = [
        f"length {n}: {inside} of {total} inputs"
        for n, (total, inside) in sorted(per_length.items())
        if inside < min(MIN_PER_LENGTH, -(-total // 2))
    ]
    if thin:
        return "inconclusive", "too few inputs inside the program's domain (" + "; ".join(thin) + ")"
    if compared + undefined == 0 or compared / (compared + undefined) < MIN_DEFINED:
        share = f"{compared} of {compared + undefined}"
        return "inconclusive", f"the program is defined on {share} positions (less than {MIN_DEFINED:.0%})"
    if compared_lengths < min(2, len(per_length)):
        return "inconclusive", "defined positions were compared at one input length only"
    return ("agrees_where_defined" if undefined else "equivalent"), ""


# ----------------------------------------------------------------------------- weights


def compare_weights(program: Program, model: CompiledModel) -> WeightCertificate:
    """Recompile ``program`` with ``model``'s settings and compare weights up to symmetries."""
    other = compiler.try_compile(program, model.settings)
    if isinstance(other, compiler.CompileFailure):
        return WeightCertificate(None, f"the program does not compile: {other}")
    if not model.residual_labels:  # not Tracr's basis (densified, or from elsewhere)
        return _compare_canonical(model, other)
    shape = lambda m: (m.d_model, m.n_layers, m.mlp_hidden, m.input_values, m.output_values)  # noqa: E731
    if shape(other) != shape(model):
        return WeightCertificate(
            False, f"architectures differ: (d_model, layers, mlp_hidden) {shape(model)[:3]} vs {shape(other)[:3]}"
        )
    permutation = _match_residual(model, other)
    if permutation is None:
        return WeightCertificate(False, "no residual permutation matches the two models' roles")
    for layer in range(model.n_layers):
        if not _same_mlp(model, other, layer, permutation) or not _same_heads(model, other, layer, permutation):
            return WeightCertificate(False, f"layer {layer} differs under the best residual matching")
    a, b = model.params, other.params
    for key in ("token_embed/embeddings", "pos_embed/embeddings"):
        if not np.allclose(a[key], b[key][:, permutation], atol=1e-5):
            return WeightCertificate(False, f"{key} differs under the best residual matching")
    if not np.allclose(a["unembed"], b["unembed"][permutation], atol=1e-5):
        return WeightCertificate(False, "the read-out differs under the best residual matching")
    return WeightCertificate(True, "weights equal up to residual, hidden-unit and head permutations")


def _compare_canonical(model: CompiledModel, other: CompiledModel) -> WeightCertificate:
    """A model in another residual basis: equal canonical weights (:mod:`residual_basis`) prove equality up to a
    rotation; a compressed model or another hidden-unit order cannot be compared this way (None)."""
    a, b = residual_basis.canonicalize(model.params), residual_basis.canonicalize(other.params)
    same = a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and np.allclose(a[k], b[k], atol=1e-4 * max(1.0, float(np.abs(b[k]).max(initial=0))))
        for k in a
    )
    if same:
        return WeightCertificate(True, "weights equal up to a rotation of the residual stream")
    return WeightCertificate(
        None, "the model is not in Tracr's residual basis and its weights are not a rotation of the recompiled "
        "program's (compressed, or units permuted); behaviour decides",
    )  # fmt: skip


def _digest(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _circuits(model: CompiledModel, layer: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per head: (QK [D, D], OV [D, D]), invariant to any basis change inside the head."""
    k, out = model.key_size, []
    for h in range(model.n_heads):
        cols = slice(h * k, (h + 1) * k)
        qk = model.layer(layer, "attn/query/w")[:, cols] @ model.layer(layer, "attn/key/w")[:, cols].T
        ov = model.layer(layer, "attn/value/w")[:, cols] @ model.layer(layer, "attn/linear/w")[cols, :]
        out.append((qk, ov))
    return out


def _signatures(model: CompiledModel, rounds: int = 4) -> list[str]:
    """Colour refinement of residual directions by how every weight touches them."""
    p = model.params
    sig = [_digest(np.round(p["token_embed/embeddings"][:, d], 4), np.round(p["pos_embed/embeddings"][:, d], 4), np.round(p["unembed"][d], 4)) for d in range(model.d_model)]  # fmt: skip
    circuits = [_circuits(model, layer) for layer in range(model.n_layers)]
    for _ in range(rounds):
        new = []
        for d in range(model.d_model):
            touches: list[tuple] = []
            for layer in range(model.n_layers):
                w1, w2 = model.layer(layer, "mlp/linear_1/w"), model.layer(layer, "mlp/linear_2/w")
                for j in np.flatnonzero(np.abs(w1[d]) > 1e-6):
                    unit = tuple(
                        sorted((sig[e], round(float(w1[e, j]), 4)) for e in np.flatnonzero(np.abs(w1[:, j]) > 1e-6))
                    )
                    touches.append((layer, "in", unit, round(float(w1[d, j]), 4)))
                for j in np.flatnonzero(np.abs(w2[:, d]) > 1e-6):
                    unit = tuple(
                        sorted((sig[e], round(float(w1[e, j]), 4)) for e in np.flatnonzero(np.abs(w1[:, j]) > 1e-6))
                    )
                    touches.append((layer, "out", unit, round(float(w2[j, d]), 4)))
                for qk, ov in circuits[layer]:
                    for name, m in (("qk", qk), ("ov", ov)):
                        row = tuple(
                            sorted((sig[e], round(float(m[d, e]), 3)) for e in np.flatnonzero(np.abs(m[d]) > 1e-6))
                        )
                        col = tuple(
                            sorted((sig[e], round(float(m[e, d]), 3)) for e in np.flatnonzero(np.abs(m[:, d]) > 1e-6))
                        )
                        if row or col:
                            touches.append((layer, name, row, col))
            new.append(_digest(sig[d], sorted(touches)))
        sig = new
    return sig


def _match_residual(a: CompiledModel, b: CompiledModel) -> np.ndarray | None:
    """perm with b's direction perm[i] playing a's direction i, matched by signature (None if impossible)."""
    sa, sb = _signatures(a), _signatures(b)
    if sorted(sa) != sorted(sb):
        return None
    pool: dict[str, list[int]] = {}
    for j, s in enumerate(sb):
        pool.setdefault(s, []).append(j)
    return np.array([pool[s].pop(0) for s in sa])


def _same_mlp(a: CompiledModel, b: CompiledModel, layer: int, perm: np.ndarray) -> bool:
    def units(m: CompiledModel, rows: np.ndarray | slice) -> list[tuple]:
        w1, b1 = m.layer(layer, "mlp/linear_1/w")[rows], m.layer(layer, "mlp/linear_1/b")
        w2 = m.layer(layer, "mlp/linear_2/w")[:, rows]
        return sorted(tuple(np.round(np.concatenate([w1[:, j], [b1[j]], w2[j]]), 4)) for j in range(w1.shape[1]))

    same_bias = np.allclose(a.layer(layer, "mlp/linear_2/b"), b.layer(layer, "mlp/linear_2/b")[perm], atol=1e-5)
    return same_bias and units(a, slice(None)) == units(b, perm)


def _same_heads(a: CompiledModel, b: CompiledModel, layer: int, perm: np.ndarray) -> bool:
    def heads(m: CompiledModel, p: np.ndarray | slice) -> list[tuple]:
        return sorted(
            (tuple(np.round(qk[p][:, p], 3).ravel()), tuple(np.round(ov[p][:, p], 4).ravel()))
            for qk, ov in _circuits(m, layer)
        )

    return heads(a, slice(None)) == heads(b, perm)
