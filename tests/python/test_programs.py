"""Python programs: the interpreter against Python itself, text and token round trips, grammar, generator."""

import random
import re

import numpy as np
import pytest

from metamodels.python import generate, program, tokens
from metamodels.python.program import Assign, Bound, Condition, Expr, If, Index, Loop, PyProgram

CONFIG = generate.GeneratorConfig(values=(0, 1, 2, 3), max_seq_len=6)
SAMPLES, REJECTED = generate.sample_unique(CONFIG, 60, seed=3)


def python_runs(text: str, xs: list[int]) -> list[int]:
    """The oracle: the program text run by Python."""
    scope: dict = {}
    exec(text, scope)  # noqa: S102 - our own generated text
    return scope["program"](list(xs))


def random_inputs(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, 4, size=int(rng.integers(1, 7)))) for _ in range(n)]


def test_generated_programs_run_without_error_and_the_interpreter_is_python():
    for s in SAMPLES:
        text = program.format_program(s.program)
        compile(text, "<program>", "exec")  # valid Python
        for xs in [*CONFIG.battery, *random_inputs(20, s.index)]:
            assert program.execute(s.program, xs) == python_runs(text, xs)


def test_text_and_tokens_round_trip():
    for s in SAMPLES:
        text = program.format_program(s.program)
        toks = tokens.tokenize(text)
        assert tokens.parse(toks) == s.program
        assert tokens.parse_text(text) == s.program
        ids = tokens.token_ids(toks)
        assert tokens.parse([tokens.VOCAB[i] for i in ids]) == s.program  # with <EOS>
        assert program.format_program(tokens.parse_text(text)) == text


def test_neighbours_are_programs_one_line_and_one_number_or_comparison_away():
    for s in SAMPLES[:20]:
        text = program.format_program(s.program).splitlines()
        found = tokens.neighbours(s.program)
        assert found and len({program.format_program(n) for n in found}) == len(found)
        for n in found:
            other = program.format_program(n).splitlines()
            assert tokens.parse_text("\n".join(other) + "\n") == n  # a program of the language
            changed = [(a, b) for a, b in zip(text, other) if a != b]
            assert len(other) == len(text) and len(changed) == 1
            # only numbers and comparisons change: the line with them blanked out is the same
            blank = [re.sub(r"==|!=|[<>]", "#", re.sub(r"\d+", "#", re.sub(r"\s*[-+]\s*\d+", "", line))) for line in changed[0]]
            assert blank[0] == blank[1], changed[0]


def test_the_tokens_are_pythons_own():
    text = program.format_program(SAMPLES[0].program)
    toks = tokens.tokenize(text)
    assert toks[:7] == ["def", "program", "(", "arr", ")", ":", tokens.NEWLINE]
    assert tokens.INDENT in toks and tokens.DEDENT == toks[-1]


def test_grammar_accepts_every_prefix_of_a_program_and_rejects_corruptions():
    rng = random.Random(0)
    for s in SAMPLES[:15]:
        toks = tokens.tokenize(program.format_program(s.program))
        assert all(tokens.viable(toks[:k]) for k in range(len(toks) + 1))
        assert tokens.allowed_next(toks) == [tokens.EOS]
        k = rng.randrange(len(toks))
        assert toks[k] in tokens.allowed_next(toks[:k])
        assert not tokens.viable([*toks[:k], "return", "return"])


def test_walking_the_grammar_always_spells_a_program():
    rng = random.Random(1)
    closing = (tokens.EOS, tokens.DEDENT, "return")
    for _ in range(12):
        prefix: list[str] = []
        while len(prefix) < 300:
            allowed = tokens.allowed_next(prefix)
            assert allowed, prefix
            ends = [t for t in closing if t in allowed]
            t = ends[0] if ends and rng.random() < 0.6 else rng.choice(allowed)  # closing early keeps walks short
            if t == tokens.EOS:
                break
            prefix.append(t)
        else:
            continue  # a long walk: nothing to check but that every step had a continuation
        parsed = tokens.parse(prefix)
        compile(program.format_program(parsed), "<walk>", "exec")


def test_bad_text_is_one_clear_error():
    with pytest.raises(program.PythonProgramError, match="token"):
        tokens.parse_text("def program(arr):\n    return arr\n")
    with pytest.raises(program.PythonProgramError, match="incomplete"):
        tokens.parse(tokens.tokenize(program.format_program(SAMPLES[0].program))[:-3])
    with pytest.raises(program.PythonProgramError, match="outside the vocabulary"):
        tokens.token_ids(["while"])


def test_sampling_is_deterministic_and_deduplicated():
    again, _ = generate.sample_unique(CONFIG, 60, seed=3)
    assert [s.program for s in again] == [s.program for s in SAMPLES]
    assert len({program.canonical_hash(s.program) for s in SAMPLES}) == len(SAMPLES)
    other, _ = generate.sample_unique(CONFIG, 10, seed=4)
    assert [s.program for s in other] != [s.program for s in SAMPLES[:10]]
    assert all(1 <= len(s.program.loops) <= 3 for s in SAMPLES)


TO_N = Bound(0, from_n=True)


def loop(*body, start=0, stop=TO_N, var="i"):
    return Loop(var, Bound(start), stop, tuple(body))


def copy(target=0, source=0, var="i"):
    return Assign(Index(var, target), Expr("arr", Index(var, source)))


@pytest.mark.parametrize(
    "candidate, reason",
    [
        (PyProgram((loop(If(Condition(Index("i", 1), ">", 1), (copy(),))),)), "out_of_range"),
        (PyProgram((loop(copy(), stop=Bound(0)),)), "constant"),  # range(0, 0): out stays zeros
        (PyProgram((loop(copy()),)), "identity"),
        (PyProgram((loop(copy(1, 0)), loop(copy(1, 0)))), "dead_statement"),
        (PyProgram((loop(Assign(Index("i", 0), Expr("acc", Index("i", 0), Index("i", -1)))),)), None),
    ],
)
def test_rejections_by_reason(candidate, reason):
    assert generate.judge(CONFIG, candidate, CONFIG.battery) == reason


def test_rejections_are_counted_and_settings_checked():
    assert set(REJECTED) <= set(generate.REJECTIONS)
    assert REJECTED.get("out_of_range", 0) > 0 and REJECTED.get("dead_statement", 0) > 0
    with pytest.raises(generate.MetamodelsError, match="integers"):
        generate.GeneratorConfig(values=("a", "b"))
    with pytest.raises(generate.MetamodelsError, match="loops"):
        generate.GeneratorConfig(min_loops=3, max_loops=2)


def test_statement_paths_and_skipping():
    p = PyProgram((loop(copy(1, 0), If(Condition(Index("i", 0), "==", 0, 2), (copy(),))),))
    assert program.paths(p) == [(0,), (0, 0), (0, 1), (0, 1, 0)]
    assert p.n_statements == 4
    xs = [2, 1, 3]
    assert program.execute(p, xs, skip=(0,)) == [0, 0, 0]
    assert program.execute(p, xs, skip=(0, 1)) == python_runs(
        program.format_program(PyProgram((loop(copy(1, 0)),))), xs
    )
