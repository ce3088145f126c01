"""The ``written`` split: programs written directly against Tracr's ``rasp``, in the style people use.

Letters, words, floats and wider integer ranges as vocabularies; lambdas from
outside our function library (string tests, number theory, position
conditionals); selectors such as ``query == key + 1``; named variables; some
compiled causally. Each is converted with ``program_from_rasp`` (functions and
predicates become value tables over Tracr's value sets) and compiled at its own
settings. Nothing here is in any training set, and none of it was tuned on.
"""

from __future__ import annotations

from collections.abc import Callable

from tracr.rasp import rasp

from metamodels.dataset import examples, store
from metamodels.rasp.program import Program
from metamodels.transformer import compiler

LETTERS = ("a", "b", "c", "d", "e")
WORDS = ("the", "cat", "sat", "on", "mat")


def _programs() -> dict[str, tuple[Callable[[], rasp.SOp], tuple, int, bool]]:
    """name -> (builder, vocab, max_seq_len, causal)."""
    tokens, indices = rasp.tokens, rasp.indices

    def is_vowel():
        return rasp.Map(lambda c: c in "aeiou", tokens).named("is_vowel")

    def frac_vowels():
        vowel = rasp.numerical(rasp.Map(lambda c: 1 if c in "aeiou" else 0, tokens)).named("vowel")
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("prefix")
        return rasp.numerical(rasp.Aggregate(prefix, vowel, default=0)).named("frac_vowels")

    def previous_word():
        prev = rasp.Select(indices, indices, lambda k, q: q == k + 1).named("prev")
        return rasp.Aggregate(prev, tokens).named("previous_word")

    def is_prime():
        return rasp.Map(lambda x: x in (2, 3, 5, 7, 11, 13), tokens).named("is_prime")

    def parity_of_ones():
        ones = rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k == 1)).named("n_ones")
        return rasp.Map(lambda n: n % 2, ones).named("parity")

    def halve_floats():
        return rasp.numerical(rasp.Map(lambda x: x / 2, tokens)).named("half")

    def reverse_letters():
        length = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.TRUE)).named("length")
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length).named("opp")
        return rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), tokens).named("reverse")

    def word_length():
        return rasp.Map(lambda w: len(w), tokens).named("word_length")

    def mask_odd_positions():
        return rasp.SequenceMap(lambda t, i: t if i % 2 == 0 else "_", tokens, indices).named("masked")

    def letter_hist():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("hist")

    def same_as_first():
        first = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == 0), tokens).named("first")
        return rasp.SequenceMap(lambda a, b: a == b, tokens, first).named("same_as_first")

    def caesar():
        return rasp.Map(lambda c: LETTERS[(LETTERS.index(c) + 1) % len(LETTERS)], tokens).named("shifted")

    def count_twice_larger():
        bigger = rasp.Select(tokens, tokens, lambda k, q: k > 2 * q).named("twice_larger")
        return rasp.SelectorWidth(bigger).named("n_twice_larger")

    def digit_plus_position():
        return rasp.SequenceMap(lambda x, i: (x + i) % 10, tokens, indices).named("shifted_digit")

    def capitalise():
        return rasp.Map(lambda w: w.capitalize(), tokens).named("capitalised")

    def vowel_count_parity():
        vowels = rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k in "aeiou")).named("n_vowels")
        return rasp.Map(lambda n: "even" if n % 2 == 0 else "odd", vowels).named("vowel_parity")

    return {
        "is_vowel": (is_vowel, LETTERS, 6, False),
        "frac_vowels": (frac_vowels, LETTERS, 6, True),
        "previous_word": (previous_word, WORDS, 5, False),
        "is_prime": (is_prime, tuple(range(16)), 6, False),
        "parity_of_ones": (parity_of_ones, (0, 1), 8, False),
        "halve_floats": (halve_floats, (0.5, 1.0, 1.5, 2.0), 5, False),
        "reverse_letters": (reverse_letters, LETTERS, 6, False),
        "word_length": (word_length, WORDS, 5, True),
        "mask_odd_positions": (mask_odd_positions, LETTERS, 7, False),
        "letter_hist": (letter_hist, LETTERS, 6, True),
        "same_as_first": (same_as_first, WORDS, 5, True),
        "caesar": (caesar, LETTERS, 6, False),
        "count_twice_larger": (count_twice_larger, tuple(range(12)), 8, False),
        "digit_plus_position": (digit_plus_position, tuple(range(10)), 10, False),
        "capitalise": (capitalise, WORDS, 5, False),
        "vowel_count_parity": (vowel_count_parity, LETTERS, 6, False),
    }


def written_programs() -> dict[str, tuple[Program, tuple, int, bool]]:
    """name -> (program, vocab, max_seq_len, causal), tables read over each program's own value sets."""
    out = {}
    for name, (build, vocab, max_seq_len, causal) in _programs().items():
        out[name] = (compiler.program_from_rasp(build(), vocab, max_seq_len), vocab, max_seq_len, causal)
    return out


def written_rows() -> list[store.Row]:
    """The written programs compiled at their settings, as dataset-like rows (``evaluate --split written``)."""
    rows = []
    for name, (program, vocab, max_seq_len, causal) in written_programs().items():
        model = compiler.compile_program(program, vocab, max_seq_len, causal=causal)
        rows.append(examples.example_row(f"written-{name}", "written", program, model))
    return rows
