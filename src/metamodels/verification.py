"""Verification: evidence of whether a program is what a compiled model computes.

Two independent verdicts:

1. **Behaviour.** Run the program (RASP evaluation) and the model (numpy forward
   pass) on an input set — every sequence of every length when that is at most
   ``max_inputs``, otherwise random sequences of every length plus edge cases —
   and compare position by position. Positions where the program is undefined
   (None) are counted separately, never as agreement; inputs outside the
   program's Tracr-compilable domain (Tracr's dynamic validation fails) are
   counted and skipped.
2. **Weights.** Recompile the program with the model's settings and look for
   permutations of residual directions, MLP hidden units and heads (and any
   basis change inside a head: heads are compared by their QK and OV circuits)
   that make the two models' weights equal. Sound but incomplete: "match" is a
   proof of equality up to those symmetries; "no match found" is not a proof of
   difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

import numpy as np

from metamodels import battery, compiler, forward, residual_basis
from metamodels.compiled import CompiledModel, Value
from metamodels.rasp.program import Program

Verdict = Literal["equivalent", "agrees_where_defined", "refuted"]
# Raised by a program's own functions on values they do not accept; the program then fails to describe the model.
EVALUATION_ERRORS = (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError)


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

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def holds(self, min_defined: float = 0.5) -> bool:
        """Not refuted, defined on at least ``min_defined`` of the compared positions, and compared
        on inputs of at least two lengths (when there are two).

        A program undefined (None) almost everywhere agrees with any model
        vacuously; 0.5 is the sampler's own bar for a non-trivial program. So does
        one outside Tracr's domain on all but the shortest inputs (a categorical
        Aggregate of a selector that is wider from length 2 on: found on a causal model).
        """
        if self.verdict == "refuted" or self.compared_lengths < min(2, self.input_lengths):
            return False
        total = self.compared_positions + self.undefined_positions
        return total > 0 and self.compared_positions / total >= min_defined


def verification_inputs(model: CompiledModel, max_inputs: int = 100_000, seed: int = 0) -> tuple[list[tuple], bool]:
    """(inputs, exhaustive): every sequence if there are at most ``max_inputs``, else a random set of that size."""
    vocab, n = model.settings.vocab, model.settings.max_seq_len
    if battery.input_space_size(vocab, n) <= max_inputs:
        return battery.make_battery(vocab, n, exhaustive_up_to=max_inputs), True
    per_length = max(1, (max_inputs - 6 * n) // n)
    return battery.make_battery(vocab, n, per_length=min(per_length, 2000), seed=seed), False


def verify(
    program: Program,
    model: CompiledModel,
    *,
    max_inputs: int = 100_000,
    seed: int = 0,
    weights: bool = True,
    n_counterexamples: int = 5,
) -> VerificationReport:
    """Check ``program`` against ``model`` (see module docstring)."""
    inputs, exhaustive = verification_inputs(model, max_inputs, seed)
    outputs = forward.run(model, inputs)
    n = model.settings.max_seq_len
    agree, defined = np.zeros(n), np.zeros(n)
    outside = undefined = disagreeing = 0
    counterexamples: list[Counterexample] = []
    compared_lengths: set[int] = set()
    for xs, got in zip(inputs, outputs):
        try:
            want, valid = compiler.evaluate_validated(program, xs, model.settings.causal)
        except EVALUATION_ERRORS as e:  # e.g. a numeric function applied to string values: a wrong program
            disagreeing += len(xs)
            if len(counterexamples) < n_counterexamples:
                counterexamples.append(Counterexample(tuple(xs), tuple(got), (f"error: {type(e).__name__}: {e}",)))
            continue
        if not valid:
            outside += 1
            continue
        wrong = False
        for i, w in enumerate(want):
            if w is None:
                undefined += 1
                continue
            defined[i] += 1
            compared_lengths.add(len(xs))
            if forward.outputs_match([got[i]], [w]):
                agree[i] += 1
            else:
                disagreeing += 1
                wrong = True
        if wrong and len(counterexamples) < n_counterexamples:
            counterexamples.append(Counterexample(tuple(xs), tuple(got), tuple(want)))
    verdict: Verdict = "refuted" if disagreeing else ("agrees_where_defined" if undefined else "equivalent")
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
        input_lengths=len({len(xs) for xs in inputs}),
        compared_lengths=len(compared_lengths),
    )


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
