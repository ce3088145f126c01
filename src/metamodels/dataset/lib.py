"""The ``lib`` split: hand-written programs that no training example may equal.

Tracr's lib programs that our function library can express (sort = Tracr's
sort_unique = paper 000's Figure 2, length, hist, reverse, frac_prevs) and a few
more written here, each with the settings it is compiled at.
"""

from __future__ import annotations

from metamodels.dataset import examples, store
from metamodels.rasp import text
from metamodels.rasp.program import Program
from metamodels.transformer import compiler

LIB_SOURCES: dict[str, str] = {
    "sort": "smaller = Select(tokens, tokens, LT)\ntarget = SelectorWidth(smaller)\n"
    "sel = Select(target, indices, EQ)\nsort = Aggregate(sel, tokens)\nreturn sort\n",
    "sort_descending": "larger = Select(tokens, tokens, GT)\ntarget = SelectorWidth(larger)\n"
    "sel = Select(target, indices, EQ)\nsort = Aggregate(sel, tokens)\nreturn sort\n",
    "length": "all = Select(tokens, tokens, TRUE)\nlength = SelectorWidth(all)\nreturn length\n",
    "hist": "same = Select(tokens, tokens, EQ)\nhist = SelectorWidth(same)\nreturn hist\n",
    "double_hist": "same = Select(tokens, tokens, EQ)\nhist = SelectorWidth(same)\ndouble = Map(lambda x: 2 * x, hist)\nreturn double\n",
    "count_smaller": "smaller = Select(tokens, tokens, LT)\ncount = SelectorWidth(smaller)\nreturn count\n",
    "reverse": "all = Select(tokens, tokens, TRUE)\nlength = SelectorWidth(all)\n"
    "opp = SequenceMap(lambda x, y: x - y, length, indices)\nopp_idx = Map(lambda x: x - 1, opp)\n"
    "flip = Select(indices, opp_idx, EQ)\nreverse = Aggregate(flip, tokens)\nreturn reverse\n",
    "frac_prevs": "is_one = numerical(Map(lambda x: x == 1, tokens))\nprevs = Select(indices, indices, LEQ)\n"
    "frac_prevs = numerical(Aggregate(prevs, is_one))\nreturn frac_prevs\n",
}

LIB_VOCAB, LIB_MAX_SEQ_LEN = compiler.DEFAULT_VOCAB, compiler.DEFAULT_MAX_SEQ_LEN  # the lib split's settings


def lib_programs() -> dict[str, Program]:
    """name -> program, in a fixed order."""
    return {name: text.parse_program(source) for name, source in LIB_SOURCES.items()}


def lib_rows() -> list[store.Row]:
    """The lib programs compiled at the lib settings, as dataset-like rows (for ``evaluate --split lib``)."""
    vocab, max_seq_len = LIB_VOCAB, LIB_MAX_SEQ_LEN
    return [
        examples.example_row(f"lib-{name}", "lib", program, compiler.compile_program(program, vocab, max_seq_len))
        for name, program in lib_programs().items()
    ]
