"""The command line: the happy path end to end, and one-line errors (no traceback) for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metamodels import artifacts, cli
from tests.cases import FIXTURE


def test_compile_and_run_the_paper_sort(tmp_path, capsys):
    out = tmp_path / "sort.safetensors"
    assert cli.main(["compile", str(artifacts.EXAMPLES / "sort.rasp"), "-o", str(out), "--with-source"]) == 0
    assert cli.main(["run", str(out), "3", "1", "5", "2", "--program"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "1 2 3 5" and lines[-1].startswith("1 2 3 5")


def test_model_files_do_not_carry_their_program_unless_asked(tmp_path):
    """Issue 14: a model file handed to a decompiler carried the answer (program_text, layer_of)."""
    from metamodels.transformer import modelfile

    plain, sourced = tmp_path / "plain.safetensors", tmp_path / "sourced.safetensors"
    assert cli.main(["compile", str(artifacts.EXAMPLES / "sort.rasp"), "-o", str(plain)]) == 0
    assert cli.main(["compile", str(artifacts.EXAMPLES / "sort.rasp"), "-o", str(sourced), "--with-source"]) == 0
    a, b = modelfile.load(plain), modelfile.load(sourced)
    assert a.program_text is None and a.layer_of == {} and "Select" not in plain.read_bytes().decode("latin-1")
    assert b.program_text and b.layer_of
    bundled = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    assert bundled.program_text is None and bundled.layer_of == {}


def test_string_vocabulary(tmp_path, capsys):
    program = tmp_path / "p.rasp"
    program.write_text("s = Select(tokens, tokens, EQ)\nn = SelectorWidth(s)\nreturn n\n")
    out = tmp_path / "m.safetensors"
    assert cli.main(["compile", str(program), "--vocab", "a,b,c", "--max-seq-len", "4", "-o", str(out)]) == 0
    assert cli.main(["run", str(out), "a", "b", "a"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 1 2"


def test_sample_and_stats(capsys):
    assert cli.main(["sample", "--n", "3", "--ops", "2-3", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("return ") == 3
    assert cli.main(["sample", "--n", "10", "--stats"]) == 0
    stats = capsys.readouterr().out
    for section in ("ops per program", "op kind", "predicate", "function", "rejected candidates"):
        assert section in stats


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "{bad}", "-o", "{tmp}/x.safetensors"], "line 1, column"),
        (["compile", "{uncompilable}", "-o", "{tmp}/x.safetensors"], "cannot compile: a:"),
        (["compile", "{tmp}/missing.rasp", "-o", "{tmp}/x.safetensors"], "cannot read"),
        (["run", "{tmp}/missing.safetensors", "1"], "no such file"),
        (["run", "{truncated}", "1"], "not a readable safetensors file"),
        (["run", "{model}", "7"], "not in the model's vocabulary"),
        (["run", "{model}", "1", "2", "3", "4", "5", "1"], "at most 5"),
        (["sample", "--n", "0"], "--n must be at least 1"),
    ],
)
def test_user_mistakes_print_one_error_line(tmp_path, argv, message):
    bad = tmp_path / "bad.rasp"
    bad.write_text("a = Map(lambda x: x +, tokens)\nreturn a\n")
    uncompilable = tmp_path / "u.rasp"
    uncompilable.write_text("s = Select(tokens, tokens, EQ)\na = numerical(Aggregate(s, tokens))\nreturn a\n")
    model = tmp_path / "m.safetensors"
    assert cli.main(["compile", str(artifacts.EXAMPLES / "sort.rasp"), "-o", str(model)]) == 0
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(model.read_bytes()[:200])
    names = dict(bad=bad, uncompilable=uncompilable, model=model, truncated=truncated, tmp=tmp_path)
    argv = [a.format(**names) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "metamodels.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr


def test_help_explains_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "metamodels.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in cli.COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("argv", [[name] for name in cli.COMMANDS] + [["dataset", "build"], ["dataset", "stats"]])
def test_every_command_builds_its_options_and_shows_their_defaults(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: metamodels {' '.join(argv)}")
    if argv == ["decompile"]:  # defaults come from DecompileConfig, declared there once
        assert "(default 32)" in out and "--no-readout" in out and "(default 100000)" in out and "--greedy" in out


def test_sample_marginals_from_a_config_file(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"op_weights": {"SelectorWidth": 1}, "predicate_weights": {"LT": 1}}')
    assert cli.main(["sample", "--n", "4", "--ops", "1-2", "--config", str(config), "--stats"]) == 0
    stats = capsys.readouterr().out
    assert "SelectorWidth" in stats and "Map " not in stats and "EQ " not in stats
    config.write_text('{"op_weight": {}}')
    assert cli.main(["sample", "--config", str(config)]) == 2
    assert "unknown sampler config field(s) ['op_weight']" in capsys.readouterr().err


def test_verify_and_densify_commands(tmp_path, capsys):
    model, dense = tmp_path / "sort.safetensors", tmp_path / "dense.safetensors"
    assert cli.main(["compile", str(artifacts.EXAMPLES / "sort.rasp"), "-o", str(model)]) == 0
    assert cli.main(["densify", str(model), "-o", str(dense), "--fidelity", "1"]) == 0
    assert cli.main(["verify", str(artifacts.EXAMPLES / "sort.rasp"), str(dense)]) == 0
    out = capsys.readouterr().out
    assert "verdict: agrees_where_defined (3905 inputs, all" in out and "fidelity 1.0000" in out
    wrong = tmp_path / "wrong.rasp"
    wrong.write_text((artifacts.EXAMPLES / "sort.rasp").read_text().replace("LT)", "GT)"))
    assert cli.main(["verify", str(wrong), str(model), "--json"]) == 1
    assert '"verdict": "refuted"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decompile", "missing.safetensors"], "missing.safetensors"),
        (["decompile", "{sort}", "--checkpoint", "{tmp}"], "not a readable meta-model checkpoint"),
        (["decompile", "{sort}", "--beam", "0"], "--beam must be at least 1"),
        (["decompile", "{sort}", "--repair", "-1"], "--repair must be at least 0"),
        (["decompile", "{sort}", "--inputs", "0"], "--inputs must be at least 1"),
        (["verify", "{sort_rasp}", "{sort}", "--seconds", "-1"], "--seconds must not be negative"),
        (["sample", "--n", "0"], "--n must be at least 1"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "no manifest.json"),
        (["train", "--data", "{fixture}", "--out", "{tmp}/run", "--preset", "huge"], "unknown preset"),
        (["evaluate", "--data", "{fixture}", "--split", "test", "--checkpoint", "{tmp}"], "not a readable"),
    ],
)
def test_meta_model_commands_fail_with_one_line(tmp_path, capsys, argv, message):
    fill = {"sort": str(artifacts.EXAMPLES / "sort.safetensors"), "sort_rasp": str(artifacts.EXAMPLES / "sort.rasp"),
            "tmp": str(tmp_path), "fixture": str(FIXTURE)}  # fmt: skip
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


BAD_PROGRAMS = {
    "duplicate table key": ("a = Map({1: 1, 1: 2}, tokens)\nreturn a\n", "twice"),
    "keys that are equal (1 and True)": ("a = Map({1: 'a', True: 'b'}, tokens)\nreturn a\n", "twice"),
    "infinite coefficient": (
        "a = numerical(Map(lambda x: x == 1, tokens))\nb = numerical(LinearSequenceMap(a, a, 1e999, 1))\nreturn b\n",
        "finite",
    ),  # fmt: skip
    "100,000 minus signs": ("x = " + "-" * 100_000 + "x\nreturn x\n", "nested too deeply"),
    "unhashable table key": ("a = Map({[1]: 2}, tokens)\nreturn a\n", "literal values only"),
}


@pytest.mark.parametrize("name", sorted(BAD_PROGRAMS))
def test_bad_programs_fail_with_one_line(tmp_path, capsys, name):
    """Issue 14, point 9-10: merged keys, files the loader rejects, MemoryError on deep nesting."""
    source, message = BAD_PROGRAMS[name]
    program = tmp_path / "p.rasp"
    program.write_text(source)
    assert cli.main(["compile", str(program), "-o", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compile", "{sort_rasp}", "--vocab", "nan,1,2", "-o", "{tmp}/m.st"], "finite"),
        (["compile", "{sort_rasp}", "--max-seq-len", "0", "-o", "{tmp}/m.st"], "max_seq_len"),
        (["compile", "{sort_rasp}", "--mlp-exactness", "-5", "-o", "{tmp}/m.st"], "mlp_exactness"),
        (["compile", "{sort_rasp}", "-o", "/nonexistent/x.st"], "does not exist"),
        (["sample", "--max-seq-len", "0"], "max_seq_len"),
        (["sample", "--ops", "0"], "--ops"),
        (["verify", "{sort_rasp}", "{sort}", "--inputs", "0"], "--inputs must be at least 1"),
        (["dataset", "build", "{tmp}/d", "--n", "2", "--max-params", "0"], "--max-params must be at least 1"),
        (["dataset", "build", "{tmp}/d", "--n", "2", "--workers", "0"], "--workers must be at least 1"),
        (["train", "--data", "{fixture}", "--out", "{tmp}/r", "--minutes", "-1"], "--minutes must be positive"),
        (["train", "--data", "{fixture}", "--out", "{tmp}/r", "--eval-every", "0"], "--eval-every must be at least 1"),
        (["train", "--data", "{fixture}", "--out", "{tmp}/r", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["evaluate", "--split", "nope"], "invalid choice"),
        (["decompile", "{sort}", "--beam", "0"], "--beam must be at least 1"),
        (["decompile", "{sort}", "--repair", "-1"], "--repair must be at least 0"),
        (["decompile", "{sort}", "--inputs", "0"], "--inputs must be at least 1"),
        (["verify", "{sort_rasp}", "{sort}", "--seconds", "-1"], "--seconds must not be negative"),
        (["sample", "--n", "0"], "--n must be at least 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, capsys, argv, message):
    fill = {"sort": str(artifacts.EXAMPLES / "sort.safetensors"), "sort_rasp": str(artifacts.EXAMPLES / "sort.rasp"),
            "tmp": str(tmp_path), "fixture": str(FIXTURE)}  # fmt: skip
    try:
        code = cli.main([a.format(**fill) for a in argv])
    except SystemExit as e:  # argparse's own refusals exit from inside the parser
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err, err


def test_verify_exits_zero_only_on_a_verdict_that_holds(tmp_path, capsys):
    """Issue 14, point 2: `LT)` -> `TRUE)` was 'verified' with no position compared, exit 0."""
    sort = artifacts.EXAMPLES / "sort.safetensors"
    assert cli.main(["verify", str(artifacts.EXAMPLES / "sort.rasp"), str(sort)]) == 0
    capsys.readouterr()
    vacuous = tmp_path / "vacuous.rasp"
    vacuous.write_text((artifacts.EXAMPLES / "sort.rasp").read_text().replace("LT)", "TRUE)"))
    assert cli.main(["verify", str(vacuous), str(sort)]) == 1  # undefined where the model is well defined
    assert "verdict: refuted" in capsys.readouterr().out
    widened = tmp_path / "widened.rasp"
    widened.write_text((artifacts.EXAMPLES / "sort.rasp").read_text().replace("indices, EQ)", "indices, LEQ)"))
    assert cli.main(["verify", str(widened), str(sort)]) == 1
    assert "verdict: refuted" in capsys.readouterr().out
