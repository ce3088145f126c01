"""Evaluation on the fixture dataset and the lib and written splits: every metric, the oracle, basis changes."""

from __future__ import annotations

import json

from metamodels import cli
from metamodels.dataset import store
from metamodels.decompilation import pipeline
from metamodels.evaluation import evaluate, oracle, reporting
from metamodels.meta import metamodel
from metamodels.rasp import tokens as tokens_mod
from metamodels.transformer import densification, forward
from tests.cases import FIXTURE


def test_evaluate_reports_every_metric(trained):
    _, checkpoint = trained
    model, _ = metamodel.load_checkpoint(checkpoint)
    report = evaluate.evaluate(
        model, FIXTURE, evaluate.EvaluateConfig("train", limit=10, verify_k=2, verify_limit=2), progress=False
    )
    overall = report["overall"]
    assert overall["n"] == 10 and 0 <= overall["exact"] <= overall["functional"] <= 1
    assert set(overall["fields"]) <= set(evaluate.FIELDS)
    assert {"verified@1", "verified@2", "false_verification"} <= set(report["verification"])
    for r in report["examples"]:
        assert r["decoded"] is None or "return" in r["decoded"]
    assert "exact" in reporting.format_table(report)


def test_functional_accuracy_uses_the_true_program_as_oracle():
    row = next(store.iter_rows(FIXTURE, "train"))

    truth = tokens_mod.detokenize(row["tokens"])
    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    want = json.loads(row["battery_outputs"])
    assert oracle.same_outputs(oracle.outputs_of(truth, inputs, row["causal"]), want)
    other = tokens_mod.detokenize(
        next(r for r in store.iter_rows(FIXTURE, "train") if r["program"] != row["program"] and r["n_ops"] > 2)[
            "tokens"
        ]
    )
    assert not oracle.same_outputs(oracle.outputs_of(other, inputs, row["causal"]), want)


def test_train_and_evaluate_commands(trained, tmp_path, capsys):
    _, checkpoint = trained
    report = tmp_path / "r.json"
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(FIXTURE), "--split", "test",
                     "--programs", "--json", str(report), "--plot", str(tmp_path / "r.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "-- truth" in out and "-- decoded" in out and json.loads(report.read_text())["split"] == "test"
    assert (tmp_path / "r.png").stat().st_size > 0


def test_permuted_residual_models_compute_the_same_and_are_evaluated(trained):
    _, checkpoint = trained
    row = next(store.iter_rows(FIXTURE, "train"))
    model = store.model_from_row(row)

    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    assert forward.run(densification.permuted(model, 1), inputs) == forward.run(model, inputs)
    meta, _ = metamodel.load_checkpoint(checkpoint)
    report = evaluate.evaluate(
        meta, FIXTURE, evaluate.EvaluateConfig("train", limit=3, permute_residual=1), progress=False
    )
    assert report["permute_residual"] == 1 and report["overall"]["n"] == 3


def test_dense_evaluation_reports_widths_and_fidelity(trained):
    meta, _ = metamodel.load_checkpoint(trained[1])
    config = evaluate.EvaluateConfig(
        "train", limit=3, dense=0.99, dense_seed=1, dense_heldout=300, verify_k=2, verify_limit=1
    )
    report = evaluate.evaluate(meta, FIXTURE, config, progress=False)
    assert report["overall"]["n"] == 3 and report["verification"]["n"] == 1
    assert report["densified"]["n"] == 3 and report["densified"]["fidelity_min"] >= 0.99
    assert "densified (fidelity bar 0.99)" in reporting.format_table(report)


def test_lib_split_is_compiled_from_the_hand_written_programs(trained, capsys):
    _, checkpoint = trained
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--split", "lib", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "== lib-sort" in out and "smaller = Select(tokens, tokens, LT)" in out and "lib split" in out
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--split", "test"]) == 2
    assert "--data is required" in capsys.readouterr().err


def test_written_split_reports_readout_and_breakdowns(capsys):
    """Open-vocabulary programs: functional accuracy with readout, by vocabulary kind and causal (shipped checkpoint)."""
    assert cli.main(["evaluate", "--split", "written", "--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "written split of written.py" in out and "+readout" in out
    assert "   vocab" in out and "  causal" in out
    meta = pipeline.load_metamodel()
    report = evaluate.evaluate(meta, None, evaluate.EvaluateConfig("written", limit=6), progress=False)
    readout_right = [r for r in report["examples"] if r["functional_readout"]]
    assert all(r["read_out"] for r in readout_right if not r["functional"])
    assert report["overall"]["functional_readout"] >= report["overall"]["functional"]
