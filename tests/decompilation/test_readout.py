"""Readout: functions and predicates read from the weights, given the program's structure.

Oracle: the compiled model itself — the read-out program must verify against it
(exhaustively or on thousands of inputs) although every function and predicate
of the structure handed to readout was wrong.
"""

from __future__ import annotations

import pytest

from metamodels import artifacts, cli
from metamodels.dataset import examples, sampling, written
from metamodels.decompilation import readout, verification
from metamodels.rasp.program import Program
from metamodels.rasp.text import format_program, parse_program
from metamodels.transformer import compiler, densification, modelfile
from tests import cases


def _read_and_verify(program: Program, model) -> str:
    read = readout.read_tables(cases.scrambled(program), model)
    return verification.verify(read, model, max_inputs=3000, weights=False).verdict


@pytest.mark.slow
def test_closed_library_programs_are_recovered_from_their_structure():
    verdicts = []
    for index in range(40):
        program = sampling.sample(sampling.SamplerConfig(max_ops=8), 11, index).program
        verdicts.append(_read_and_verify(program, compiler.compile_program(program)))
    assert verdicts.count("refuted") <= 1, verdicts  # measured: 299 of 300 at seed 7 (a duplicated op)


@pytest.mark.slow
def test_open_vocabulary_programs_are_recovered_from_their_structure():
    config = examples.BuildConfig(n=1, open_vocab=True, vocab_size=(3, 10), max_seq_len=(4, 7), max_ops=6)
    verdicts = []
    for index in range(30):
        sampler = config.sampler(index)
        program = sampling.sample(sampler, 0, index).program
        model = compiler.try_compile(
            program, compiler.settings_for(sampler.vocab, sampler.max_seq_len, causal=sampler.causal)
        )
        if isinstance(model, compiler.CompileFailure):
            continue
        verdicts.append(_read_and_verify(program, model))
    assert len(verdicts) >= 25 and verdicts.count("refuted") <= 1, verdicts


def test_read_tables_name_library_functions_and_keep_real_tables():
    program, vocab, max_seq_len, causal = written.written_programs()["vowel_count_parity"]
    model = compiler.compile_program(program, vocab, max_seq_len, causal=causal)
    read = readout.read_tables(cases.scrambled(program), model)
    assert format_program(read) == format_program(program)
    lib = parse_program("s = Select(tokens, tokens, LT)\nn = SelectorWidth(s)\nm = Map(lambda x: x + 1, n)\nreturn m\n")
    read = readout.read_tables(cases.scrambled(lib), compiler.compile_program(lib))
    assert read.ops[0].predicate == "LT" and read.ops[2].fn == "inc"


def test_structures_that_do_not_fit_and_dense_models_are_refused():
    program = parse_program("m = Map(lambda x: x + 1, tokens)\nreturn m\n")
    model = compiler.compile_program(program)
    other = parse_program("s = Select(tokens, tokens, LT)\nn = SelectorWidth(s)\nreturn n\n")
    with pytest.raises(readout.ReadoutError, match="n: no categorical SelectorWidth at sublayer 0"):
        readout.read_tables(other, model)
    dense = densification.densify(model, target_fidelity=0.99, seed=0).model
    with pytest.raises(readout.ReadoutError, match="no residual labels"):
        readout.read_tables(program, dense)


def test_a_select_wired_to_the_wrong_variables_is_a_misfit_not_a_false_predicate():
    """Issue 15: sort's second Select reads (count, indices); wired to (count, count) its head selects nothing
    there. That is a structure that does not fit the weights, not a program with Select(..., FALSE)."""
    sort = parse_program((artifacts.EXAMPLES / "sort.rasp").read_text())
    model = compiler.compile_program(sort)
    assert verification.verify(readout.read_tables(cases.scrambled(sort), model), model, weights=False).holds()
    misfit = format_program(sort).replace("Select(target, indices, EQ)", "Select(target, target, EQ)")
    assert misfit != format_program(sort)
    with pytest.raises(readout.ReadoutError, match="selects no"):
        readout.read_tables(parse_program(misfit), model)


def test_decompile_a_string_vocabulary_table_model_then_verify_it(tmp_path, capsys):
    """The issue's end-to-end check: decompile prints a readable table program that `verify` accepts."""
    source = "shifted = Map({'a': 'b', 'b': 'c', 'c': 'a'}, tokens)\nreturn shifted\n"
    (tmp_path / "caesar.rasp").write_text(source)
    model_file = tmp_path / "caesar.safetensors"
    assert (
        cli.main(
            ["compile", str(tmp_path / "caesar.rasp"), "-o", str(model_file), "--vocab", "a,b,c", "--max-seq-len", "4"]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["decompile", str(model_file), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "{'a': 'b', 'b': 'c', 'c': 'a'}" in out and "# verified" in out and "read from the weights" in out
    (tmp_path / "decompiled.rasp").write_text(out)
    assert cli.main(["verify", str(tmp_path / "decompiled.rasp"), str(model_file)]) == 0
    assert modelfile.load(model_file).settings.vocab == ("a", "b", "c")
