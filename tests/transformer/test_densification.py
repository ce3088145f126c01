"""Dense weights: rotation is exact, compression meets its bar on held-out inputs, densified models verify."""

from __future__ import annotations

import numpy as np
import pytest

from metamodels.dataset import sampling
from metamodels.decompilation import verification
from metamodels.transformer import battery, compiler, densification, modelfile
from tests import cases


def test_rotation_is_exactly_output_preserving():
    for s in cases.sampled(40, seed=0):
        model = compiler.compile_program(s.program)
        rotated = densification.rotate(model, seed=s.index)
        # float32 arithmetic on dense matrices: read-outs agree to ~1e-2, decoded outputs exactly
        inputs = cases.assert_same_logits(model, rotated, atol=1e-2)
        assert densification.fidelity(model, rotated, inputs) == 1.0
        assert (np.abs(rotated.params["token_embed/embeddings"]) > 1e-6).mean() > 0.5  # dense, unlike Tracr's


def test_compression_meets_the_bar_on_held_out_inputs():
    """8 tokens x length 6 (299,592 inputs): fidelity is measured on random inputs apart from the fitting set."""
    config = sampling.SamplerConfig(vocab=tuple(range(1, 9)), max_seq_len=6, min_ops=3, max_ops=7)
    samples, _ = sampling.sample_unique(config, 8, seed=1)
    smaller = 0
    for s in samples:
        model = compiler.compile_program(s.program, config.vocab, 6)
        result = densification.densify(model, target_fidelity=0.99, seed=3, heldout_max=3000)
        assert result.fidelity >= 0.99 and result.model.d_model == result.d_model <= model.d_model
        fresh = battery.make_battery(config.vocab, 6, per_length=300, seed=12345)  # neither fitting nor held-out
        assert densification.fidelity(model, result.model, fresh) >= 0.97
        smaller += result.d_model < model.d_model
    assert smaller >= len(samples) // 2


@pytest.mark.slow
def test_densified_models_verify_against_the_true_program(tmp_path):
    for s in cases.sampled(20, seed=0):
        model = compiler.compile_program(s.program)
        result = densification.densify(model, target_fidelity=1.0, seed=s.index)
        modelfile.save(result.model, tmp_path / "d.safetensors")
        loaded = modelfile.load(tmp_path / "d.safetensors")
        assert loaded.densified["d_model"] == result.d_model and loaded.residual_labels == ()
        assert verification.verify(s.program, loaded, weights=False).verdict != "refuted"


def test_fixed_width_is_honoured_and_checked():
    model = compiler.compile_program(cases.sampled(1, seed=0)[0].program)
    assert densification.densify(model, d_model=3).model.d_model == 3
    try:
        densification.densify(model, d_model=model.d_model + 1)
    except ValueError as e:
        assert "d_model must be between 1 and" in str(e)
    else:
        raise AssertionError("an impossible width was accepted")


def test_permuting_hidden_units_and_heads_is_output_preserving():
    changed = 0
    for s in cases.sampled(20, seed=2):
        model = compiler.compile_program(s.program)
        permuted = densification.permute_units(model, seed=s.index)
        # float32 sums in another order: MLP activations scaled for exactness (up to 1e5) leave ~1e-4 in logits of ~1
        cases.assert_same_logits(model, permuted, atol=1e-3)
        changed += any(not np.array_equal(permuted.params[k], model.params[k]) for k in model.params)
    assert changed >= 15  # models with one hidden unit and one head per layer cannot change
