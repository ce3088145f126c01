"""Wiring: the whole program read from a model in Tracr's basis.

Oracle: Tracr's own evaluation of the original ``rasp`` expression (not our verifier), on the battery inputs
where Tracr's dynamic validation accepts it.
"""

from __future__ import annotations

import logging

import pytest
from tracr.compiler import validating

from metamodels.dataset import written
from metamodels.decompilation import readout, wiring
from metamodels.evaluation import oracle
from metamodels.rasp.program import Program
from metamodels.transformer import battery, compiler, densification, forward
from tests import cases


def _all() -> dict[str, tuple]:
    return {**cases.tracr_cases(), **cases.odd_rasp_cases()}


def _agrees_with_tracr(program: Program, sop, vocab, max_seq_len: int, causal: bool) -> int:
    """Inputs checked; fails on the first where the read program and Tracr's evaluation of ``sop`` differ."""
    checked = 0
    for xs in battery.make_battery(tuple(sorted(vocab, key=str)), max_seq_len, per_length=12, seed=6):
        try:
            if validating.dynamic_validate(sop, list(xs)):
                continue
            want = [sop(list(xs[: i + 1]))[i] for i in range(len(xs))] if causal else sop(list(xs))
        except ArithmeticError:  # the original is undefined here
            continue
        got = battery.expected_output(program.evaluate, xs, causal)
        assert all((g is None) == (w is None) for g, w in zip(got, want)), (xs, got, want)
        assert forward.outputs_match([g for g in got if g is not None], [w for w in want if w is not None]), (
            xs,
            got,
            want,
        )
        checked += 1
    return checked


def _check(name: str) -> None:
    logging.getLogger().setLevel(logging.ERROR)  # Tracr warns for each arithmetic error it skips
    sop, vocab, max_seq_len, causal = _all()[name]
    model = compiler.compile_program(sop, vocab, max_seq_len, causal=causal)
    program = wiring.read_program(model)
    assert _agrees_with_tracr(program, sop, vocab, max_seq_len, causal) > 10


@pytest.mark.parametrize("name", sorted(_all()))
def test_every_tracr_and_odd_program_is_read_whole_from_the_weights(name):
    _check(name)


@pytest.mark.parametrize("name", sorted(written.written_programs()))
def test_every_written_program_is_read_whole_from_the_weights(name):
    program, vocab, max_seq_len, causal = written.written_programs()[name]
    model = compiler.compile_program(program, vocab, max_seq_len, causal=causal)
    read = wiring.read_program(model)
    inputs = battery.make_battery(model.settings.vocab, max_seq_len, per_length=12, seed=6)
    assert oracle.same_outputs(oracle.outputs_of(read, inputs, causal), oracle.outputs_of(program, inputs, causal))


@pytest.mark.parametrize(("name", "n_ops"), [("detect_pattern_abc", 9), ("shuffle_dyck_4", 41)])
def test_a_deep_program_keeps_its_depth(name, n_ops):
    sop, vocab, max_seq_len, causal = _all()[name]
    program = wiring.read_program(compiler.compile_program(sop, vocab, max_seq_len, causal=causal))
    assert len(program.ops) == len(compiler.program_from_rasp(sop, vocab, max_seq_len).ops) == n_ops


def test_models_without_residual_labels_are_refused():
    model = compiler.compile_program(cases.tracr_cases()["sort"][0], (1, 2, 3, 4, 5), 5)
    with pytest.raises(readout.ReadoutError, match="no residual labels"):
        wiring.read_program(densification.densify(model, seed=0).model)
    assert wiring.read_program_or_none(densification.densify(model, seed=0).model) is None
