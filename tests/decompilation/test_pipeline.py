"""The decompile pipeline: candidates, verification, repair, the shipped checkpoints, damaged inputs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from metamodels import artifacts, cli
from metamodels.dataset import store
from metamodels.decompilation import pipeline
from metamodels.evaluation import oracle
from metamodels.meta import decoding, metamodel, weight_encoding
from metamodels.rasp import program as program_mod
from metamodels.rasp import tokens as tokens_mod
from metamodels.transformer import battery, densification, forward, modelfile
from metamodels.transformer.compiled import CompiledModel
from tests import cases
from tests.cases import FIXTURE


def test_random_weights_still_decompile_to_a_valid_program(trained, monkeypatch):
    _, checkpoint = trained
    row = next(store.iter_rows(FIXTURE, "train"))
    model = store.model_from_row(row)
    rng = np.random.default_rng(0)
    # random values on the model's sparsity pattern (fully dense random weights exceed the token budget: tested below)
    noise = {k: (rng.normal(size=v.shape) * (v != 0)).astype(np.float32) for k, v in model.params.items()}
    noisy = CompiledModel.from_config(noise, model.settings, model.config())
    result = pipeline.decompile(noisy, checkpoint=checkpoint, beam=3, verify=False)
    assert result.program is not None and "return" in result.text
    assert result.status == "not_checked" and len(result.candidates) <= 6  # 3 decoded, each maybe read out
    dense = CompiledModel.from_config(
        {k: rng.normal(size=v.shape).astype(np.float32) for k, v in model.params.items()},
        model.settings,
        model.config(),
    )
    tokens = len(
        weight_encoding.encode(
            dense.params, weight_encoding.for_decompiling(metamodel.load_checkpoint(checkpoint)[0].cfg.encoding)
        )
    )
    assert 512 < tokens <= weight_encoding.MAX_DECOMPILE_TOKENS  # over the training limit, read when decompiling
    assert pipeline.decompile(dense, checkpoint=checkpoint, beam=2, verify=False).program is not None
    monkeypatch.setattr(weight_encoding, "MAX_DECOMPILE_TOKENS", 100)  # above the limit: one clear error
    with pytest.raises(
        ValueError, match=f"the model's weights make {tokens} rows tokens; this meta-model reads at most 512"
    ):
        pipeline.decompile(dense, checkpoint=checkpoint)


def test_decompile_with_verification_states_the_outcome(trained, tmp_path, capsys):
    _, checkpoint = trained
    sort = artifacts.EXAMPLES / "sort.safetensors"
    assert cli.main(["decompile", str(sort), "--checkpoint", str(checkpoint), "--beam", "2", "--verify", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] in ("verified", "unverified") and result["verification"] is not None
    assert all(c["verdict"] in (None, "equivalent", "agrees_where_defined", "refuted") for c in result["candidates"])


@pytest.mark.parametrize("damage", ["nan", "shape"])
def test_decompile_rejects_damaged_model_files(tmp_path, capsys, damage):
    path = tmp_path / "m.safetensors"
    path.write_bytes((artifacts.EXAMPLES / "sort.safetensors").read_bytes())
    params, metadata = cases.read_model_file(path)
    if damage == "nan":
        params["transformer/layer_0/mlp/linear_1/w"][0, 0] = np.nan
    else:
        params["unembed"] = params["unembed"][:, :-1].copy()
    cases.write_model_file(path, params, metadata)
    assert cli.main(["decompile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(path) in err


def test_repair_recovers_a_program_with_one_wrong_function(trained):

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
    assert sum(1 for _ in program_mod.neighbours(wrong)) >= 32
    assert not pipeline.check(wrong, model).holds()
    found = [decoding.Candidate(tuple(tokens_mod.tokenize(wrong)), -1.0, wrong)]
    weights = weight_encoding.encode(model.params, meta.cfg.encoding)
    fixed, report = pipeline.repair_candidates(meta, weights, found, model, budget=10_000)
    assert report.holds()
    inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
    got = oracle.outputs_of(fixed.program, inputs, False)
    for g, w in zip(got, json.loads(row["battery_outputs"])):  # agrees with the truth wherever both are defined
        assert all(forward.outputs_match([a], [b]) for a, b in zip(g, w) if a is not None and b is not None)


def test_shipped_checkpoint_decompiles_the_bundled_sort(capsys):

    meta, provenance = metamodel.load_checkpoint(pipeline.DEFAULT_CHECKPOINT)
    assert "train_command" in provenance and meta.cfg.encoding.writer_rank
    model = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    result = pipeline.decompile(model)  # the default mode: beam 32, verified, within the time budget
    assert result.status == "verified" and result.text.endswith("\n")
    inputs = [xs for xs in battery.make_battery(model.settings.vocab, 5, seed=4) if len(set(xs)) == len(xs)]
    assert oracle.same_outputs(oracle.outputs_of(result.program, inputs, False), [sorted(xs) for xs in inputs])
    assert cli.main(["decompile", str(artifacts.EXAMPLES / "sort.safetensors")]) == 0
    assert "# verified" in capsys.readouterr().out
    fast = pipeline.decompile(model, **pipeline.DecompileConfig(greedy=True).arguments())
    assert fast.status == "not_checked" and len(fast.candidates) <= 2  # one decoded, maybe its read-out variant


def test_a_model_too_large_for_the_meta_model_is_still_read_from_its_weights(trained, monkeypatch):
    _, checkpoint = trained
    model = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    monkeypatch.setattr(weight_encoding, "MAX_DECOMPILE_TOKENS", 8)  # sort's weights make more tokens than this
    meta = pipeline.load_metamodel(checkpoint)
    small = dataclasses.replace(meta.cfg, encoding=dataclasses.replace(meta.cfg.encoding, max_tokens=8))
    monkeypatch.setattr(meta, "cfg", small)
    result = pipeline.decompile(model, checkpoint=meta)  # wiring reads it whole; the meta-model is not needed
    assert result.status == "verified" and result.candidates[0].wiring
    with pytest.raises(weight_encoding.EncodingError, match="reads at most 8"):
        pipeline.decompile(model, checkpoint=meta, wiring=False)


def test_the_verification_budget_cuts_the_search_short_and_says_so(trained):
    _, checkpoint = trained
    model = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    result = pipeline.decompile(model, checkpoint=checkpoint, beam=8, budget=1e-9)
    assert result.status == "unverified" and result.out_of_time
    assert "time budget ran out" in result.describe()


def test_a_densified_model_is_decompiled_by_the_shipped_dense_checkpoint(tmp_path, capsys):

    meta, provenance = metamodel.load_checkpoint(pipeline.DENSE_CHECKPOINT)
    assert meta.cfg.encoding.basis == "canonical" and "train_command" in provenance
    sort = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    assert pipeline.shipped_checkpoint(sort) == pipeline.DEFAULT_CHECKPOINT
    dense = densification.densify(sort, seed=0).model
    assert pipeline.shipped_checkpoint(dense) == pipeline.DENSE_CHECKPOINT
    path = tmp_path / "dense.safetensors"
    modelfile.save(dense, path)
    assert cli.main(["decompile", str(path), "--beam", "4", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "return " in out and "dense-weights meta-model" in out
    result = pipeline.decompile(dense)
    assert result.checkpoint == str(pipeline.DENSE_CHECKPOINT) and result.program is not None
