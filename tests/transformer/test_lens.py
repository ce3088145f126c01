"""TransformerLens interop: exact round trips, and run_with_cache's residual stream equal to our forward pass."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from metamodels import cli
from metamodels.rasp import text
from metamodels.transformer import compiler, densification, forward, lens, modelfile, trained
from metamodels.transformer.compiled import CompiledModel
from tests import cases
from tests.transformer.test_trained import random_model


@functools.cache
def compiled_models() -> dict[str, CompiledModel]:
    out = {}
    for name, causal in (("paper_sort", False), ("frac_prevs", True), ("letters", False)):
        source, vocab, length = cases.HAND_WRITTEN[name]
        out[name] = compiler.compile_program(text.parse_program(source), vocab, length, causal=causal)
    out["dense"] = densification.densify(out["paper_sort"], target_fidelity=0.99, seed=0).model
    return out


def trained_models() -> dict[str, trained.TrainedModel]:
    return {
        "relu": random_model(0, d_model=16, n_heads=2, d_mlp=32),
        "gelu_layernorm_causal": random_model(
            1, d_model=16, n_heads=4, activation="gelu", norm="layernorm", causal=True
        ),
        "one_head_3_layers": random_model(2, d_model=8, n_layers=3, n_heads=1, d_mlp=8),
    }


def all_models() -> dict[str, lens.Model]:
    return {**compiled_models(), **trained_models()}


NAMES = ["paper_sort", "frac_prevs", "letters", "dense", "relu", "gelu_layernorm_causal", "one_head_3_layers"]


def some_ids(model: lens.Model) -> np.ndarray:
    """Token ids [3, T] of three inputs of one length (BOS first)."""
    rng = np.random.default_rng(0)
    if isinstance(model, trained.TrainedModel):
        vocab, length = model.config.input_vocab, model.config.max_seq_len
        return trained.encode(model.config, [tuple(vocab[i] for i in rng.choice(len(vocab), length)) for _ in range(3)])
    vocab, length = model.settings.vocab, model.settings.max_seq_len
    return np.stack([forward.encode(model, [vocab[i] for i in rng.choice(len(vocab), length)]) for _ in range(3)])


def same(a: lens.Model, b: lens.Model) -> bool:
    return set(a.params) == set(b.params) and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("name", NAMES)
def test_export_and_import_give_identical_tensors(tmp_path, name):
    model = all_models()[name]
    source = tmp_path / "model.safetensors"
    modelfile.save(model, source)
    assert cli.main(["export", str(source), "--to", "transformer-lens", "-o", str(tmp_path / "lens")]) == 0
    config = json.loads((tmp_path / "lens" / lens.CONFIG).read_text())
    assert config["transformer_lens"]["attention_dir"] == ("causal" if _causal(model) else "bidirectional")
    assert cli.main(["import", str(tmp_path / "lens"), "-o", str(tmp_path / "back.safetensors")]) == 0
    back = modelfile.load_any(tmp_path / "back.safetensors")
    assert same(modelfile.load_any(source), back)
    vocab = model.config.input_vocab if isinstance(model, trained.TrainedModel) else model.settings.vocab
    inputs = [[vocab[0]] * 3, [vocab[-1]] * 2]
    assert forward.run(back, inputs) == forward.run(model, inputs)


def _causal(model: lens.Model) -> bool:
    return model.config.causal if isinstance(model, trained.TrainedModel) else model.settings.causal


@pytest.mark.parametrize("name", NAMES)
def test_hooked_transformer_residual_stream_equals_our_forward_pass(name):
    pytest.importorskip("transformer_lens")
    model = all_models()[name]
    ht = lens.to_hooked_transformer(model)
    ids = some_ids(model)
    ours = trained.residuals(model, ids) if isinstance(model, trained.TrainedModel) else forward.residuals(model, ids)
    theirs = lens.residual_stream(ht, ids)
    assert len(ours) == len(theirs) == 1 + 2 * ht.cfg.n_layers
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(a).max())))
    logits = ht(__import__("torch").from_numpy(ids)).detach().numpy()
    want = trained.logits(model, ids) if isinstance(model, trained.TrainedModel) else forward.logits(model, ids)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    assert same(lens.from_hooked_transformer(ht), model)


def test_the_unembedding_is_the_models_own_not_an_identity():
    """TransformerLens's Tracr demo uses eye(d_model, d_vocab_out): wrong unless the output sorts first."""
    model = compiled_models()["paper_sort"]
    state = lens.lens_state(model)
    assert np.array_equal(state["unembed.W_U"], model.params["unembed"])
    assert not np.array_equal(state["unembed.W_U"], np.eye(*state["unembed.W_U"].shape, dtype=np.float32))


def test_bad_exports_are_one_clear_error(tmp_path, capsys):
    assert cli.main(["import", str(tmp_path), "-o", str(tmp_path / "m.safetensors")]) == 2
    assert "config.json" in capsys.readouterr().err
    lens.export(trained_models()["relu"], tmp_path / "x")
    (tmp_path / "x" / lens.WEIGHTS).write_bytes(b"garbage")
    assert cli.main(["import", str(tmp_path / "x"), "-o", str(tmp_path / "m.safetensors")]) == 2
    assert str(tmp_path / "x" / lens.WEIGHTS) in capsys.readouterr().err
    with pytest.raises(lens.LensError, match="header"):
        lens.from_hooked_transformer(object())
