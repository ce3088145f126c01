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

    # --- 0.6: deeper programs, longer inputs, wider vocabularies, tuples, odd labels (issue 15) ---
    def length_of(sop=None):
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.TRUE)).named("length")

    def sort_descending():
        larger = rasp.Select(tokens, tokens, rasp.Comparison.GT).named("larger")
        place = rasp.SelectorWidth(larger).named("place")
        return rasp.Aggregate(rasp.Select(place, indices, rasp.Comparison.EQ), tokens).named("descending")

    def rank_of_token():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.LT)).named("rank")

    def word_hist():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("count")

    def bracket_depth():
        opens = rasp.numerical(rasp.Map(lambda t: 1 if t == "(" else 0, tokens)).named("opens")
        closes = rasp.numerical(rasp.Map(lambda t: 1 if t == ")" else 0, tokens)).named("closes")
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("prefix")
        frac_open = rasp.numerical(rasp.Aggregate(prefix, opens, default=0)).named("frac_open")
        frac_close = rasp.numerical(rasp.Aggregate(prefix, closes, default=0)).named("frac_close")
        return rasp.numerical(rasp.LinearSequenceMap(frac_open, frac_close, 1, -1)).named("depth/len")

    def shift_right_by_two():
        return rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 2), tokens).named("shift(2)")

    def next_word():
        return rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == q + 1), tokens).named("next word")

    def is_palindrome():
        return rasp.Map(lambda w: w == w[::-1], tokens).named("palindrome?")

    def gcd_with_position():
        import math

        return rasp.SequenceMap(lambda x, i: math.gcd(x, i + 1), tokens, indices).named("gcd")

    def signed_by_parity():
        pair = rasp.SequenceMap(lambda x, i: (x, i % 2), tokens, indices).named("(x, i%2)")
        return rasp.Map(lambda p: p[0] if p[1] else -p[0], pair).named("signed")

    def square_minus_self():
        sq = rasp.Map(lambda x: x * x, tokens).named("x^2")
        return rasp.SequenceMap(lambda a, b: a - b, sq, tokens).named("x^2 - x")

    def frac_large():
        large = rasp.numerical(rasp.Map(lambda x: 1 if x > 5 else 0, tokens)).named("large")
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("so_far")
        return rasp.numerical(rasp.Aggregate(prefix, large, default=0)).named("frac_large")

    def length_parity():
        return rasp.Map(lambda n: n % 2, length_of()).named("odd_length")

    def position_from_end():
        return rasp.SequenceMap(lambda n, i: n - i - 1, length_of(), indices).named("from_end")

    def first_value():
        return rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == 0), tokens).named("first")

    def affine_mod():
        return rasp.Map(lambda x: (2 * x + 3) % 7, tokens).named("2x+3 mod 7")

    def frac_equal_to_first():
        first = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == 0), tokens).named("first")
        equal = rasp.SequenceMap(lambda a, b: a == b, tokens, first).named("equal")
        same = rasp.numerical(rasp.Map(lambda e: 1 if e else 0, equal)).named("same")
        everything = rasp.Select(indices, indices, rasp.Comparison.TRUE).named("everything")
        return rasp.numerical(rasp.Aggregate(everything, same, default=0)).named("frac_same")

    def sort_words():  # stable: (word, position) keys are distinct even when words repeat
        key = rasp.SequenceMap(lambda w, i: (w, i), tokens, indices).named("(word, i)")
        smaller = rasp.Select(key, key, rasp.Comparison.LT).named("smaller")
        target = rasp.SelectorWidth(smaller).named("target")
        return rasp.Aggregate(rasp.Select(target, indices, rasp.Comparison.EQ), tokens).named("sorted")

    def vowels_so_far():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k in "aeiou")).named("vowels_so_far")

    def frac_cat():
        cat = rasp.numerical(rasp.Map(lambda w: 1 if w == "cat" else 0, tokens)).named("is_cat")
        return rasp.numerical(rasp.Aggregate(rasp.Select(indices, indices, rasp.Comparison.TRUE), cat, default=0))

    def relu_shift():
        return rasp.numerical(rasp.Map(lambda x: max(0.0, x - 2), tokens)).named("relu(x-2)")

    def same_as_previous():
        prev = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 1), tokens).named("prev")
        return rasp.SequenceMap(lambda a, b: a == b, tokens, prev).named("repeat")

    def reverse_words():
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length_of()).named("opp_index")
        return rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), tokens).named("reversed")

    def all_same():
        different = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.NEQ)).named("n_different")
        return rasp.Map(lambda n: n == 0, different).named("all_same")

    def max_is_here():
        bigger = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.GT)).named("n_bigger")
        return rasp.Map(lambda n: n == 0, bigger).named("is_max")

    def count_then_sort():
        count = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("count")
        key = rasp.SequenceMap(lambda c, i: c * 10 + i, count, indices).named("key")
        smaller = rasp.Select(key, key, rasp.Comparison.LT).named("smaller_key")
        place = rasp.SelectorWidth(smaller).named("place")
        return rasp.Aggregate(rasp.Select(place, indices, rasp.Comparison.EQ), tokens).named("by_count")

    def second_half():
        half = rasp.SequenceMap(lambda i, n: i >= n // 2, indices, length_of()).named("in_second_half")
        return rasp.SequenceMap(lambda t, h: t if h else "-", tokens, half).named("second_half")

    def window_sum():
        prev = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 1), tokens).named("prev")
        return rasp.SequenceMap(lambda a, b: a + (b or 0), tokens, prev).named("pair_sum")

    def letter_after_a():
        prev = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 1), tokens).named("before")
        return rasp.Map(lambda c: c == "a", prev).named("after_a")

    def running_mean_floats():
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("upto")
        is_big = rasp.numerical(rasp.Map(lambda x: 1 if x >= 1.0 else 0, tokens)).named("x>=1")
        return rasp.numerical(rasp.Aggregate(prefix, is_big, default=0)).named("running share")

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
        "sort_descending": (sort_descending, tuple(range(1, 9)), 6, False),
        "rank_of_token": (rank_of_token, tuple(range(21)), 8, False),
        "word_hist": (word_hist, ("a", "big", "cat", "dog", "eats", "fish", "gets", "hot"), 10, False),
        "bracket_depth": (bracket_depth, ("(", ")", "x"), 8, False),
        "shift_right_by_two": (shift_right_by_two, tuple(range(6)), 12, False),
        "next_word": (next_word, WORDS, 6, False),
        "is_palindrome": (is_palindrome, ("noon", "cat", "level", "dog", "abba"), 5, False),
        "gcd_with_position": (gcd_with_position, tuple(range(1, 13)), 8, False),
        "signed_by_parity": (signed_by_parity, (1, 2, 3, 4), 6, False),
        "square_minus_self": (square_minus_self, tuple(range(7)), 5, False),
        "frac_large": (frac_large, tuple(range(10)), 12, True),
        "length_parity": (length_parity, LETTERS, 16, False),
        "position_from_end": (position_from_end, (0, 1, 2, 3), 10, False),
        "first_value": (first_value, (0.5, 1.5, 2.5), 6, True),
        "affine_mod": (affine_mod, tuple(range(30)), 5, False),
        "frac_equal_to_first": (frac_equal_to_first, tuple(range(5)), 8, False),
        "sort_words": (sort_words, WORDS, 5, False),
        "vowels_so_far": (vowels_so_far, LETTERS, 8, True),
        "frac_cat": (frac_cat, WORDS, 10, False),
        "relu_shift": (relu_shift, (0.0, 1.0, 2.0, 3.0, 4.0), 5, False),
        "same_as_previous": (same_as_previous, LETTERS, 8, False),
        "reverse_words": (reverse_words, WORDS, 8, False),
        "all_same": (all_same, LETTERS, 6, False),
        "max_is_here": (max_is_here, tuple(range(1, 10)), 7, True),
        "count_then_sort": (count_then_sort, (1, 2, 3), 5, False),
        "second_half": (second_half, LETTERS, 9, False),
        "window_sum": (window_sum, (0, 1, 2, 3), 6, False),
        "letter_after_a": (letter_after_a, LETTERS, 7, True),
        "running_mean_floats": (running_mean_floats, (0.25, 0.5, 1.0, 2.0), 8, True),
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
