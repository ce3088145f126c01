"""Model mapping: the paper's graph encoder and T5-style decoder, its data, training, scoring and CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from metamodels import cli
from metamodels.errors import MetamodelsError
from metamodels.mapping import data, decoding, graph_t5, training
from metamodels.zoo import build, stats


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
    inputs = {"graph": torch.randn(2, 3, 8), "mask": torch.ones(2, 3, dtype=torch.bool)}
    tokens = torch.randint(1, 11, (2, 6))
    changed = tokens.clone()
    changed[:, 4:] = 3
    a, b = model(inputs, tokens), model(inputs, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def _permuted(model, rng):
    """The same function with heads permuted within each layer and MLP units permuted."""

    params = dict(model.params)
    for layer in range(model.config.n_layers):
        b = f"blocks.{layer}."
        heads = rng.permutation(model.config.n_heads)
        for name in ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V", "W_O"):
            params[b + "attn." + name] = params[b + "attn." + name][heads]
        units = rng.permutation(model.config.d_mlp)
        params[b + "mlp.W_in"], params[b + "mlp.b_in"] = params[b + "mlp.W_in"][:, units], params[b + "mlp.b_in"][units]
        params[b + "mlp.W_out"] = params[b + "mlp.W_out"][units]
    return dataclasses.replace(model, params=params)


def _rotated(model, rng):
    """The same function with the residual stream rotated (exact without LayerNorm)."""
    import dataclasses

    q, _ = np.linalg.qr(rng.normal(size=(model.config.d_model, model.config.d_model)))
    q = q.astype(np.float32)
    params = {}
    for name, v in model.params.items():
        if name in ("embed.W_E", "pos_embed.W_pos") or name.endswith(("attn.b_O", "mlp.b_out")):
            params[name] = v @ q
        elif name.endswith(("W_Q", "W_K", "W_V")):
            params[name] = np.einsum("de,hdk->hek", q, v)
        elif name.endswith("attn.W_O"):
            params[name] = v @ q
        elif name.endswith("mlp.W_in") or name == "unembed.W_U":
            params[name] = q.T @ v
        elif name.endswith("mlp.W_out"):
            params[name] = v @ q
        else:
            params[name] = v
    return dataclasses.replace(model, params=params)


def test_circuit_features_are_invariant_to_heads_units_and_rotations(zoo):
    from metamodels.mapping import circuits
    from metamodels.transformer import trained

    rng = np.random.default_rng(0)
    for row in build.read_zoo(zoo):
        model = stats.model_from_row(row)
        f = circuits.features(model)
        xs = [tuple(x) for x in json.loads(row["heldout_inputs"])[:8]]
        variants = [_permuted(model, rng)] + ([_rotated(model, rng)] if model.config.norm == "none" else [])
        for other in variants:
            assert trained.run(other, xs) == trained.run(model, xs)  # the variant computes the same function
            g = circuits.features(other)
            order = lambda a: np.sort(a.astype(np.float32), axis=0)  # noqa: E731 - heads and units as sets
            np.testing.assert_allclose(order(g["heads"]), order(f["heads"]), atol=2e-2)
            for layer in range(model.config.n_layers):
                np.testing.assert_allclose(order(g["units"][layer]), order(f["units"][layer]), atol=2e-2)
            np.testing.assert_allclose(g["direct"].astype(np.float32), f["direct"].astype(np.float32), atol=2e-2)


def test_targets_round_trip_through_the_vocabulary(zoo):
    vocab, examples = data.load(zoo)
    assert examples and all(e.target[0] == 1 and e.target[-1] == 2 for e in examples)
    for e in examples:
        strings = data.decode_strings(vocab, list(e.target))
        assert data.parse_decoded(vocab, strings) is not None


def test_the_true_program_scores_perfectly_and_agrees_as_the_model_was_measured(zoo):
    vocab = data.vocabulary(json.loads((zoo / "manifest.json").read_text())["config"]["language"])
    for row in build.read_zoo(zoo):
        target = [vocab.ids[t] for t in data.target_strings(row["language"], row["program"])]
        s = training.score(vocab, target, row, target)
        assert s["exact"] and s["parses"] and s["functional"] and s["token_accuracy"] == 1.0
        assert s["agreement"] == pytest.approx(row["heldout_accuracy"], abs=1e-6)
        cut = training.score(vocab, target[: len(target) // 2], row, target)
        assert not cut["exact"] and not cut["parses"] and cut["token_accuracy"] < 1.0


def test_training_fits_a_few_models_and_the_cli_evaluates(zoo, checkpoint, tmp_path, capsys):
    _, _, meta = training.load(checkpoint)
    config = training.MappingConfig(**meta["config"])
    vocab, examples = data.load(zoo, "train", config.featurize)
    torch.manual_seed(0)
    before = training.make_model(config, vocab, 200).eval()
    batch = training.collate(config, examples[:4])
    after, _, meta = training.load(checkpoint)
    with torch.no_grad():
        assert training.lm_loss(after, *batch).item() < 0.5 * training.lm_loss(before, *batch).item()
    assert meta["train_models"] == len(examples) and meta["config"]["steps"] == 80
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--json", str(report)]) == 0
    assert "token_accuracy" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["overall"]["models"] == sum(1 for _ in build.read_zoo(zoo, split="test"))
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--blind"]) == 0
    # --beam: grammar-constrained candidates, the one agreeing most with the model scored; every one parses
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--beam", "3", "--probes", "32",
                     "--limit", "4", "--json", str(report)]) == 0  # fmt: skip
    overall = json.loads(report.read_text())["overall"]
    assert overall["parses"] == 1.0 and overall["functional"] <= overall["any_functional"]
    assert overall["agrees_wrong"] <= overall["agrees"]
    assert "beam 3 and pool 0 searched" in capsys.readouterr().out
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--beam", "0"]) == 2  # nothing to search
    assert capsys.readouterr().err.startswith("error: --beam")
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--beam", "2", "--widen", "0"]) == 2
    assert "--widen at least 1" in capsys.readouterr().err
    # --beam 0 --pool N: the prior pool and its neighbours alone; what the first came from is counted
    assert cli.main(["mapping", "evaluate", str(checkpoint), str(zoo), "--beam", "0", "--pool", "5", "--probes", "32",
                     "--limit", "4", "--widen", "1", "--json", str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["widen"] == 1
    overall = json.loads(report.read_text())["overall"]
    assert overall["from_beam"] == 0.0 and overall["from_prior"] + overall["from_neighbour"] == 1.0


def test_decompile_reads_an_exported_trained_model(zoo, checkpoint, tmp_path, capsys, monkeypatch):
    from metamodels.mapping import decompile

    row = next(build.read_zoo(zoo, split="test"))
    model_file = tmp_path / "trained.safetensors"
    assert cli.main(["zoo", "export", str(zoo), row["id"], "-o", str(model_file)]) == 0
    capsys.readouterr()
    language = row["language"]
    code = cli.main(["decompile", str(model_file), "--checkpoint", str(checkpoint), "--language", language, "--beam", "4",
                     "--json"])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == (0 if result["text"] is not None else 1)
    assert result["agreement"] is None or 0.0 <= result["agreement"]["rate"] <= 1.0
    # With the true program's tokens decoded, the measured agreement is the model's own accuracy on fresh inputs.
    vocab = data.vocabulary(language)
    truth = [vocab.ids[t] for t in data.target_strings(language, row["program"])]
    program = data.parse_decoded(vocab, data.decode_strings(vocab, truth))
    monkeypatch.setattr(decoding, "beam_search", lambda *a: [decoding.Decoded(tuple(truth), 0.0, program)])
    mapped = decompile.decompile(stats.model_from_row(row), checkpoint, language)
    assert mapped.text is not None and mapped.agreement.rate >= 0.9 and mapped.agreement.compared > 0
    assert "agreement with the model" in mapped.describe()


def test_verify_measures_a_trained_models_agreement_with_a_program(zoo, tmp_path, capsys):
    rows = list(build.read_zoo(zoo))
    model_file = tmp_path / "trained.safetensors"
    assert cli.main(["zoo", "export", str(zoo), rows[0]["id"], "-o", str(model_file)]) == 0
    suffix = ".py" if rows[0]["language"] == "python" else ".rasp"
    own = tmp_path / f"own{suffix}"
    own.write_text(rows[0]["program"])
    capsys.readouterr()
    assert cli.main(["verify", str(own), str(model_file), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["agrees"] and measured["rate"] >= 0.95
    other = next(r for r in rows if r["fingerprint"] != rows[0]["fingerprint"])  # another behaviour
    wrong = tmp_path / f"wrong{suffix}"
    wrong.write_text(other["program"])
    code = cli.main(["verify", str(wrong), str(model_file), "--json"])
    measured = json.loads(capsys.readouterr().out)
    assert code == (0 if measured["agrees"] else 1) and measured["rate"] < 1.0


def test_the_black_box_finds_a_train_program_on_the_train_split(zoo, capsys, tmp_path):
    from metamodels.mapping import blackbox

    summary = blackbox.evaluate(zoo, "train", pool=100, probes=64, progress=False)
    # every train program is in the pool, and 64 probes tell these few programs apart: functional on train
    assert summary["overall"]["functional"] == 1.0 and summary["overall"]["agreement"] >= 0.95
    report = tmp_path / "bb.json"
    assert cli.main(["mapping", "baseline", str(zoo), "--pool", "50", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["overall"]["models"] == sum(1 for _ in build.read_zoo(zoo, split="test"))


def test_a_bad_checkpoint_or_zoo_is_one_error(zoo, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["mapping", "evaluate", str(bad), str(zoo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(bad) in err and "\n" not in err
    assert cli.main(["mapping", "train", str(tmp_path / "nowhere"), "-o", str(bad)]) == 2
    assert "not a zoo directory" in capsys.readouterr().err


def test_mapping_plot_draws_summaries_side_by_side_and_refuses_other_json(tmp_path, capsys):
    row = {"models": 2, "token_accuracy": 0.5, "exact": 0.0, "parses": 1.0, "functional": 0.5, "agreement": 0.7}
    summary = {"overall": row, "by_size": {"1": row, "2": row}, "by_params": {"1e3": row}}
    (tmp_path / "a.json").write_text(json.dumps(summary))
    assert cli.main(["mapping", "plot", str(tmp_path / "a.json"), "--labels", "ours", "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    (tmp_path / "b.json").write_text("{}")
    assert cli.main(["mapping", "plot", str(tmp_path / "b.json"), "-o", str(tmp_path / "q.png")]) == 2
    assert "not a mapping evaluation summary" in capsys.readouterr().err


@pytest.mark.parametrize("language", ["rasp", "python"])
def test_the_shipped_checkpoints_load_with_their_language_and_a_prior_that_parses(language):
    from metamodels.mapping import decompile

    model, vocab, meta = training.load(decompile.default_checkpoint(language))
    assert vocab.language == meta["language"] == language and meta["train_programs"] > 0
    prior = [data.parse_program(language, t) for t in meta["prior"]]
    # the train programs (docs/mapping/add_prior.py: a finished rebuild of the zoo may hold a few more)
    assert 0 < len(prior) <= 1.01 * meta["train_programs"] and len(set(meta["prior"])) == len(prior)


def _random_model(input_vocab, output_vocab, max_seq_len, seed=0):
    from metamodels.transformer import trained

    config = trained.GPTConfig(d_model=16, n_layers=2, n_heads=2, d_mlp=8, norm="layernorm", activation="gelu",
                               input_vocab=tuple(input_vocab), output_vocab=tuple(output_vocab),
                               max_seq_len=max_seq_len, causal=True)  # fmt: skip
    rng = np.random.default_rng(seed)
    params = {n: rng.normal(size=s).astype(np.float32) for n, s in config.shapes().items()}
    return trained.TrainedModel(config, params)


def test_a_model_wider_than_the_circuit_grid_is_read_on_an_evenly_spaced_subset_of_its_rows():
    from metamodels.mapping import circuits
    from metamodels.transformer import trained

    big = _random_model(range(40), range(-5, 45), 30)  # 40 values, length 30, 50 outputs: over every limit
    tokens = circuits.grid(41, circuits.TOKENS, first=1)
    positions = circuits.grid(31, circuits.POSITIONS, first=1)
    outputs = circuits.kept_outputs(big.config)
    assert tokens[0] == 0 and tokens[1] == 1 and tokens[-1] == 40 and len(set(tokens)) == circuits.TOKENS
    assert positions[-1] == 30 and len(set(positions)) == circuits.POSITIONS and list(positions) == sorted(positions)
    kept_values = [big.config.input_vocab[r - 1] for r in tokens[1:]]
    out_values = [big.config.output_vocab[c] for c in outputs]
    assert len(outputs) == circuits.OUTPUTS and set(kept_values) <= set(out_values)  # a next-token head's own values
    # the oracle: the same model cut down to the kept rows by hand reads the same circuits
    p = big.params
    small_params = dict(p) | {"embed.W_E": p["embed.W_E"][tokens], "pos_embed.W_pos": p["pos_embed.W_pos"][positions],
                              "unembed.W_U": p["unembed.W_U"][:, outputs], "unembed.b_U": p["unembed.b_U"][outputs]}  # fmt: skip
    small_config = dataclasses.replace(big.config, input_vocab=tuple(kept_values), output_vocab=tuple(out_values),
                                       max_seq_len=len(positions) - 1)  # fmt: skip
    small = trained.TrainedModel(small_config, small_params)
    f, g = circuits.features(big), circuits.features(small)
    for key in f:
        np.testing.assert_array_equal(f[key], g[key])
    with pytest.raises(MetamodelsError, match="up to 8 layers"):
        circuits.features(_too_deep())


def _too_deep():
    from metamodels.transformer import trained

    config = trained.GPTConfig(d_model=8, n_layers=9, n_heads=1, d_mlp=4, input_vocab=(0, 1), output_vocab=(0, 1),
                               max_seq_len=4)  # fmt: skip
    return trained.TrainedModel(config, {n: np.zeros(s, np.float32) for n, s in config.shapes().items()})


def test_decompile_reads_a_gpt2_checkpoint_directory_with_a_150_token_vocabulary_and_context(tmp_path, capsys):
    """A GPT-2 (Hugging Face layout) over 150 tokens and 150 positions that outputs each token mod 3 (written by
    hand: blocks zero, one-hot embeddings, the head reading x's row into column x mod 3) decompiles with the shipped
    checkpoint to a program that computes x mod 3 on every probe."""
    from safetensors.numpy import save_file

    V, D = 150, 160
    e = np.eye(V, D, dtype=np.float32)
    state = {"wte.weight": e, "wpe.weight": np.zeros((V, D), np.float32), "ln_f.weight": np.ones(D, np.float32),
             "ln_f.bias": np.zeros(D, np.float32), "lm_head.weight": np.stack([e[np.arange(V) % 3 == y].sum(0)
                                                                               for y in range(V)])}  # fmt: skip
    shapes = {"attn.c_attn.weight": (D, 3 * D), "attn.c_attn.bias": (3 * D,), "attn.c_proj.weight": (D, D),
              "attn.c_proj.bias": (D,), "mlp.c_fc.weight": (D, 4 * D), "mlp.c_fc.bias": (4 * D,),
              "mlp.c_proj.weight": (4 * D, D), "mlp.c_proj.bias": (D,), "ln_1.bias": (D,), "ln_2.bias": (D,)}  # fmt: skip
    state |= {f"h.0.{n}": np.zeros(s, np.float32) for n, s in shapes.items()}
    state |= {f"h.0.ln_{i}.weight": np.ones(D, np.float32) for i in (1, 2)}
    directory = tmp_path / "gpt2"
    directory.mkdir()
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": V, "n_positions": V,
                                                       "n_embd": D, "n_head": 4, "n_layer": 1}))  # fmt: skip
    assert cli.main(["decompile", str(directory), "--json"]) == 0  # the checkpoint directory itself, as `import` reads it
    result = json.loads(capsys.readouterr().out)
    assert result["agrees"] and result["agreement"]["rate"] == 1.0 and not result["agreement"]["counterexamples"]
    assert result["agreement"]["longest"] == decoding.PROBE_LENGTH < V  # probed up to 128 of its 150 positions
    program = data.parse_program("rasp", result["text"])
    xs = list(range(0, V, 7))
    assert list(program.evaluate(xs)) == [x % 3 for x in xs]
    assert cli.main(["decompile", str(directory), "--max-length", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --max-length must be at least 1")
    assert cli.main(["decompile", str(tmp_path)]) == 2  # a directory that holds no model
    assert "neither a Hugging Face GPT-2 checkpoint nor a TransformerLens export" in capsys.readouterr().err
