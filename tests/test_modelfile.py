"""Model files: save/load round trip (forward pass as oracle) and clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from metamodels import compiler, forward, modelfile
from metamodels.rasp import text
from tests import cases


@pytest.fixture(scope="module")
def model():
    source, vocab, max_seq_len = cases.HAND_WRITTEN["letters"]
    return compiler.compile_program(text.parse_program(source), vocab, max_seq_len)


def test_round_trip_preserves_weights_metadata_and_outputs(model, tmp_path):
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path)
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


def _rewrite(path, params, metadata):
    save_file(params, str(path), metadata=metadata)


def _read(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "nan", "shape", "missing", "metadata", "format"])
def test_damaged_files_give_clear_errors(model, tmp_path, damage):
    path = tmp_path / "m.safetensors"
    modelfile.save(model, path)
    params, metadata = _read(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "nan":
        params["transformer/layer_0/mlp/linear_1/w"][0, 0] = np.nan
        _rewrite(path, params, metadata)
    elif damage == "shape":
        params["unembed"] = params["unembed"][:, :-1].copy()
        _rewrite(path, params, metadata)
    elif damage == "missing":
        del params["pos_embed/embeddings"]
        _rewrite(path, params, metadata)
    elif damage == "metadata":
        config = json.loads(metadata["config"])
        del config["n_heads"]
        _rewrite(path, params, {**metadata, "config": json.dumps(config)})
    elif damage == "format":
        _rewrite(path, params, {**metadata, "format": "something-else"})
    with pytest.raises(modelfile.ModelFileError, match=str(path).replace("\\", "\\\\")):
        modelfile.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(modelfile.ModelFileError, match="no such file"):
        modelfile.load(tmp_path / "nope.safetensors")


def test_bundled_sort_model_is_the_compiled_sort_program():
    from metamodels import cli, compiler
    from metamodels.rasp import text

    bundled = modelfile.load(cli.EXAMPLES / "sort.safetensors")
    fresh = compiler.compile_program(text.parse_program((cli.EXAMPLES / "sort.rasp").read_text()))
    assert bundled.params.keys() == fresh.params.keys()
    for k in fresh.params:
        np.testing.assert_allclose(bundled.params[k], fresh.params[k], err_msg=k)
