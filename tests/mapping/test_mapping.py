"""Model mapping: the paper's graph encoder and T5-style decoder, its data, training, scoring and CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from metamodels import cli
from metamodels.mapping import data, graph_t5, training
from metamodels.zoo import build, stats, tasks
from metamodels.zoo.trainer import TrainerConfig

TINY = dict(n=6, shard_size=6, vocab_size=(3, 3), max_seq_len=(4, 4), d_model=(16, 16), layers=(2, 2), heads=(2, 2),
            lr=(5e-3, 5e-3), trainer=TrainerConfig(slots=6, max_steps=1000), data=tasks.DataConfig(pool=256, heldout=64),
            val_permille=0, test_permille=500)  # fmt: skip


@pytest.fixture(scope="module", params=["rasp", "python"])
def zoo(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"zoo_{request.param}")
    build.build_zoo(out, build.ZooConfig(language=request.param, seed=3, **TINY), workers=1)
    return out


def test_a_vertex_is_its_layers_parameters_in_order_padded_or_truncated(zoo):
    model = stats.model_from_row(next(build.read_zoo(zoo)))
    layer1 = [v.ravel() for n, v in model.params.items() if n.startswith("blocks.1.")]
    flat = np.concatenate(layer1)
    wide = data.vertex_features(model, flat.size + 10)
    assert wide.shape == (2, flat.size + 10)
    np.testing.assert_allclose(wide[1, : flat.size], flat, rtol=1e-3, atol=1e-3)  # float16 storage
    assert not wide[1, flat.size :].any()
    narrow = data.vertex_features(model, 7)
    np.testing.assert_allclose(narrow[0], model.params["blocks.0.attn.W_Q"].ravel()[:7], rtol=1e-3, atol=1e-3)


def test_graph_convolution_is_the_normalised_chain_with_self_loops():
    gcn = graph_t5.GCN(1, 1)
    with torch.no_grad():
        gcn.linear.weight.fill_(1.0)
        gcn.linear.bias.zero_()
    x = torch.tensor([[[1.0], [2.0], [4.0], [8.0]]])
    mask = torch.tensor([[True, True, True, False]])  # a 3-layer model padded to 4 vertices
    degree = [2, 3, 2]  # self-loop + neighbours
    want = [sum(x[0, j, 0].item() / math.sqrt(degree[i] * degree[j]) for j in range(3) if abs(i - j) <= 1)
            for i in range(3)]  # fmt: skip
    got = gcn(x, mask)[0, :, 0]
    np.testing.assert_allclose(got[:3].detach().numpy(), want, rtol=1e-6)
    assert got[3].item() == 0.0


def test_relative_buckets_are_exact_near_and_logarithmic_far():
    d = torch.tensor([0, 1, 15, 16, 31, 64, 127, 500])
    # T5: n < 16 -> n; else 16 + floor(log(n / 16) / log(128 / 16) * 16), at most 31 (31 -> 21.09, 64 -> 26.67)
    assert graph_t5.relative_bucket(d, 32, 128).tolist() == [0, 1, 15, 16, 21, 26, 31, 31]


def test_decoding_cannot_see_later_tokens():
    torch.manual_seed(0)
    model = graph_t5.GraphT5(graph_t5.GraphT5Config(features=8, vocab_size=11, dropout=0.0)).eval()
    graph, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    tokens = torch.randint(1, 11, (2, 6))
    changed = tokens.clone()
    changed[:, 4:] = 3
    a, b = model(graph, mask, tokens), model(graph, mask, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_targets_round_trip_through_the_vocabulary(zoo):
    vocab, examples = data.load(zoo)
    assert examples and all(e.target[0] == 1 and e.target[-1] == 2 for e in examples)
    for e in examples:
        strings = data.decode_strings(vocab, list(e.target))
        assert training._program(vocab, strings) is not None


def test_the_true_program_scores_perfectly_and_agrees_as_the_model_was_measured(zoo):
    vocab = data.vocabulary(json.loads((zoo / "manifest.json").read_text())["config"]["language"])
    for row in build.read_zoo(zoo):
        target = [vocab.ids[t] for t in data.target_strings(row["language"], row["program"])]
        s = training.score(vocab, target, row, target)
        assert s["exact"] and s["parses"] and s["functional"] and s["token_accuracy"] == 1.0
        assert s["agreement"] == pytest.approx(row["heldout_accuracy"], abs=1e-6)
        cut = training.score(vocab, target[: len(target) // 2], row, target)
        assert not cut["exact"] and not cut["parses"] and cut["token_accuracy"] < 1.0


def test_training_fits_a_few_models_and_the_cli_evaluates(zoo, tmp_path, capsys):
    vocab, examples = data.load(zoo, "train")
    config = training.MappingConfig(steps=80, batch_size=4, lr=3e-3, seed=0)
    torch.manual_seed(0)
    before = training.make_model(config, vocab, 200)
    before.eval()
    batch = training.collate(examples[:4])
    ckpt = tmp_path / "map.safetensors"
    assert cli.main(["mapping", "train", str(zoo), "-o", str(ckpt), "--steps", "80", "--batch-size", "4",
                     "--lr", "3e-3"]) == 0  # fmt: skip
    after, _, meta = training.load(ckpt)
    with torch.no_grad():
        assert training.lm_loss(after, *batch).item() < 0.5 * training.lm_loss(before, *batch).item()
    assert meta["train_models"] == len(examples) and meta["config"]["steps"] == 80
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert cli.main(["mapping", "evaluate", str(ckpt), str(zoo), "--json", str(report)]) == 0
    assert "token_accuracy" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["overall"]["models"] == sum(1 for _ in build.read_zoo(zoo, split="test"))
    assert cli.main(["mapping", "evaluate", str(ckpt), str(zoo), "--blind"]) == 0


def test_a_bad_checkpoint_or_zoo_is_one_error(zoo, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["mapping", "evaluate", str(bad), str(zoo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(bad) in err and "\n" not in err
    assert cli.main(["mapping", "train", str(tmp_path / "nowhere"), "-o", str(bad)]) == 2
    assert "not a zoo directory" in capsys.readouterr().err
