"""Model files: save/load round trip (forward pass as oracle) and clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metamodels import artifacts
from metamodels.rasp import text
from metamodels.transformer import compiler, forward, modelfile
from tests import cases


@pytest.fixture(scope="module")
def model():
    source, vocab, max_seq_len = cases.HAND_WRITTEN["letters"]
    return compiler.compile_program(text.parse_program(source), vocab, max_seq_len)


def test_round_trip_preserves_weights_metadata_and_outputs(model, tmp_path):
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path, with_source=True)
    loaded = modelfile.load(path)
    assert set(loaded.params) == set(model.params)
    for key in model.params:
        np.testing.assert_array_equal(loaded.params[key], model.params[key])
    assert loaded.input_values == model.input_values and loaded.output_values == model.output_values
    assert loaded.settings == model.settings and loaded.layer_of == model.layer_of
    assert text.parse_program(loaded.program_text) == text.parse_program(model.program_text)
    inputs = [("a", "b", "a"), ("c",), ("b", "b", "c", "a", "a", "c")]
    assert forward.run(loaded, inputs) == forward.run(model, inputs)


def test_numerical_output_round_trip(tmp_path):
    source, vocab, max_seq_len = cases.HAND_WRITTEN["frac_prevs"]
    model = compiler.compile_program(text.parse_program(source), vocab, max_seq_len)
    modelfile.save(model, tmp_path / "f.safetensors")
    assert forward.run(modelfile.load(tmp_path / "f.safetensors"), [(1, 2, 1)]) == forward.run(model, [(1, 2, 1)])


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "nan", "shape", "missing", "metadata", "format",
     "a billion layers", "wrong type", "deep json", "unhashable vocabulary", "negative size"],
)  # fmt: skip
def test_damaged_files_give_clear_errors(model, tmp_path, damage):
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path)
    params, metadata = cases.read_model_file(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "nan":
        params["transformer/layer_0/mlp/linear_1/w"][0, 0] = np.nan
        cases.write_model_file(path, params, metadata)
    elif damage == "shape":
        params["unembed"] = params["unembed"][:, :-1].copy()
        cases.write_model_file(path, params, metadata)
    elif damage == "missing":
        del params["pos_embed/embeddings"]
        cases.write_model_file(path, params, metadata)
    elif damage == "metadata":
        config = json.loads(metadata["config"])
        del config["n_heads"]
        cases.write_model_file(path, params, {**metadata, "config": json.dumps(config)})
    elif damage == "format":
        cases.write_model_file(path, params, {**metadata, "format": "something-else"})
    else:  # issue 14: a 16 KB file claiming 10^9 layers grew memory without bound; odd metadata gave tracebacks
        config = json.loads(metadata["config"])
        if damage == "a billion layers":
            config["n_layers"] = 1_000_000_000
        elif damage == "wrong type":
            config["n_heads"] = "four"
        elif damage == "deep json":
            config["residual_labels"] = "DEEP"
        elif damage == "unhashable vocabulary":
            config["input_values"] = [[1], *config["input_values"][1:]]
        else:
            config["mlp_hidden"] = -3
        text = json.dumps(config).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
        cases.write_model_file(path, params, {**metadata, "config": text})
    with pytest.raises(modelfile.ModelFileError, match=str(path).replace("\\", "\\\\")):
        modelfile.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(modelfile.ModelFileError, match="no such file"):
        modelfile.load(tmp_path / "nope.safetensors")


def test_bundled_sort_model_is_the_compiled_sort_program():
    bundled = modelfile.load(artifacts.EXAMPLES / "sort.safetensors")
    fresh = compiler.compile_program(text.parse_program((artifacts.EXAMPLES / "sort.rasp").read_text()))
    assert bundled.params.keys() == fresh.params.keys()
    for k in fresh.params:
        np.testing.assert_allclose(bundled.params[k], fresh.params[k], err_msg=k)
