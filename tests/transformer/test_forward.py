"""numpy forward pass against Tracr's own JAX model (the oracle), and input checking."""

from __future__ import annotations

import numpy as np
import pytest
from tracr.compiler import compiling

from metamodels.rasp import text
from metamodels.transformer import battery, compiler, forward
from metamodels.transformer.compiled import CompiledModel
from tests import cases


@pytest.mark.slow
@pytest.mark.parametrize("causal", [False, True])
def test_residuals_and_outputs_match_tracr_jax(causal):
    for s in cases.sampled(6, seed=0):
        model = compiler.compile_program(s.program, causal=causal)
        reference = compiling.compile_rasp_to_model(
            s.program.to_rasp(), set(model.settings.vocab), model.settings.max_seq_len, causal=causal
        )
        for xs in ([1, 2, 3], [5, 4, 3, 2, 1], [2]):
            out = reference.apply([model.settings.bos, *xs])
            ours = forward.residuals(model, forward.encode(model, xs)[None])
            np.testing.assert_allclose(ours[-1][0], np.asarray(out.residuals[-1][0]), atol=1e-4)
            assert forward.outputs_match(forward.run(model, [xs])[0], out.decoded[1:])


def test_batched_run_equals_one_by_one():
    model = compiler.compile_program(cases.sampled(1, seed=0)[0].program)
    inputs = battery.make_battery(model.settings.vocab, model.settings.max_seq_len, seed=3)
    assert forward.run(model, inputs) == [forward.run(model, [xs])[0] for xs in inputs]


def test_bad_inputs_are_reported():
    model = compiler.compile_program(text.parse_program(cases.HAND_WRITTEN["paper_sort"][0]))
    with pytest.raises(forward.InputError, match="at most 5"):
        forward.run(model, [(1, 2, 3, 4, 5, 1)])
    with pytest.raises(forward.InputError, match=r"\[9\] not in the model's vocabulary"):
        forward.run(model, [(1, 9)])
    with pytest.raises(forward.InputError, match="compiler_bos"):
        forward.run(model, [(1, "compiler_bos")])


def test_battery_is_deterministic_and_exhaustive_when_small():
    a = battery.make_battery((1, 2, 3), 4, seed=0)
    assert a == battery.make_battery((1, 2, 3), 4, seed=0) and len(set(a)) == len(a)
    full = battery.make_battery((1, 2), 3, exhaustive_up_to=100)
    assert len(full) == battery.input_space_size((1, 2), 3) == 14 and len(set(full)) == 14
    assert {len(xs) for xs in a} == {1, 2, 3, 4}


def test_weights_that_overflow_are_an_error_not_an_answer():
    """Issue 14: weights of 3e38 gave NaN activations, decoded as "1 1 1" with exit 0."""
    source, vocab, max_seq_len = cases.HAND_WRITTEN["paper_sort"]
    model = compiler.compile_program(text.parse_program(source), vocab, max_seq_len)
    huge = {k: np.where(v != 0, np.float32(3e38) * np.sign(v), 0).astype(np.float32) for k, v in model.params.items()}
    with np.errstate(all="ignore"), pytest.raises(forward.InputError, match="not finite"):
        forward.run(CompiledModel.from_config(huge, model.settings, model.config()), [(1, 2, 3)])


def test_chunks_and_the_streamed_residual_give_the_same_outputs(monkeypatch):
    source, vocab, max_seq_len = cases.HAND_WRITTEN["paper_sort"]
    model = compiler.compile_program(text.parse_program(source), vocab, max_seq_len)
    inputs = [xs for xs in battery.make_battery(vocab, max_seq_len)]
    whole = forward.run(model, inputs)
    monkeypatch.setattr(forward, "CHUNK", 7)
    assert forward.run(model, inputs) == whole
    ids = forward.encode(model, inputs[-1])[None]
    np.testing.assert_array_equal(forward.final_residual(model, ids), forward.residuals(model, ids)[-1])
