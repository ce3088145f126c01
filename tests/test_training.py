"""Tiny end to end on the fixture dataset: train a few steps, resume, decode, evaluate, decompile."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from metamodels import batching, cli, decompilation, evaluation, forward, metamodel, training
from metamodels.compiled import CompiledModel
from metamodels.dataset import store
from tests.test_dataset_loader import FIXTURE

pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(out), preset="tiny", steps=12, minutes=None, eval_every=6, eval_examples=40, warmup=3
    )
    return cfg, training.train(cfg, progress=False)


def test_training_writes_checkpoint_log_curves_and_state(trained):
    cfg, checkpoint = trained
    model, provenance = metamodel.load_checkpoint(checkpoint)
    assert provenance["train_config"]["preset"] == "tiny" and provenance["git_commit"] is not None
    log = [json.loads(line) for line in (checkpoint.parent / training.LOG).read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 12]
    assert log[-1]["train_loss"] < 4.5  # from ln(113) = 4.7 at initialisation
    assert (checkpoint.parent / "curves.png").stat().st_size > 0
    state = torch.load(checkpoint.parent / training.STATE, weights_only=False)["state"]
    assert state["step"] == 12


def test_rerun_resumes_instead_of_restarting(trained, tmp_path):
    cfg, _ = trained
    import dataclasses
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cfg.out, copy)
    longer = dataclasses.replace(cfg, out=str(copy), steps=18)  # the saved schedule (12 steps) is kept
    training.train(longer, progress=False)
    log = [json.loads(line) for line in (copy / training.LOG).read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 12]  # nothing retrained: the saved run had finished
    assert torch.load(copy / training.STATE, weights_only=False)["state"]["step"] == 12


def test_evaluate_reports_every_metric(trained):
    _, checkpoint = trained
    model, _ = metamodel.load_checkpoint(checkpoint)
    report = evaluation.evaluate(model, FIXTURE, "train", limit=10, progress=False, verify_k=2, verify_limit=2)
    overall = report["overall"]
    assert overall["n"] == 10 and 0 <= overall["exact"] <= overall["functional"] <= 1
    assert set(overall["fields"]) <= set(evaluation.FIELDS)
    assert {"verified@1", "verified@2", "false_verification"} <= set(report["verification"])
    for r in report["examples"]:
        assert r["decoded"] is None or "return" in r["decoded"]
    assert "exact" in evaluation.format_table(report)


def test_functional_accuracy_uses_the_true_program_as_oracle():
    row = next(store.iter_rows(FIXTURE, "train"))
    from metamodels import tokens as tokens_mod

    truth = tokens_mod.detokenize(row["tokens"])
    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    want = json.loads(row["battery_outputs"])
    assert evaluation.same_outputs(evaluation.outputs_of(truth, inputs, row["causal"]), want)
    other = tokens_mod.detokenize(
        next(r for r in store.iter_rows(FIXTURE, "train") if r["program"] != row["program"] and r["n_ops"] > 2)[
            "tokens"
        ]
    )
    assert not evaluation.same_outputs(evaluation.outputs_of(other, inputs, row["causal"]), want)


def test_random_weights_still_decompile_to_a_valid_program(trained):
    _, checkpoint = trained
    row = next(store.iter_rows(FIXTURE, "train"))
    model = store.model_from_row(row)
    rng = np.random.default_rng(0)
    # random values on the model's sparsity pattern (fully dense random weights exceed the token budget: tested below)
    noise = {k: (rng.normal(size=v.shape) * (v != 0)).astype(np.float32) for k, v in model.params.items()}
    noisy = CompiledModel.from_config(noise, model.settings, model.config())
    result = decompilation.decompile(noisy, checkpoint=checkpoint, beam=3)
    assert result.program is not None and "return" in result.text
    assert result.status == "not_checked" and len(result.candidates) <= 3
    dense = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in model.params.items()}
    with pytest.raises(ValueError, match="reads at most 512"):
        decompilation.decompile(CompiledModel.from_config(dense, model.settings, model.config()), checkpoint=checkpoint)


def test_decompile_with_verification_states_the_outcome(trained, tmp_path, capsys):
    _, checkpoint = trained
    sort = cli.EXAMPLES / "sort.safetensors"
    assert cli.main(["decompile", str(sort), "--checkpoint", str(checkpoint), "--beam", "2", "--verify", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] in ("verified", "unverified") and result["verification"] is not None
    assert all(c["verdict"] in (None, "equivalent", "agrees_where_defined", "refuted") for c in result["candidates"])


def test_train_and_evaluate_commands(trained, tmp_path, capsys):
    _, checkpoint = trained
    report = tmp_path / "r.json"
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(FIXTURE), "--split", "test",
                     "--programs", "--json", str(report), "--plot", str(tmp_path / "r.png")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "-- truth" in out and "-- decoded" in out and json.loads(report.read_text())["split"] == "test"
    assert (tmp_path / "r.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decompile", "missing.safetensors"], "missing.safetensors"),
        (["decompile", "{sort}", "--checkpoint", "{tmp}"], "not a readable meta-model checkpoint"),
        (["decompile", "{sort}", "--beam", "0"], "--beam must be at least 1"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "no manifest.json"),
        (["train", "--data", "{fixture}", "--out", "{tmp}/run", "--preset", "huge"], "unknown preset"),
        (["evaluate", "--data", "{fixture}", "--split", "nope", "--checkpoint", "{tmp}"], "not a readable"),
    ],
)
def test_meta_model_commands_fail_with_one_line(tmp_path, capsys, argv, message):
    fill = {"sort": str(cli.EXAMPLES / "sort.safetensors"), "tmp": str(tmp_path), "fixture": str(FIXTURE)}
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["nan", "shape"])
def test_decompile_rejects_damaged_model_files(tmp_path, capsys, damage):
    from tests.test_modelfile import _read, _rewrite

    path = tmp_path / "m.safetensors"
    path.write_bytes((cli.EXAMPLES / "sort.safetensors").read_bytes())
    params, metadata = _read(path)
    if damage == "nan":
        params["transformer/layer_0/mlp/linear_1/w"][0, 0] = np.nan
    else:
        params["unembed"] = params["unembed"][:, :-1].copy()
    _rewrite(path, params, metadata)
    assert cli.main(["decompile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(path) in err


def test_direction_relabelling_keeps_the_structure():
    from metamodels import batching

    tags = np.array([3, 3, 0, 7, 1, 7])
    out = batching.permute_directions(tags, np.random.default_rng(0))
    assert out[2] == 0 and out[0] == out[1] and out[3] == out[5] and len({out[0], out[3], out[4]}) == 3
    assert out.max() <= 2047 and out[out > 0].min() >= 1


def test_permuted_residual_models_compute_the_same_and_are_evaluated(trained):
    _, checkpoint = trained
    row = next(store.iter_rows(FIXTURE, "train"))
    model = store.model_from_row(row)

    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    assert forward.run(evaluation.permuted(model, 1), inputs) == forward.run(model, inputs)
    meta, _ = metamodel.load_checkpoint(checkpoint)
    report = evaluation.evaluate(meta, FIXTURE, "train", limit=3, permute_residual=1, progress=False)
    assert report["permute_residual"] == 1 and report["overall"]["n"] == 3


def test_dense_evaluation_reports_widths_and_fidelity(trained):
    meta, _ = metamodel.load_checkpoint(trained[1])
    dense = batching.Dense(fidelity=0.99, seed=1, heldout=300)
    report = evaluation.evaluate(
        meta, FIXTURE, "train", limit=3, dense=dense, verify_k=2, verify_limit=1, progress=False
    )
    assert report["overall"]["n"] == 3 and report["verification"]["n"] == 1
    assert report["densified"]["n"] == 3 and report["densified"]["fidelity_min"] >= 0.99
    assert "densified (fidelity bar 0.99)" in evaluation.format_table(report)


def test_fine_tuning_to_the_canonical_basis_on_dense_data(trained, tmp_path):
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(tmp_path), steps=2, minutes=None, eval_every=2, eval_examples=4, limit=8,
        init=str(trained[1]), basis="canonical", dense_data=(str(FIXTURE),),
    )  # fmt: skip
    meta, provenance = metamodel.load_checkpoint(training.train(cfg, progress=False))
    assert meta.cfg.encoding.basis == "canonical" and provenance["train_config"]["dense_data"] == [str(FIXTURE)]
    with pytest.raises(ValueError, match="rows encoding"):
        training.TrainConfig(data=".", out=".", encoding="flat", basis="canonical")


def test_training_with_augmentation_runs_and_flat_refuses_it(tmp_path):
    cfg = training.TrainConfig(
        data=str(FIXTURE), out=str(tmp_path), preset="tiny", steps=3, minutes=None, eval_every=3, eval_examples=8,
        augment=True,
    )  # fmt: skip
    assert training.train(cfg, progress=False).is_dir()
    with pytest.raises(ValueError, match="needs the rows encoding"):
        training.TrainConfig(data=".", out=".", encoding="flat", augment=True)


def test_repair_recovers_a_program_with_one_wrong_function(trained):
    from metamodels import decoding, weight_encoding
    from metamodels import tokens as tokens_mod

    _, checkpoint = trained
    meta, _ = metamodel.load_checkpoint(checkpoint)
    row = next(
        r for r in store.iter_rows(FIXTURE, "train") if "Map(lambda x: x + 1" in r["program"] or "x - 1" in r["program"]
    )
    truth, model = tokens_mod.detokenize(row["tokens"]), store.model_from_row(row)
    i = next(i for i, op in enumerate(truth.ops) if op.kind == "Map")
    wrong = dataclasses.replace(
        truth, ops=truth.ops[:i] + (dataclasses.replace(truth.ops[i], fn="double"),) + truth.ops[i + 1 :]
    )
    assert sum(1 for _ in decompilation.neighbours(wrong)) >= 32
    assert not decompilation.check(wrong, model).holds()
    found = [decoding.Candidate(tuple(tokens_mod.tokenize(wrong)), -1.0, wrong)]
    weights = weight_encoding.encode(model.params, meta.cfg.encoding)
    fixed, report = decompilation.repair_candidates(meta, weights, found, model, budget=10_000)
    assert report.holds()
    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    got = evaluation.outputs_of(fixed.program, inputs, False)
    for g, w in zip(got, json.loads(row["battery_outputs"])):  # agrees with the truth wherever both are defined
        assert all(forward.outputs_match([a], [b]) for a, b in zip(g, w) if a is not None and b is not None)


def test_shipped_checkpoint_decompiles_the_bundled_sort(capsys):
    from metamodels import modelfile

    meta, provenance = metamodel.load_checkpoint(decompilation.DEFAULT_CHECKPOINT)
    assert "train_command" in provenance and meta.cfg.encoding.writer_rank
    result = decompilation.decompile(modelfile.load(cli.EXAMPLES / "sort.safetensors"))
    assert result.program is not None and result.text.endswith("\n")
    assert cli.main(["decompile", str(cli.EXAMPLES / "sort.safetensors")]) == 0
    assert "return " in capsys.readouterr().out


def test_a_densified_model_is_decompiled_by_the_shipped_dense_checkpoint(tmp_path, capsys):
    from metamodels import densification, modelfile

    meta, provenance = metamodel.load_checkpoint(decompilation.DENSE_CHECKPOINT)
    assert meta.cfg.encoding.basis == "canonical" and "train_command" in provenance
    sort = modelfile.load(cli.EXAMPLES / "sort.safetensors")
    assert decompilation.shipped_checkpoint(sort) == decompilation.DEFAULT_CHECKPOINT
    dense = densification.densify(sort, seed=0).model
    assert decompilation.shipped_checkpoint(dense) == decompilation.DENSE_CHECKPOINT
    path = tmp_path / "dense.safetensors"
    modelfile.save(dense, path)
    assert cli.main(["decompile", str(path), "--beam", "4", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "return " in out and "dense-weights meta-model" in out
    result = decompilation.decompile(dense)
    assert result.checkpoint == str(decompilation.DENSE_CHECKPOINT) and result.program is not None


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
    meta = decompilation.load_metamodel()
    report = evaluation.evaluate(meta, None, "written", limit=6, progress=False)
    readout_right = [r for r in report["examples"] if r["functional_readout"]]
    assert all(r["read_out"] for r in readout_right if not r["functional"])
    assert report["overall"]["functional_readout"] >= report["overall"]["functional"]
