"""rasp-gen: determinism, op counts, filters judged independently on the battery, marginals."""

from __future__ import annotations

import collections

import pytest

from metamodels.dataset import sampling
from metamodels.rasp import canonical, functions
from tests import cases


def test_program_is_regenerable_from_seed_and_index():
    config = sampling.SamplerConfig()
    for s in cases.sampled(20, seed=0):
        again = sampling.sample(config, s.seed, s.index)
        assert again.program == s.program and again.target_ops == s.target_ops


@pytest.mark.slow
def test_op_counts_match_targets_and_cover_the_range():
    programs = cases.sampled(300, seed=0)
    assert all(s.program.n_ops == s.target_ops for s in programs)
    assert {s.program.n_ops for s in programs} == set(range(1, 11))


def test_accepted_programs_pass_every_filter():
    config = sampling.SamplerConfig()
    battery = config.battery
    for s in cases.sampled(200, seed=0):
        outputs = [s.program.evaluate(xs) for xs in battery]
        assert any(list(o) != list(xs) for o, xs in zip(outputs, battery)), "identity"
        flat = [v for o in outputs for v in o]
        assert sum(v is None for v in flat) <= config.max_undefined_fraction * len(flat)
        top = collections.Counter(v for v in flat if v is not None).most_common(1)[0][1]
        assert top <= config.max_constant_fraction * len(flat)
        assert "tokens" in {a for op in s.program.ops for a in op.args}


def test_unique_programs_have_distinct_canonical_hashes():
    programs = cases.sampled(300, seed=0)
    assert len({canonical.canonical_hash(s.program) for s in programs}) == 300


def test_marginals_follow_the_config():
    config = sampling.SamplerConfig(
        op_weights=(("Map", 1.0), ("SelectorWidth", 1.0)),
        predicate_weights=(("LT", 1.0),),
        function_weights=(("inc", 1.0),),
    )
    samples, rejected = sampling.sample_unique(config, 30, seed=5)
    h = sampling.histograms([s.program for s in samples])
    assert set(h["op kind"]) <= {"Map", "SelectorWidth"}
    assert set(h["predicate"]) == {"LT"}
    assert set(h["function"]) <= {"inc"}
    assert set(rejected) <= set(sampling.REJECTIONS)


def test_sampled_programs_avoid_known_tracr_traps():
    """No numerical Map of a mean; every Select key and numerical Aggregate input is zero at BOS."""
    for s in cases.sampled(300, seed=0):
        by_name = s.program.by_name
        numerical_in = {
            op.name for op in s.program.ops if op.kind == "Map" and s.program.encoding_of(op.args[0]) == "numerical"
        }
        for op in s.program.ops:
            if op.kind == "Map" and op.encoding == "numerical" and op.args[0] in by_name:
                assert by_name[op.args[0]].kind != "Aggregate" or by_name[op.args[0]].encoding != "numerical"
            if op.kind == "Select":
                assert op.args[0] not in numerical_in


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(min_ops=3, max_ops=2), "min_ops"),
        (dict(op_weights=(("Loop", 1.0),)), "unknown op 'Loop'"),
        (dict(predicate_weights=(("ALMOST", 1.0),)), "unknown predicate"),
        (dict(function_weights=(("nope", 1.0),)), "unknown function 'nope'"),
    ],
)
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.SamplerConfig(**kwargs)


def test_library_size_and_commutativity():
    assert 25 <= len(functions.FUNCTIONS) <= 60
    values = [-2, -1, 0, 1, 2, 3, 5]
    for f in functions.SEQUENCE_MAP_FUNCTIONS:
        symmetric = all(f.fn(x, y) == f.fn(y, x) for x in values for y in values)
        assert f.commutative == symmetric, f.name
    for f in functions.FUNCTIONS.values():
        assert functions.by_text(f.text) is f
