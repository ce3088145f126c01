"""The written split: each original Tracr expression and its converted program compute the same thing."""

from tracr.compiler import validating

from metamodels.dataset import written
from metamodels.transformer import battery, compiler, forward


def test_originals_and_their_conversions_agree_where_tracr_accepts_the_input():
    """Tracr's own evaluation of each expression (the oracle) against the converted program's, prefix by prefix
    when causal, on a few battery inputs per length inside Tracr's domain."""
    originals, converted = written.written_rasp(), written.written_programs()
    assert sorted(originals) == sorted(converted) and len(originals) >= 100
    for name, (sop, vocab, max_seq_len, causal) in originals.items():
        program, *settings = converted[name]
        assert settings == [vocab, max_seq_len, causal], name
        checked = 0
        for xs in battery.make_battery(vocab, max_seq_len, per_length=2, seed=5):
            try:
                if validating.dynamic_validate(sop, list(xs)):
                    continue
                want = [sop(list(xs[: i + 1]))[i] for i in range(len(xs))] if causal else sop(list(xs))
            except ArithmeticError:  # a function of the original raises here: outside its domain
                continue
            if compiler.evaluate_checked(program, xs, causal)[1]:
                continue
            got = battery.expected_output(program.evaluate, xs, causal)
            assert [g is None for g in got] == [w is None for w in want], (name, xs)
            assert forward.outputs_match([g for g in got if g is not None], [w for w in want if w is not None]), (
                name,
                xs,
            )
            checked += 1
        assert checked, name
