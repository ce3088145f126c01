"""The trained-model spec: config checks, numpy forward, model files (compared with an independent torch oracle)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metamodels.errors import MetamodelsError
from metamodels.transformer import forward, modelfile, trained
from metamodels.transformer.trained import GPTConfig, TrainedModel


def random_model(seed: int = 0, metadata: dict | None = None, **kw) -> TrainedModel:
    config = GPTConfig(input_vocab=(1, 2, 3, "a"), output_vocab=(0, 1, 2.5), max_seq_len=6, **kw)
    rng = np.random.default_rng(seed)
    return TrainedModel(
        config, {n: rng.normal(0, 0.5, s).astype(np.float32) for n, s in config.shapes().items()}, metadata or {}
    )


def torch_reference(model: TrainedModel, ids: np.ndarray) -> np.ndarray:
    """A plain torch GPT written from the spec's text (per head, with nn.functional), independent of both forwards."""
    c, p = model.config, {k: torch.from_numpy(v).double() for k, v in model.params.items()}
    x = p["embed.W_E"][torch.from_numpy(ids)] + p["pos_embed.W_pos"][: ids.shape[1]]
    t = ids.shape[1]
    for layer in range(c.n_layers):
        b = f"blocks.{layer}."

        def ln(z, n, b=b):
            return F.layer_norm(z, (c.d_model,), p[b + n + ".w"], p[b + n + ".b"], 1e-5)

        h = ln(x, "ln1") if c.norm == "layernorm" else x
        heads = []
        for i in range(c.n_heads):
            q, k, v = (h @ p[b + f"attn.W_{n}"][i] + p[b + f"attn.b_{n}"][i] for n in "QKV")
            s = q @ k.transpose(-1, -2) / math.sqrt(c.d_head)
            if c.causal:
                s = s.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool)), float("-inf"))
            heads.append(torch.softmax(s, -1) @ v @ p[b + "attn.W_O"][i])
        x = x + sum(heads) + p[b + "attn.b_O"]
        h = ln(x, "ln2") if c.norm == "layernorm" else x
        pre = h @ p[b + "mlp.W_in"] + p[b + "mlp.b_in"]
        act = F.gelu(pre, approximate="tanh") if c.activation == "gelu" else F.relu(pre)
        x = x + act @ p[b + "mlp.W_out"] + p[b + "mlp.b_out"]
    if c.norm == "layernorm":
        x = F.layer_norm(x, (c.d_model,), p["ln_final.w"], p["ln_final.b"], 1e-5)
    return (x @ p["unembed.W_U"] + p["unembed.b_U"]).numpy()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"norm": "layernorm", "activation": "gelu"},
        {"causal": True, "n_layers": 3},
        {"causal": True, "norm": "layernorm", "n_heads": 2, "d_model": 16, "d_mlp": 8},
    ],
)
def test_numpy_forward_equals_a_torch_reference(kw):
    model = random_model(**kw)
    ids = np.random.default_rng(1).integers(1, 5, size=(7, 6))
    ids[:, 0] = 0
    ours, reference = trained.logits(model, ids), torch_reference(model, ids)
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max() + 1e-5


def test_without_a_prepended_bos_the_tokens_are_the_input():
    model = random_model(prepend_bos=False, causal=True)
    assert model.params["embed.W_E"].shape[0] == 4 and model.params["pos_embed.W_pos"].shape[0] == 6
    ids = trained.encode(model.config, [(1, "a", 3), (3, 2, 1)])
    assert ids.tolist() == [[0, 3, 2], [2, 1, 0]]  # row i is input_vocab[i]; no BOS
    ours, reference = trained.logits(model, ids), torch_reference(model, ids)
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max() + 1e-5
    best = ours.argmax(-1)[0]
    assert trained.run(model, [(1, "a", 3)])[0] == [model.config.output_vocab[j] for j in best]  # every position read


def test_a_causal_model_ignores_later_tokens():
    model = random_model(causal=True)
    a, b = model.config.input_vocab[:2]
    assert trained.run(model, [(a, b, a)])[0][:2] == trained.run(model, [(a, b, b)])[0][:2]


def test_model_file_round_trip_and_run(tmp_path):
    model = random_model(norm="layernorm", metadata={"program_text": "secret", "steps": 3})
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path)
    back = modelfile.load_any(path)
    assert isinstance(back, TrainedModel) and back.config == model.config
    assert all(np.array_equal(back.params[k], v) for k, v in model.params.items())
    assert "program_text" not in back.metadata and back.metadata["steps"] == 3
    inputs = [(1, "a", 3), (2,), (3, 3, 3, 3, 3, 3)]
    assert forward.run(back, inputs) == trained.run(model, inputs)
    with pytest.raises(MetamodelsError, match="not a compiled one"):
        modelfile.load(path)


def test_bad_configs_and_inputs_give_clear_errors(tmp_path):
    with pytest.raises(MetamodelsError, match="multiple of n_heads"):
        GPTConfig(input_vocab=(1,), output_vocab=(1,), max_seq_len=4, d_model=10, n_heads=4)
    with pytest.raises(MetamodelsError, match="activation"):
        GPTConfig(input_vocab=(1,), output_vocab=(1,), max_seq_len=4, activation="tanh")  # type: ignore[arg-type]
    model = random_model()
    with pytest.raises(MetamodelsError, match="not in the model's input vocabulary"):
        trained.run(model, [(9,)])
    with pytest.raises(MetamodelsError, match="outside 1..6"):
        trained.run(model, [(1,) * 7])
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(modelfile.ModelFileError, match="m.safetensors"):
        modelfile.load_any(path)
