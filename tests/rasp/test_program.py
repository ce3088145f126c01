"""Program model: invariants, and conversion to and from Tracr's rasp (rasp.evaluate is the oracle)."""

from __future__ import annotations

import pytest
from tracr.compiler import lib
from tracr.rasp import rasp

from metamodels.rasp import program as program_module
from metamodels.rasp import text
from metamodels.rasp.program import Op, Program
from metamodels.transformer.compiler import program_from_rasp
from tests import cases


def test_rasp_round_trip_on_sampled_programs():
    """Same ops and output; the order is a dependency-first order (rasp keeps no definition order)."""
    for s in cases.sampled(200, seed=0):
        back = program_from_rasp(s.program.to_rasp())
        assert set(back.ops) == set(s.program.ops) and back.output == s.program.output


def test_evaluate_is_rasp_evaluate():
    for s in cases.sampled(50, seed=0):
        for xs in ([1, 2, 3], [5, 5, 1, 2, 4]):
            assert s.program.evaluate(xs) == rasp.evaluate(s.program.to_rasp(), xs)


def test_program_from_rasp_reads_lambdas_from_source_and_keeps_names():
    sop = rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens)).named("is_one")
    frac = lib.make_frac_prevs(sop)
    program = program_from_rasp(frac)
    assert sorted(op.name for op in program.ops) == ["frac_prevs", "is_one", "select"]
    assert program.by_name["is_one"].fn == "is_one"
    assert program.evaluate([1, 2, 1]) == rasp.evaluate(frac, [1, 2, 1])


def test_functions_outside_the_library_are_named_in_the_error():
    sop = rasp.Map(lambda x: x**7 - 3, rasp.tokens).named("weird")
    with pytest.raises(ValueError, match="weird: its function is not in the library"):
        program_from_rasp(sop)


def test_map_chains_are_not_merged():
    """Tracr's Map(simplify=True) would fuse Map(f, Map(g, x)); ours keeps both ops."""
    p = text.parse_program("a = Map(lambda x: x + 1, tokens)\nb = Map(lambda x: x - 1, a)\nreturn b\n")
    assert len(program_from_rasp(p.to_rasp()).ops) == 2


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (dict(name="a", kind="Map", args=("tokens", "tokens"), fn="inc"), "takes 1 arguments"),
        (dict(name="a", kind="Map", args=("tokens",), fn="add"), "wrong arity"),
        (dict(name="a", kind="Map", args=("tokens",)), "function is required"),
        (dict(name="a", kind="Select", args=("tokens", "tokens"), predicate="LT"), "encoding must be None"),
        (dict(name="a", kind="Loop", args=("tokens",)), "unknown op kind"),
        (dict(name="a", kind="Map", args=("tokens",), fn="inc", encoding="fuzzy"), "unknown encoding"),
    ],
)
def test_op_invariants(op, message):
    with pytest.raises(ValueError, match=message):
        Op(**op)


def test_without_dead_code_and_n_ops():
    p = text.parse_program(
        "a = Map(lambda x: x + 1, tokens)\ndead = Map(lambda x: x, tokens)\ns = Select(a, tokens, EQ)\nw = SelectorWidth(s)\nreturn w\n"
    )
    assert p.n_ops == 3 and p.without_dead_code().n_ops == 2
    assert isinstance(p.without_dead_code(), Program)
    assert program_module.INPUTS == ("tokens", "indices")
