"""The written split: each original Tracr expression and its converted program compute the same thing."""

from metamodels.dataset import written
from metamodels.evaluation import oracle
from metamodels.transformer import battery, compiler
from tests import cases


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
            want = cases.tracr_truth(sop, xs, causal)
            if want is None or compiler.evaluate_checked(program, xs, causal)[1]:
                continue
            assert oracle.same_outputs(oracle.outputs_of(program, [xs], causal), [want]), (name, xs)
            checked += 1
        assert checked, name
