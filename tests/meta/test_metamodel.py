"""Meta-model: KV-cached decoding equals the teacher-forced forward pass; checkpoints round-trip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from metamodels.meta import metamodel, training, weight_encoding
from metamodels.rasp import tokens as tokens_mod


def _inputs(batch=2, p=7, t=9, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, p, width, generator=g)
    tags = torch.randint(0, 5, (batch, p, 5), generator=g)
    mask = torch.ones(batch, p, dtype=torch.bool)
    mask[1, 5:] = False  # second example is shorter
    program = torch.randint(1, len(tokens_mod.VOCAB), (batch, t), generator=g)
    return values, tags, mask, program


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return metamodel.MetaModel(metamodel.MetaModelConfig(**{**metamodel.PRESETS["tiny"], **kw})).eval()


def test_kv_cached_steps_equal_teacher_forced_logits():
    model = _model()
    values, tags, mask, program = _inputs()
    with torch.no_grad():
        full = model(values, tags, mask, program)  # [B, T, V]
    cache = model.prefill(values, tags, mask)
    key_mask = mask
    for t in range(program.shape[1]):
        key_mask = torch.cat([key_mask, torch.ones(2, 1, dtype=torch.bool)], dim=1)
        logits, cache = model.step(program[:, t], t, cache, key_mask)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-4, atol=1e-4)


def test_many_programs_after_one_cached_prefix_equal_teacher_forcing():
    model = _model()
    values, tags, mask, program = (x[1:] for x in _inputs())  # the example with padded weight tokens
    programs = torch.cat([program, program.flip(1), program.roll(2, 1)])  # [3, T]
    with torch.no_grad():
        full = model(values.expand(3, -1, -1), tags.expand(3, -1, -1), mask.expand(3, -1), programs)
    cached = model.extend(model.prefill(values, tags, mask), mask, programs)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


def test_padding_weight_tokens_do_not_change_the_output():
    model = _model()
    values, tags, mask, program = _inputs()
    noisy = values.clone()
    noisy[1, 5:] = 100.0  # masked positions of example 1
    with torch.no_grad():
        torch.testing.assert_close(model(values, tags, mask, program)[1], model(noisy, tags, mask, program)[1])


def test_program_tokens_do_not_leak_backwards():
    model = _model()
    values, tags, mask, program = _inputs()
    changed = program.clone()
    changed[:, 5:] = 3
    with torch.no_grad():
        a, b = model(values, tags, mask, program), model(values, tags, mask, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("half", [False, True])
def test_checkpoint_round_trip(tmp_path, half):
    model = _model()
    metamodel.save_checkpoint(model, tmp_path / "ck", {"seed": 0}, half=half)
    loaded, provenance = metamodel.load_checkpoint(tmp_path / "ck")
    assert provenance == {"seed": 0} and loaded.cfg == model.cfg
    values, tags, mask, program = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(values, tags, mask, program), model(values, tags, mask, program), atol=2e-2 if half else 1e-6, rtol=0
        )


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(metamodel.CheckpointError, match="not a readable meta-model checkpoint"):
        metamodel.load_checkpoint(tmp_path)
    metamodel.save_checkpoint(_model(), tmp_path / "ck", {})
    vocab = json.loads((tmp_path / "ck" / "vocabulary.json").read_text())
    swapped = [vocab["tokens"][1], vocab["tokens"][0], *vocab["tokens"][2:]]
    (tmp_path / "ck" / "vocabulary.json").write_text(json.dumps({"version": "v0-other", "tokens": swapped}))
    with pytest.raises(metamodel.CheckpointError, match="program vocabulary v0-other is neither"):
        metamodel.load_checkpoint(tmp_path / "ck")
    metamodel.save_checkpoint(_model(), tmp_path / "ck2", {})
    (tmp_path / "ck2" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(metamodel.CheckpointError, match="model.safetensors"):
        metamodel.load_checkpoint(tmp_path / "ck2")


def test_a_checkpoint_of_an_older_vocabulary_loads_and_never_predicts_newer_tokens(tmp_path):
    """Vocabularies only grow at the end: a checkpoint trained before tokens were added keeps working."""
    n_old = len(tokens_mod.VOCAB) - 2  # before fn:table and TABLE
    torch.manual_seed(0)
    old = metamodel.MetaModel(dataclasses.replace(_model().cfg, vocab_size=n_old))
    metamodel.save_checkpoint(old, tmp_path / "ck", {})
    (tmp_path / "ck" / "vocabulary.json").write_text(
        json.dumps({"version": "v1-older", "tokens": list(tokens_mod.VOCAB.tokens[:n_old])})
    )
    loaded, _ = metamodel.load_checkpoint(tmp_path / "ck")
    assert loaded.cfg.vocab_size == len(tokens_mod.VOCAB)
    values, tags, mask = (
        torch.randn(1, 3, 32),
        torch.zeros(1, 3, 5, dtype=torch.long),
        torch.ones(1, 3, dtype=torch.bool),
    )
    program = torch.tensor([[tokens_mod.VOCAB.id("BOS"), tokens_mod.VOCAB.id("sop_0")]])
    new_logits, old_logits = loaded(values, tags, mask, program), old(values, tags, mask, program)
    assert torch.allclose(new_logits[..., :n_old], old_logits, atol=1e-5)
    assert torch.isinf(new_logits[..., n_old:]).all() and (new_logits[..., n_old:] < 0).all()


def test_config_round_trips_through_json():
    cfg = metamodel.MetaModelConfig(encoding=weight_encoding.EncodingConfig("flat", width=64, flat_size=1024))
    assert metamodel.MetaModelConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ValueError, match="multiple of n_heads"):
        metamodel.MetaModelConfig(d_model=30, n_heads=4)


def test_learning_rate_schedule():
    lrs = [training.lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert np.all(np.diff(lrs[10:]) <= 1e-12) and lrs[-1] >= 0.1
