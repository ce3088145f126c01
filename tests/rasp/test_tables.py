"""Value tables: functions and predicates outside the library, printed, parsed, compiled and run.

Oracles: the Python lambda a table was read from, Tracr's RASP evaluator, and
the compiled model's forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from tracr.rasp import rasp

from metamodels.dataset import written
from metamodels.rasp import canonical, tokens
from metamodels.rasp.program import Op, Program
from metamodels.rasp.tables import NoEntry, Table, library_function, library_predicate
from metamodels.rasp.text import ProgramSyntaxError, format_program, parse_program
from metamodels.transformer import battery, compiler, forward
from metamodels.transformer.compiler import program_from_rasp


def test_tables_are_canonical_and_undefined_outside_their_domain():
    a = Table((("b", 1), ("a", 0)))
    assert a == Table((("a", 0), ("b", 1))) and hash(a) == hash(Table((("a", 0), ("b", 1))))
    assert a("b") == 1 and a.domain() == ["a", "b"]
    with pytest.raises(NoEntry, match="no entry for 'c'"):
        a("c")
    assert isinstance(NoEntry("x"), ArithmeticError)  # Tracr's value-set inference skips such inputs
    assert Table.tabulate(lambda x: 1 // x, [0, 1, 2]).mapping == {1: 1, 2: 0}
    with pytest.raises(ValueError, match="one entry per input"):
        Table(((1, 0), (1, 1)))
    with pytest.raises(ValueError, match="finite numbers, strings, booleans or tuples of them"):
        Table(((1, [0]),))
    nested = Table((((1, (2, "a")), (3, 4)),))  # tuples (nested) as inputs and outputs
    assert nested((1, (2, "a"))) == (3, 4)
    partial = Table.tabulate(lambda x: None if x == 2 else x, [1, 2, 3])  # None: Tracr's empty output, kept
    assert partial.mapping == {1: 1, 2: None, 3: 3} and library_function(partial) is None


def test_a_table_equal_to_a_library_function_is_named():
    assert library_function(Table.tabulate(lambda x: x + 1, [1, 2, 3])) == "inc"
    assert library_function(Table.tabulate(lambda x: (x * x + 1) % 7, [1, 2, 3])) is None
    assert library_function(Table.tabulate(lambda x, y: x + y, [0, 1], [2, 3])) == "add"
    assert library_predicate(Table.tabulate(lambda k, q: k < q, [1, 2], [1, 2])) == "LT"
    assert library_predicate(Table.tabulate(lambda k, q: q == k + 1, [0, 1, 2], [0, 1, 2])) is None


def test_program_from_rasp_reads_lambdas_and_custom_predicates_as_tables():
    prev = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1).named("prev")
    shifted = rasp.Aggregate(prev, rasp.tokens).named("shifted")
    upper = rasp.Map(lambda w: w.upper(), shifted).named("upper")
    program = program_from_rasp(upper, ("ab", "c"), 3)
    select, _, up = program.ops
    assert up.fn == Table((("ab", "AB"), ("c", "C")))
    assert select.predicate(0, 1) is True and select.predicate(1, 0) is False
    with pytest.raises(ValueError, match="prev: its predicate is not in the library; pass vocab and max_seq_len"):
        program_from_rasp(upper)
    k = 2  # a closure is never mistaken for the library's `lambda x: x + 2`
    assert isinstance(program_from_rasp(rasp.Map(lambda x: x + k, rasp.tokens), (1, 5), 2).ops[0].fn, str)
    assert program_from_rasp(rasp.Map(lambda x: x + k, rasp.tokens), (1, 5), 2).ops[0].fn == "add2"


@pytest.mark.parametrize("name", sorted(written.written_programs()))
def test_written_programs_print_parse_compile_and_run_as_rasp(name):
    """Open-vocabulary round trip: text -> program -> Tracr model == RASP evaluation (causal ones included), on the
    battery inputs inside Tracr's domain (a categorical Aggregate that averages different values is outside it)."""
    program, vocab, max_seq_len, causal = written.written_programs()[name]
    assert parse_program(format_program(program)) == program
    model = compiler.compile_program(parse_program(format_program(program)), vocab, max_seq_len, causal=causal)
    inputs = battery.make_battery(vocab, max_seq_len, per_length=10, seed=3)
    checked = 0
    for xs, got in zip(inputs, forward.run(model, inputs)):
        if compiler.evaluate_checked(program, xs, causal)[1]:
            continue
        assert forward.outputs_match(got, battery.expected_output(program.evaluate, xs, causal)), (xs, got)
        checked += 1
    assert checked >= len(inputs) // 4


def test_causal_semantics_masks_every_select_not_each_prefix():
    """A causal model is not the program run per prefix once attention is nested (checked on Tracr's model)."""
    first = Table.tabulate(lambda k, q: k == 0, range(4), range(4))
    source = f"a = Select(tokens, tokens, TRUE)\nn = SelectorWidth(a)\nb = Select(indices, indices, {first.text})\nm = Aggregate(b, n)\nreturn m\n"
    program = parse_program(source)  # m = the length seen at position 0
    model = compiler.compile_program(program, ("x", "y"), 4, causal=True)
    xs = ["x", "y", "x"]
    got = forward.run(model, [xs])[0]
    masked = program.evaluate(xs, causal=True)
    per_prefix = [program.evaluate(xs[: i + 1])[i] for i in range(len(xs))]
    assert got == masked == [1, 1, 1]
    assert per_prefix == [1, 2, 3]


def test_table_text_errors_name_the_position():
    with pytest.raises(ProgramSyntaxError, match="line 1.*literal values only"):
        parse_program("a = Map({x: 1}, tokens)\nreturn a\n")
    with pytest.raises(ProgramSyntaxError, match="not in the library; write it as a table"):
        parse_program("a = Map(lambda x: x ** 3, tokens)\nreturn a\n")
    with pytest.raises(ProgramSyntaxError, match="maps \\(key, query\\) pairs to True/False"):
        parse_program("s = Select(tokens, tokens, {(1, 1): 3})\nn = SelectorWidth(s)\nreturn n\n")


def test_tokens_carry_the_structure_and_tables_come_back_unread():
    program, *_ = written.written_programs()["vowel_count_parity"]
    back = tokens.detokenize(tokens.tokenize(program))
    assert "fn:table" in tokens.tokenize_strings(program) and "TABLE" in tokens.tokenize_strings(program)
    unread = canonical.canonicalize(program)
    unread = Program(
        tuple(
            Op(
                o.name,
                o.kind,
                o.args,
                o.encoding,
                *(Table.unread(t.arity) if isinstance(t, Table) else t for t in (o.fn, o.predicate)),
                o.coeffs,
            )
            for o in unread.ops
        ),
        unread.output,
    )
    assert back == unread
    assert format_program(back).count("{}") == 2  # printed and parsed back as empty tables
    assert parse_program(format_program(back)) == back


def test_canonical_order_does_not_depend_on_table_entries():
    rng = np.random.default_rng(0)
    base = "a = Map({t}, tokens)\nb = Map({u}, tokens)\nc = SequenceMap(lambda x, y: x + y, a, b)\nreturn c\n"
    for _ in range(5):
        t, u = ({v: int(rng.integers(3)) for v in (1, 2)} for _ in range(2))
        p = parse_program(base.format(t=t, u=u))
        assert tokens.tokenize_strings(p) == tokens.tokenize_strings(parse_program(base.format(t=u, u=t)))
