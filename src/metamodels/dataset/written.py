"""The ``written`` split: programs written directly against Tracr's ``rasp``, in the style people use.

Letters, words, floats and wider integer ranges as vocabularies; lambdas from
outside our function library (string tests, number theory, position
conditionals); selectors such as ``query == key + 1``; named variables; some
compiled causally. Each is converted with ``program_from_rasp`` (functions and
predicates become value tables over Tracr's value sets) and compiled at its own
settings. Nothing here is in any training set, and none of it was tuned on.

By kind (113 programs, 1-19 ops): string processing (letters, words, ciphers, vowels), number theory, position
logic (shifts, rotations, mirrors, middles), sort / rank / histogram variants (stable, by key, by frequency,
minimum, median), brackets, running fractions, tuple keys and values, odd labels (spaces, symbols, digits,
unicode, op names, ``tokens`` and ``indices`` as labels), vocabularies of 2-30 values (integers, letters, words,
floats, binary strings), lengths 4-16, causal and not.
"""

from __future__ import annotations

import functools
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

    # --- 0.6, stop 29: more styles and depths (issue 15): the split grows past 100 programs ---
    def sorted_by(key_of, direction=rasp.Comparison.LT, label="sorted"):
        """tokens sorted by a distinct key SOp (stable: ties broken by position inside the key)."""
        before = rasp.Select(key_of, key_of, direction).named(f"{label}_before")
        target = rasp.SelectorWidth(before).named(f"{label}_target")
        return rasp.Aggregate(rasp.Select(target, indices, rasp.Comparison.EQ), tokens).named(label)

    def stable_key():
        return rasp.SequenceMap(lambda t, i: (t, i), tokens, indices).named("(t, i)")

    def at_position(sop, position, label):
        return rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == position), sop).named(label)

    def count_a():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k == "a")).named("n_a")

    def first_letter():
        return rasp.Map(lambda w: w[0], tokens).named("initial")

    def last_letter():
        return rasp.Map(lambda w: w[-1], tokens).named("last letter")

    def is_shouted():
        return rasp.Map(lambda w: w.isupper(), tokens).named("SHOUTED")

    def letter_number():
        return rasp.Map(lambda c: ord(c) - ord("a"), tokens).named("alphabet_position")

    def same_as_next():
        nxt = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == q + 1), tokens).named("next")
        return rasp.SequenceMap(lambda a, b: a == b, tokens, nxt).named("same_as_next")

    def two_vowels_in_a_row():
        vowel = rasp.Map(lambda c: c in "aeiou", tokens).named("vowel")
        before = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 1), vowel).named("vowel_before")
        return rasp.SequenceMap(lambda a, b: bool(a and b), vowel, before).named("double_vowel")

    def first_occurrence():
        key = stable_key()
        earlier = rasp.Select(key, key, lambda k, q: k[0] == q[0] and k[1] < q[1]).named("earlier_same")
        return rasp.Map(lambda n: n == 0, rasp.SelectorWidth(earlier).named("n_earlier")).named("first_seen")

    def share_distinct():
        first = first_occurrence()
        one = rasp.numerical(rasp.Map(lambda f: 1 if f else 0, first)).named("is_new")
        everything = rasp.Select(indices, indices, rasp.Comparison.TRUE).named("all")
        return rasp.numerical(rasp.Aggregate(everything, one, default=0)).named("distinct share")

    def blank_repeats():
        return rasp.SequenceMap(lambda t, f: t if f else "_", tokens, first_occurrence()).named("deduped")

    def starts_with_vowel():
        return rasp.Map(lambda w: w[0] in "aeiou", tokens).named("vowel_initial")

    def divisible_by_three():
        return rasp.Map(lambda x: x % 3 == 0, tokens).named("x % 3 == 0")

    def collatz_step():
        return rasp.Map(lambda x: x // 2 if x % 2 == 0 else 3 * x + 1, tokens).named("collatz")

    def digit_sum():
        return rasp.Map(lambda x: sum(int(d) for d in str(x)), tokens).named("digit_sum")

    def multiples_of_first():
        first = at_position(tokens, 0, "first")
        divides = rasp.Select(tokens, first, lambda k, q: k % q == 0).named("multiple_of_first")
        return rasp.SelectorWidth(divides).named("n_multiples")

    def is_square():
        return rasp.Map(lambda x: int(x**0.5) ** 2 == x, tokens).named("square?")

    def product_mod_five():
        return rasp.SequenceMap(lambda x, i: (x * i) % 5, tokens, indices).named("x*i mod 5")

    def is_record():
        key = stable_key()
        larger_before = rasp.Select(key, key, lambda k, q: k[1] < q[1] and k[0] >= q[0]).named("not_below")
        return rasp.Map(lambda n: n == 0, rasp.SelectorWidth(larger_before)).named("record")

    def prime_count():
        primes = {2, 3, 5, 7, 11}
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k in primes)).named("primes")

    def larger_than_first():
        return rasp.SequenceMap(lambda a, b: a > b, tokens, at_position(tokens, 0, "head")).named("above_head")

    def distance_from_first():
        return rasp.SequenceMap(lambda a, b: abs(a - b), tokens, at_position(tokens, 0, "x0")).named("|x - x0|")

    def minimum_everywhere():
        return at_position(sorted_by(stable_key()), 0, "minimum")

    def maximum_everywhere():
        return at_position(sorted_by(stable_key(), rasp.Comparison.GT, "descending"), 0, "maximum")

    def second_smallest():
        return at_position(sorted_by(stable_key()), 1, "second")

    def median_everywhere():
        ordered = sorted_by(stable_key())
        middle = rasp.Map(lambda n: (n - 1) // 2, length_of()).named("middle")
        return rasp.Aggregate(rasp.Select(indices, middle, rasp.Comparison.EQ), ordered).named("median")

    def sort_with_repeats():
        return sorted_by(stable_key())

    def rank_descending():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.GT)).named("n_above")

    def most_frequent_here():
        count = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("count")
        more = rasp.SelectorWidth(rasp.Select(count, count, rasp.Comparison.GT)).named("n_more_frequent")
        return rasp.Map(lambda n: n == 0, more).named("is_mode")

    def position_of_value():
        return rasp.Aggregate(rasp.Select(tokens, indices, rasp.Comparison.EQ), indices).named("where")

    def histogram_share():
        count = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("count")
        return rasp.SequenceMap(lambda c, n: round(c / n, 3) if n else 0.0, count, length_of()).named("share")

    def bracket_prefix_negative():
        return rasp.Map(lambda d: d < 0, bracket_depth()).named("below_zero")

    def balanced():
        below = bracket_prefix_negative()
        ever = rasp.SelectorWidth(rasp.Select(below, below, lambda k, q: k)).named("n_below")
        opens = rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k == "(")).named("n_open")
        closes = rasp.SelectorWidth(rasp.Select(tokens, tokens, lambda k, q: k == ")")).named("n_close")
        level = rasp.SequenceMap(lambda a, b: a == b, opens, closes).named("level")
        return rasp.SequenceMap(lambda n, lv: n == 0 and lv, ever, level).named("balanced")

    def share_even_so_far():
        even = rasp.numerical(rasp.Map(lambda x: 1 if x % 2 == 0 else 0, tokens)).named("even")
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("so far")
        return rasp.numerical(rasp.Aggregate(prefix, even, default=0)).named("even_share")

    def share_long_words():
        long = rasp.numerical(rasp.Map(lambda w: 1 if len(w) > 3 else 0, tokens)).named("long")
        return rasp.numerical(rasp.Aggregate(rasp.Select(indices, indices, rasp.Comparison.LEQ), long, default=0))

    def share_like_first_so_far():
        same = rasp.SequenceMap(lambda a, b: a == b, tokens, at_position(tokens, 0, "first")).named("like_first")
        one = rasp.numerical(rasp.Map(lambda x: 1 if x else 0, same)).named("one_if_like_first")
        prefix = rasp.Select(indices, indices, rasp.Comparison.LEQ).named("prefix")
        return rasp.numerical(rasp.Aggregate(prefix, one, default=0)).named("share_like_first")

    def median_well_above_minimum():  # 19 ops
        gap = rasp.SequenceMap(lambda a, b: a - b, median_everywhere(), minimum_everywhere()).named("gap")
        return rasp.Map(lambda d: d > 1, gap).named("spread_out")

    def alternate_case():
        pair = rasp.SequenceMap(lambda c, i: (c, i % 2), tokens, indices).named("(c, odd)")
        return rasp.Map(lambda p: p[0].upper() if p[1] else p[0], pair).named("aLtErNaTe")

    def divmod_three():
        return rasp.Map(lambda x: divmod(x, 3), tokens).named("divmod(x, 3)")

    def coordinates():
        return rasp.SequenceMap(lambda i, n: (i, n - i - 1), indices, length_of()).named("(from start, from end)")

    def sort_by_remainder():
        key = rasp.SequenceMap(lambda x, i: (x % 3, x, i), tokens, indices).named("(x%3, x, i)")
        return sorted_by(key, label="by_remainder")

    def unicode_labels():
        size = rasp.Map(lambda w: len(w), tokens).named("größe")
        return rasp.Map(lambda n: n * 2, size).named("doppelte größe")

    def numeric_labels():
        triple = rasp.Map(lambda x: (3 * x) % 8, tokens).named("3x")
        return rasp.SequenceMap(lambda a, i: a + i, triple, indices).named("2")

    def shadowing_labels():
        doubled = rasp.Map(lambda x: 2 * x, tokens).named("tokens")
        return rasp.SequenceMap(lambda a, b: a - b, doubled, indices).named("indices")

    def op_name_labels():
        flag = rasp.Map(lambda x: x > 2, tokens).named("Select")
        chosen = rasp.Select(tokens, tokens, lambda k, q: k > q).named("Map")
        return rasp.SequenceMap(lambda f, n: n if f else -1, flag, rasp.SelectorWidth(chosen).named("lambda"))

    def runs_in_sorted():
        ordered = sorted_by(stable_key())
        prev = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: q == k + 1), ordered).named("prev_sorted")
        return rasp.SequenceMap(lambda a, b: a != b, ordered, prev).named("run_start")

    def histogram_of_sorted():
        ordered = sorted_by(stable_key())
        return rasp.SelectorWidth(rasp.Select(ordered, ordered, rasp.Comparison.EQ)).named("sorted_count")

    def mirror_rank_agrees():
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length_of()).named("mirror")
        mirrored = rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), tokens).named("mirrored")
        rank = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.LT)).named("rank")
        mirror_rank = rasp.SelectorWidth(rasp.Select(tokens, mirrored, rasp.Comparison.LT)).named("mirror_rank")
        return rasp.SequenceMap(lambda a, b: a == b, rank, mirror_rank).named("same_rank")

    def is_palindrome_sequence():
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length_of()).named("opposite")
        mirrored = rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), tokens).named("mirror")
        differs = rasp.SequenceMap(lambda a, b: a != b, tokens, mirrored).named("differs")
        n_diff = rasp.SelectorWidth(rasp.Select(differs, differs, lambda k, q: k)).named("n_differ")
        return rasp.Map(lambda n: n == 0, n_diff).named("palindrome")

    def outer_sums():
        ordered = sorted_by(stable_key())
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length_of()).named("opp")
        from_top = rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), ordered).named("from_top")
        return rasp.SequenceMap(lambda a, b: a + b, ordered, from_top).named("outer_sum")

    def second_largest_everywhere():
        return at_position(sorted_by(stable_key(), rasp.Comparison.GT, "desc"), 1, "runner_up")

    def fizzbuzz():
        return rasp.SequenceMap(lambda t, i: "fizzbuzz" if (i + 1) % 15 == 0 else "fizz" if (i + 1) % 3 == 0
                                else "buzz" if (i + 1) % 5 == 0 else t, tokens, indices).named("fizzbuzz")  # fmt: skip

    def caesar_by_position():
        return rasp.SequenceMap(lambda c, i: LETTERS[(LETTERS.index(c) + i) % 5], tokens, indices).named("rot_i")

    def vigenere():
        shift = rasp.Map(lambda i: (3, 1, 4)[i % 3], indices).named("key")
        return rasp.SequenceMap(lambda c, s: LETTERS[(LETTERS.index(c) + s) % 5], tokens, shift).named("cipher")

    def count_below_position():
        return rasp.SelectorWidth(rasp.Select(tokens, indices, lambda k, q: k < q)).named("below_i")

    def token_is_index():
        return rasp.SequenceMap(lambda t, i: t == i, tokens, indices).named("fixed_point")

    def count_equal_to_my_index():
        return rasp.SelectorWidth(rasp.Select(tokens, indices, rasp.Comparison.EQ)).named("n_equal_i")

    def histogram_so_far():
        return rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("seen")

    def shift_left_by_two():
        return rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == q + 2), tokens).named("ahead2")

    def middle_token():
        middle = rasp.Map(lambda n: n // 2, length_of()).named("mid")
        return rasp.Aggregate(rasp.Select(indices, middle, rasp.Comparison.EQ), tokens).named("middle")

    def last_token():
        final = rasp.Map(lambda n: n - 1, length_of()).named("final_index")
        return rasp.Aggregate(rasp.Select(indices, final, rasp.Comparison.EQ), tokens).named("last")

    def rotate_left():
        target = rasp.SequenceMap(lambda i, n: (i + 1) % n if n else 0, indices, length_of()).named("source")
        return rasp.Aggregate(rasp.Select(indices, target, rasp.Comparison.EQ), tokens).named("rotated")

    def swap_pairs():
        partner = rasp.Map(lambda i: i + 1 if i % 2 == 0 else i - 1, indices).named("partner")
        return rasp.Aggregate(rasp.Select(indices, partner, rasp.Comparison.EQ), tokens).named("swapped")

    def token_and_position_parity():
        return rasp.SequenceMap(lambda t, i: (t, i % 2 == 0), tokens, indices).named("(token, even_i)")

    def tokens_equal_count():
        count = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.EQ)).named("multiplicity")
        return rasp.SequenceMap(lambda t, c: t == c, tokens, count).named("self_describing")

    def max_minus_min():
        top = at_position(sorted_by(stable_key(), rasp.Comparison.GT, "down"), 0, "top")
        bottom = at_position(sorted_by(stable_key(), rasp.Comparison.LT, "up"), 0, "bottom")
        return rasp.SequenceMap(lambda a, b: a - b, top, bottom).named("range")

    def words_sorted_by_length():
        key = rasp.SequenceMap(lambda w, i: (len(w), i), tokens, indices).named("(len, i)")
        return sorted_by(key, label="by_length")

    def longer_than_next():
        size = rasp.Map(lambda w: len(w), tokens).named("len")
        nxt = rasp.Aggregate(rasp.Select(indices, indices, lambda k, q: k == q + 1), size).named("next_len")
        return rasp.SequenceMap(lambda a, b: b is not None and a > b, size, nxt).named("longer_than_next")

    def sum_with_mirror():
        opp = rasp.SequenceMap(lambda i, n: n - i - 1, indices, length_of()).named("opp")
        mirrored = rasp.Aggregate(rasp.Select(indices, opp, rasp.Comparison.EQ), tokens).named("mirrored")
        return rasp.SequenceMap(lambda a, b: a + b, tokens, mirrored).named("with_mirror")

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
        "count_a": (count_a, LETTERS, 7, False),
        "first_letter": (first_letter, WORDS, 5, False),
        "last_letter": (last_letter, ("apple", "kiwi", "fig", "plum", "pear", "lime"), 6, True),
        "is_shouted": (is_shouted, ("THE", "cat", "DOG", "a", "I"), 5, False),
        "letter_number": (letter_number, tuple("abcdefghij"), 6, False),
        "same_as_next": (same_as_next, LETTERS, 7, False),
        "two_vowels_in_a_row": (two_vowels_in_a_row, ("a", "b", "e", "k", "o"), 7, False),
        "first_occurrence": (first_occurrence, LETTERS, 6, False),
        "share_distinct": (share_distinct, ("x", "y", "z"), 6, False),
        "blank_repeats": (blank_repeats, LETTERS, 6, True),
        "starts_with_vowel": (starts_with_vowel, ("apple", "egg", "cat", "ice", "dog", "owl"), 5, True),
        "divisible_by_three": (divisible_by_three, tuple(range(20)), 6, False),
        "collatz_step": (collatz_step, tuple(range(1, 13)), 5, False),
        "digit_sum": (digit_sum, tuple(range(30)), 5, False),
        "multiples_of_first": (multiples_of_first, tuple(range(1, 10)), 6, False),
        "is_square": (is_square, tuple(range(26)), 6, True),
        "product_mod_five": (product_mod_five, tuple(range(5)), 8, False),
        "is_record": (is_record, tuple(range(1, 7)), 7, False),
        "prime_count": (prime_count, tuple(range(12)), 8, False),
        "larger_than_first": (larger_than_first, tuple(range(8)), 6, True),
        "distance_from_first": (distance_from_first, tuple(range(8)), 6, False),
        "minimum_everywhere": (minimum_everywhere, tuple(range(6)), 6, False),
        "maximum_everywhere": (maximum_everywhere, (2, 4, 6, 8, 10), 5, False),
        "second_smallest": (second_smallest, tuple(range(1, 8)), 6, False),
        "median_everywhere": (median_everywhere, tuple(range(5)), 7, False),
        "sort_with_repeats": (sort_with_repeats, (0, 1, 2), 8, False),
        "rank_descending": (rank_descending, tuple(range(10)), 7, False),
        "most_frequent_here": (most_frequent_here, ("a", "b", "c"), 7, False),
        "position_of_value": (position_of_value, tuple(range(6)), 6, False),
        "histogram_share": (histogram_share, ("r", "g", "b"), 6, False),
        "bracket_prefix_negative": (bracket_prefix_negative, ("(", ")"), 8, False),
        "balanced": (balanced, ("(", ")"), 8, False),
        "share_even_so_far": (share_even_so_far, tuple(range(10)), 10, True),
        "share_long_words": (share_long_words, ("a", "an", "the", "word", "tree", "river"), 8, False),
        "share_like_first_so_far": (share_like_first_so_far, ("0", "1"), 10, False),
        "median_well_above_minimum": (median_well_above_minimum, tuple(range(6)), 7, False),
        "alternate_case": (alternate_case, LETTERS, 8, False),
        "divmod_three": (divmod_three, tuple(range(10)), 5, False),
        "coordinates": (coordinates, (0, 1), 8, False),
        "sort_by_remainder": (sort_by_remainder, tuple(range(7)), 5, False),
        "unicode_labels": (unicode_labels, WORDS, 5, False),
        "numeric_labels": (numeric_labels, tuple(range(8)), 6, False),
        "shadowing_labels": (shadowing_labels, tuple(range(5)), 5, False),
        "op_name_labels": (op_name_labels, tuple(range(5)), 5, False),
        "runs_in_sorted": (runs_in_sorted, (1, 2, 3), 6, False),
        "histogram_of_sorted": (histogram_of_sorted, LETTERS, 6, False),
        "mirror_rank_agrees": (mirror_rank_agrees, tuple(range(6)), 6, False),
        "is_palindrome_sequence": (is_palindrome_sequence, ("a", "b"), 7, False),
        "outer_sums": (outer_sums, tuple(range(6)), 6, False),
        "second_largest_everywhere": (second_largest_everywhere, tuple(range(10)), 6, False),
        "fizzbuzz": (fizzbuzz, ("a", "b"), 16, False),
        "caesar_by_position": (caesar_by_position, LETTERS, 8, True),
        "vigenere": (vigenere, LETTERS, 9, False),
        "count_below_position": (count_below_position, tuple(range(8)), 8, False),
        "token_is_index": (token_is_index, tuple(range(10)), 10, True),
        "count_equal_to_my_index": (count_equal_to_my_index, tuple(range(6)), 6, False),
        "histogram_so_far": (histogram_so_far, ("x", "o"), 12, True),
        "shift_left_by_two": (shift_left_by_two, tuple(range(4)), 9, False),
        "middle_token": (middle_token, WORDS, 7, False),
        "last_token": (last_token, tuple(range(9)), 6, False),
        "rotate_left": (rotate_left, LETTERS, 6, False),
        "swap_pairs": (swap_pairs, tuple(range(10)), 8, False),
        "token_and_position_parity": (token_and_position_parity, ("p", "q"), 14, False),
        "tokens_equal_count": (tokens_equal_count, (1, 2, 3, 4), 6, False),
        "max_minus_min": (max_minus_min, tuple(range(8)), 5, False),
        "words_sorted_by_length": (words_sorted_by_length, ("a", "to", "the", "tree", "I", "of"), 6, False),
        "longer_than_next": (longer_than_next, ("a", "to", "the", "tree"), 7, False),
        "sum_with_mirror": (sum_with_mirror, tuple(range(5)), 7, False),
    }


def written_rasp() -> dict[str, tuple[rasp.SOp, tuple, int, bool]]:
    """name -> (Tracr expression, vocab, max_seq_len, causal), each expression built afresh (the originals, before
    conversion: what an independent oracle evaluates)."""
    return {name: (build(), vocab, n, causal) for name, (build, vocab, n, causal) in _programs().items()}


def written_programs() -> dict[str, tuple[Program, tuple, int, bool]]:
    """name -> (program, vocab, max_seq_len, causal), tables read over each program's own value sets."""
    return dict(_converted())


@functools.cache
def _converted() -> dict[str, tuple[Program, tuple, int, bool]]:
    return {
        name: (compiler.program_from_rasp(sop, vocab, max_seq_len), vocab, max_seq_len, causal)
        for name, (sop, vocab, max_seq_len, causal) in written_rasp().items()
    }


def written_rows() -> list[store.Row]:
    """The written programs compiled at their settings, as dataset-like rows (``evaluate --split written``)."""
    rows = []
    for name, (program, vocab, max_seq_len, causal) in written_programs().items():
        model = compiler.compile_program(program, vocab, max_seq_len, causal=causal)
        rows.append(examples.example_row(f"written-{name}", "written", program, model))
    return rows
