"""Readable text: print -> parse is the identity; errors carry line and column."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from metamodels.rasp import text
from tests import cases


@pytest.mark.slow
def test_round_trip_on_500_sampled_programs():
    for s in cases.sampled(500, seed=0):
        printed = text.format_program(s.program)
        assert text.parse_program(printed) == s.program
        assert text.format_program(text.parse_program(printed)) == printed


@pytest.mark.parametrize("name", sorted(cases.HAND_WRITTEN))
def test_round_trip_on_hand_written_programs(name):
    program = text.parse_program(cases.HAND_WRITTEN[name][0])
    assert text.parse_program(text.format_program(program)) == program


def test_paper_spellings_are_accepted():
    source = """input: tokens, indices
# Figure 11 style
select_1 = Select(tokens, tokens, predicate=Comparison.GEQ)
selector_width_1 = rasp.SelectorWidth(select_1)
sequence_map_1 = SequenceMap(lambda x, y: x*(y+x) % 5, selector_width_1, tokens)
agg = categorical(Aggregate(select_1, sequence_map_1, default=None))
return agg
"""
    program = text.parse_program(source)
    assert [op.kind for op in program.ops] == ["Select", "SelectorWidth", "SequenceMap", "Aggregate"]
    assert program.by_name["sequence_map_1"].fn == "x_times_x_plus_y_mod5"
    assert program.by_name["select_1"].predicate == "GEQ"


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("a = Map(lambda x: x +, tokens)\nreturn a\n", 1, 22, "invalid syntax"),
        ("a = Map(lambda x: x + 1, tokens)\nb = Map(lambda x: x + 99, a)\nreturn b\n", 2, 9, "not in the library"),
        ("a = Map(lambda x: x + 1, tokenz)\nreturn a\n", 1, 26, "'tokenz' is not defined"),
        ("a = Map(lambda x: x + 1, tokens)\n", 1, 1, "missing 'return"),
        ("s = Select(tokens, tokens, LT)\nreturn s\n", 2, 1, "must name a sequence operation"),
        ("s = Select(tokens, tokens, ALMOST)\nw = SelectorWidth(s)\nreturn w\n", 1, 28, "unknown predicate"),
        ("a = Frobnicate(tokens)\nreturn a\n", 1, 5, "unknown operation 'Frobnicate'"),
        ("a = Map(lambda x: x + 1, tokens)\na = Map(lambda x: x + 1, a)\nreturn a\n", 2, 1, "not a fresh identifier"),
        (
            "s = Select(tokens, tokens, LT)\nw = Aggregate(tokens, s)\nreturn w\n",
            2,
            15,
            "is a sop, expected a selector",
        ),
        ("a = numerical(Aggregate(s, tokens, default=1))\nreturn a\n", 1, 44, "default=0"),
    ],
)
def test_errors_name_line_and_column(source, line, column, message):
    with pytest.raises(text.ProgramSyntaxError, match=message) as info:
        text.parse_program(source)
    assert (info.value.line, info.value.column) == (line, column)
    assert "\n" not in str(info.value)


# Issue 14: parsing must fail only with ProgramSyntaxError (one `error:` line in the CLI), whatever the text.
_PIECES = st.sampled_from(["a", "b", "tokens", "indices", "=", " ", "\n", "(", ")", ",", "{", "}", ":", "[", "]",
                           "-", "1", "1e999", "True", "'x'", "\ud800", "Map", "Select", "Aggregate", "SequenceMap",
                           "SelectorWidth", "numerical", "categorical", "lambda x: x + 1", "EQ", "LT", "return",
                           "LinearSequenceMap", "x", "#", "\\", "\""])  # fmt: skip


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=40).map("".join)))
def test_parsing_any_text_gives_a_program_or_a_syntax_error(source):
    try:
        program = text.parse_program(source)
    except text.ProgramSyntaxError:
        return
    assert text.parse_program(text.format_program(program)) == program
