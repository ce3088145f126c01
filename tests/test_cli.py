"""The command line: the happy path end to end, and one-line errors (no traceback) for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metamodels import cli


def test_compile_and_run_the_paper_sort(tmp_path, capsys):
    out = tmp_path / "sort.safetensors"
    assert cli.main(["compile", str(cli.EXAMPLES / "sort.rasp"), "-o", str(out)]) == 0
    assert cli.main(["run", str(out), "3", "1", "5", "2", "--program"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "1 2 3 5" and lines[-1].startswith("1 2 3 5")


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
    assert cli.main(["compile", str(cli.EXAMPLES / "sort.rasp"), "-o", str(model)]) == 0
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
    for command in ("sample", "compile", "run"):
        assert command in result.stdout


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
    assert cli.main(["compile", str(cli.EXAMPLES / "sort.rasp"), "-o", str(model)]) == 0
    assert cli.main(["densify", str(model), "-o", str(dense), "--fidelity", "1"]) == 0
    assert cli.main(["verify", str(cli.EXAMPLES / "sort.rasp"), str(dense)]) == 0
    out = capsys.readouterr().out
    assert "verdict: agrees_where_defined (3905 inputs, all" in out and "fidelity 1.0000" in out
    wrong = tmp_path / "wrong.rasp"
    wrong.write_text((cli.EXAMPLES / "sort.rasp").read_text().replace("LT)", "GT)"))
    assert cli.main(["verify", str(wrong), str(model), "--json"]) == 1
    assert '"verdict": "refuted"' in capsys.readouterr().out
