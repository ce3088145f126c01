"""The oracle results are judged by: a program's outputs on inputs, compared with the truth's."""

from __future__ import annotations

from collections.abc import Iterable

from metamodels.dataset import store
from metamodels.decompilation import verification
from metamodels.rasp import text
from metamodels.rasp.program import Program
from metamodels.transformer import battery, forward
from metamodels.transformer.compiled import CompiledModel


def outputs_of(program: Program, inputs: Iterable, causal: bool) -> list[list] | None:
    """The program's outputs on each input (None if evaluation fails, e.g. a function outside its domain)."""
    try:
        return [battery.expected_output(program.evaluate, xs, causal) for xs in inputs]
    except verification.EVALUATION_ERRORS:
        return None


def same_outputs(a: list[list] | None, b: list[list]) -> bool:
    """Same outputs at every position (both undefined, or both defined and equal); False if ``a`` is None."""
    return a is not None and all(
        forward.outputs_match([x for x in got if x is not None], [y for x, y in zip(got, want) if x is not None])
        and all((x is None) == (y is None) for x, y in zip(got, want))
        for got, want in zip(a, b)
    )


def differs_from_truth(program: Program, row: store.Row, model: CompiledModel) -> bool:
    """Whether ``program`` differs from the row's true program: on every input when there are few enough to verify
    exhaustively, else on a larger random battery (another seed than verification's). On a compressed model, on more
    inputs of some length than verification allows the model's own fidelity (:func:`verification.beyond_fidelity`): the model
    itself differs from its source there, and a program equal to the model is its faithful description."""
    s = model.settings
    inputs, exhaustive = verification.verification_inputs(model)
    if not exhaustive:
        inputs = battery.make_battery(s.vocab, s.max_seq_len, per_length=5000, seed=12345)
    want = outputs_of(text.parse_program(row["program"]), inputs, s.causal)
    if want is None:
        return False
    if verification.compressed_fidelity(model) is None:
        return not same_outputs(outputs_of(program, inputs, s.causal), want)
    got = [outputs_of(program, [xs], s.causal) for xs in inputs]
    wrong = [len(xs) for xs, g, w in zip(inputs, got, want) if not same_outputs(g, [w])]
    return verification.beyond_fidelity(model, map(len, inputs), wrong)
