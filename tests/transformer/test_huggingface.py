"""Hugging Face GPT-2 checkpoints: read without transformers, equal to transformers' own forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metamodels import cli
from metamodels.transformer import huggingface, modelfile, trained


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A random GPT-2 built by transformers (a test-only dependency) and saved as a checkpoint directory."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(directory, safe_serialization=True)
    return model, directory


def test_a_gpt2_equals_transformers_forward_pass(gpt2):
    import torch

    hf, directory = gpt2
    ours = huggingface.load_gpt2(directory)
    ids = np.random.default_rng(0).integers(0, 40, size=(4, 23))
    with torch.no_grad():
        want = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(trained.logits(ours, ids), want, atol=1e-5)
    assert ours.config.causal and not ours.config.prepend_bos and ours.config.norm == "layernorm"


def test_import_with_a_token_list_then_run(gpt2, tmp_path, capsys):
    import torch

    hf, directory = gpt2
    vocab = tmp_path / "tokens.txt"
    vocab.write_text("\n".join(["<bos>", *(f"t{i}" for i in range(1, 40))]))
    out = tmp_path / "gpt2.safetensors"
    assert cli.main(["import", str(directory), "--vocab", str(vocab), "-o", str(out)]) == 0
    model = modelfile.load_any(out)
    assert isinstance(model, trained.TrainedModel) and model.config.input_vocab[:2] == ("<bos>", "t1")
    capsys.readouterr()
    assert cli.main(["run", str(out), "<bos>", "t5", "t7"]) == 0
    with torch.no_grad():
        best = hf(torch.tensor([[0, 5, 7]])).logits[0].argmax(-1).tolist()
    assert capsys.readouterr().out.split() == [model.config.output_vocab[i] for i in best]


def write_checkpoint(directory, **config) -> None:
    directory.mkdir(exist_ok=True)
    base = {"model_type": "gpt2", "n_embd": 8, "n_head": 2, "n_layer": 1, "vocab_size": 5, "n_positions": 4}
    (directory / "config.json").write_text(json.dumps({**base, **config}))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"activation_function": "gelu"}, "activation 'gelu' is outside the spec"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
        ({"scale_attn_by_inverse_layer_idx": True}, "not supported"),
        ({"model_type": "llama"}, "not a GPT-2 config"),
        ({}, "model.safetensors: cannot read"),
    ],
)
def test_what_cannot_be_expressed_is_refused_with_the_reason(tmp_path, config, message):
    write_checkpoint(tmp_path / "ckpt", **config)
    with pytest.raises(huggingface.HuggingFaceError, match=message):
        huggingface.load_gpt2(tmp_path / "ckpt")


def test_a_wrong_token_list_is_one_error(gpt2, tmp_path, capsys):
    _, directory = gpt2
    (tmp_path / "short.txt").write_text("a\nb\n")
    assert cli.main(["import", str(directory), "--vocab", str(tmp_path / "short.txt"), "-o", str(tmp_path / "m")]) == 2
    assert "token list has 2 entries" in capsys.readouterr().err
