"""Tokenizer: round trips, the paper's example, layer structure, and the grammar of valid next tokens."""

from __future__ import annotations

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from metamodels.rasp import canonical, layers, text, tokens
from tests import cases


def test_paper_figure_2_tokenization():
    program = text.parse_program(cases.HAND_WRITTEN["paper_sort"][0])
    assert " ".join(tokens.tokenize_strings(program)) == (
        "BOS sop_0 categorical SelectorWidth tokens tokens LT EOO EOL EOL "
        "sop_1 categorical SelectAggregate sop_0 indices EQ tokens EOO EOL EOL EOS"
    )


def test_round_trip_on_500_sampled_programs():
    for s in cases.sampled(500, seed=0):
        ids = tokens.tokenize(s.program)
        assert tokens.detokenize(ids) == canonical.canonicalize(s.program)
        assert tokens.tokenize(tokens.detokenize(ids)) == ids


@pytest.mark.parametrize("name", sorted(cases.HAND_WRITTEN))
def test_round_trip_on_hand_written_programs(name):
    program = text.parse_program(cases.HAND_WRITTEN[name][0])
    assert tokens.detokenize(tokens.tokenize(program)) == canonical.canonicalize(program)


def test_one_eol_per_sublayer_and_ops_in_their_sublayer():
    for s in cases.sampled(200, seed=0):
        strings = tokens.tokenize_strings(s.program)
        assert strings.count("EOL") == 2 * layers.n_layers(s.program)
        sublayer, placed = 0, {}
        for t in strings:
            if t == "EOL":
                sublayer += 1
            elif t.startswith("sop_") and t not in placed:
                placed[t] = sublayer
        assert placed == layers.assign_sublayers(canonical.canonicalize(s.program))


def test_every_prefix_allows_its_next_token():
    for s in cases.sampled(100, seed=0):
        grammar = tokens.Grammar()
        for t in tokens.tokenize_strings(s.program):
            assert t in grammar.allowed()
            grammar.step(t)
        assert grammar.done and grammar.allowed() == set()


def test_random_walks_through_the_grammar_give_valid_programs():
    """Constrained sampling from random logits never produces an invalid program."""
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(300):
        grammar = tokens.Grammar()
        for _ in range(400):
            allowed = sorted(grammar.allowed())
            assert allowed, "the grammar reached a dead end"
            # Prefer closing sublayers a little so walks finish.
            weights = np.array([3.0 if t in ("EOL", "EOS") else 1.0 for t in allowed])
            grammar.step(allowed[int(rng.choice(len(allowed), p=weights / weights.sum()))])
            if grammar.done:
                break
        if grammar.done:
            program = grammar.program()
            assert text.parse_program(text.format_program(program)) == program
            finished += 1
    assert finished > 100


@pytest.mark.parametrize(
    ("strings", "position", "expected"),
    [
        (["sop_0"], 0, "BOS"),
        (["BOS", "sop_1"], 1, "sop_0"),
        (["BOS", "sop_0", "categorical", "Map"], 3, "SelectAggregate"),
        (["BOS", "EOL", "sop_0", "categorical", "Map", "fn:inc", "sop_5"], 6, "tokens"),
        (["BOS", "EOL", "sop_0", "categorical", "Map", "fn:add"], 5, "fn:abs"),
        (["BOS", "EOS"], 1, "EOL"),
    ],
)
def test_invalid_sequences_name_position_and_expectation(strings, position, expected):
    ids = [tokens.VOCAB.id(t) for t in strings]
    with pytest.raises(tokens.TokenError, match=f"token {position} .*{expected}") as info:
        tokens.detokenize(ids + [tokens.VOCAB.id("EOS")])
    assert info.value.position == position


def test_truncated_sequence_is_an_error():
    ids = tokens.tokenize(cases.sampled(1, seed=0)[0].program)
    with pytest.raises(tokens.TokenError, match=f"token {len(ids) - 1} \\('<end>'\\)"):
        tokens.detokenize(ids[:-1])


def test_trailing_padding_is_ignored_but_not_other_tokens():
    ids = tokens.tokenize(cases.sampled(1, seed=0)[0].program)
    pad, eol = tokens.VOCAB.id("PAD"), tokens.VOCAB.id("EOL")
    assert tokens.detokenize(ids + [pad] * 5) == tokens.detokenize(ids)
    with pytest.raises(tokens.TokenError):
        tokens.detokenize(ids + [eol])


def test_vocabulary_is_versioned_and_unique():
    assert len(set(tokens.VOCAB.tokens)) == len(tokens.VOCAB)
    assert tokens.VOCAB.version == tokens.default_vocabulary().version
    assert tokens.VOCAB.version.startswith("v1-")


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    st.lists(
        st.one_of(st.integers(-3, 130), st.floats(allow_nan=True), st.text(max_size=2), st.booleans()), max_size=60
    )
)
def test_detokenizing_any_sequence_gives_a_program_or_a_token_error(ids):
    """Issue 14: ids past the vocabulary, floats and strings raised IndexError/TypeError."""
    try:
        program = tokens.detokenize(ids)
    except tokens.TokenError:
        return
    assert tokens.detokenize(tokens.tokenize(program)) == program


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(st.data())
def test_detokenizing_corrupted_real_programs(data):
    program = cases.sampled(20, seed=3)[data.draw(st.integers(0, 19))].program
    ids = tokens.tokenize(program)
    i = data.draw(st.integers(0, len(ids) - 1))
    ids[i] = data.draw(st.integers(0, len(tokens.VOCAB) - 1))
    try:
        tokens.detokenize(ids)
    except tokens.TokenError:
        pass
