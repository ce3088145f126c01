"""The ``lib`` split: hand-written programs that no training example may equal.

Tracr's lib programs that our function library can express (sort = Tracr's
sort_unique = paper 000's Figure 2, length, hist, reverse, frac_prevs) and a few
more written here, each with the settings it is compiled at.
"""

from __future__ import annotations

import json

from metamodels import battery, compiler, tokens
from metamodels.compiled import CompiledModel
from metamodels.dataset import store
from metamodels.rasp import text
from metamodels.rasp.program import Program

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

LIB_SETTINGS = {"vocab": compiler.DEFAULT_VOCAB, "max_seq_len": compiler.DEFAULT_MAX_SEQ_LEN}


def lib_programs() -> dict[str, Program]:
    """name -> program, in a fixed order."""
    return {name: text.parse_program(source) for name, source in LIB_SOURCES.items()}


def lib_rows() -> list[dict]:
    """The lib programs compiled at ``LIB_SETTINGS``, as dataset-like rows (for ``evaluate --split lib``)."""
    vocab, max_seq_len = LIB_SETTINGS["vocab"], LIB_SETTINGS["max_seq_len"]
    return [
        example_row(f"lib-{name}", "lib", program, compiler.compile_program(program, vocab, max_seq_len))
        for name, program in lib_programs().items()
    ]


def example_row(row_id: str, split: str, program: Program, model: CompiledModel) -> dict:
    """A dataset-like row for a program compiled here: model columns, battery and expected outputs.

    ``tokens`` is None for a program with value tables (they have no tokens); causal models are
    expected to agree prefix by prefix.
    """
    s = model.settings
    inputs = battery.make_battery(s.vocab, s.max_seq_len)
    try:
        ids = tokens.tokenize(program)
    except ValueError:
        ids = None
    return {
        "id": row_id, "split": split, "program": text.format_program(program), "n_ops": program.n_ops,
        "tokens": ids, **store.model_row(model),
        "battery_inputs": json.dumps([list(xs) for xs in inputs]),
        "battery_outputs": json.dumps([battery.expected_output(program.evaluate, xs, s.causal) for xs in inputs]),
    }  # fmt: skip
