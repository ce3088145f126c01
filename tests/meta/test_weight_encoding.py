"""Weight encodings: rows are lossless and shape-agnostic; flat follows paper 000's recipe."""

from __future__ import annotations

import numpy as np
import pytest

from metamodels.meta import weight_encoding
from metamodels.rasp import text
from metamodels.transformer import compiler
from tests import cases

ROWS = weight_encoding.EncodingConfig("rows", width=8)


def _model(name: str):
    source, vocab, max_seq_len = cases.HAND_WRITTEN[name]
    return compiler.compile_program(text.parse_program(source), vocab, max_seq_len)


def _decode_rows(tokens: weight_encoding.WeightTokens, params: dict) -> dict:
    """Independent inverse of the rows encoding: rebuild every matrix from its tokens."""
    out = {k: np.zeros_like(v) for k, v in params.items()}
    names = weight_encoding.canonical_order(params)
    inverse = lambda v: np.where(np.abs(v) <= 2, v, np.sign(v) * 2 * np.exp(np.abs(v) - 2))  # noqa: E731
    for values, (role, layer, direction, chunk, _) in zip(tokens.values, tokens.tags):
        role = weight_encoding.ROLES[role - 1]
        name = next(n for n in names if weight_encoding._role_and_layer(n) == (role, layer - 1))
        w = out[name]
        lo = chunk * ROWS.width
        if role in ("attn_out_bias", "mlp_out_bias"):
            w[direction - 1] = inverse(values[0])
        elif w.ndim == 1:
            w[lo : lo + ROWS.width] = inverse(values[: len(w[lo : lo + ROWS.width])])
        elif role in ("token_embed", "pos_embed", "attn_out", "mlp_out"):
            w[lo : lo + ROWS.width, direction - 1] = inverse(values[: len(w[lo : lo + ROWS.width, 0])])
        else:
            w[direction - 1, lo : lo + ROWS.width] = inverse(values[: len(w[0, lo : lo + ROWS.width])])
    return out


@pytest.mark.parametrize("name", sorted(cases.HAND_WRITTEN))
def test_rows_encoding_is_lossless(name):
    model = _model(name)
    tokens = weight_encoding.encode(model.params, ROWS)
    rebuilt = _decode_rows(tokens, model.params)
    for k, v in model.params.items():
        np.testing.assert_allclose(rebuilt[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_rows_encoding_skips_zero_rows_and_tags_residual_directions():
    model = _model("paper_sort")
    tokens = weight_encoding.encode(model.params, ROWS)
    n_nonzero = sum(
        int((np.abs(v if v.ndim == 1 else v).reshape(len(v), -1) != 0).any(1).sum()) for v in model.params.values()
    )
    assert len(tokens) < sum(v.shape[0] for v in model.params.values())
    assert n_nonzero > 0 and tokens.tags[:, 2].max() <= model.d_model
    assert np.all(np.abs(tokens.values).max(axis=1) > 0)  # no all-zero token


def test_symlog_is_linear_inside_and_logarithmic_outside():
    x = np.array([-100.0, -2.0, -0.5, 0.0, 1.5, 2.0, 3.0, 1e6], np.float32)
    y = weight_encoding.symlog(x)
    np.testing.assert_allclose(y[1:6], x[1:6])
    assert y[6] == pytest.approx(2 + np.log(1.5)) and y[0] == pytest.approx(-(2 + np.log(50)))
    assert np.all(np.diff(weight_encoding.symlog(np.linspace(-50, 50, 1001))) > 0)


def test_flat_encoding_is_paper_layout():
    model = _model("frac_prevs")
    cfg = weight_encoding.EncodingConfig("flat", width=64, flat_size=8192, max_tokens=128)
    tokens = weight_encoding.encode(model.params, cfg)
    flat = np.concatenate([model.params[n].ravel() for n in weight_encoding.canonical_order(model.params)])
    assert tokens.values.shape == (128, 64)
    np.testing.assert_allclose(tokens.values.ravel()[: flat.size], weight_encoding.symlog(flat))
    assert np.all(tokens.values.ravel()[flat.size :] == np.float32(0.05))


def test_out_of_range_models_are_clear_errors():
    model = _model("paper_sort")
    with pytest.raises(weight_encoding.EncodingError, match="at most 10"):
        weight_encoding.encode(model.params, weight_encoding.EncodingConfig("rows", max_tokens=10))
    with pytest.raises(weight_encoding.EncodingError, match="flat encoding holds at most"):
        weight_encoding.encode(model.params, weight_encoding.EncodingConfig("flat", width=8, flat_size=64))
    with pytest.raises(weight_encoding.EncodingError, match="layout"):
        weight_encoding.encode({"x": np.zeros(3)}, ROWS)
    with pytest.raises(ValueError, match="unknown weight encoding"):
        weight_encoding.EncodingConfig("dense")  # type: ignore[arg-type]


def test_rows_encoding_handles_other_vocabularies_and_lengths():
    small, large = _model("letters"), _model("length_10")
    for model in (small, large):
        tokens = weight_encoding.encode(model.params, weight_encoding.EncodingConfig())
        assert tokens.values.shape[1] == 32 and len(tokens) == len(tokens.tags)


def test_writer_ranks_order_each_variables_values():
    model = _model("paper_sort")
    ranks = weight_encoding.writer_ranks(model.params)
    labels = model.config()["residual_labels"]
    by_variable: dict[str, list[int]] = {}
    for label, rank in zip(labels, ranks):
        by_variable.setdefault(label.split(":")[0], []).append(int(rank))
    # every variable computed by a sublayer has its values ranked 0, 1, 2, ... in residual (= value) order
    computed = [v for v in by_variable if v.startswith(("target", "sort")) and len(by_variable[v]) > 1]
    assert len(computed) == 2
    for name in computed:
        assert by_variable[name] == list(range(len(by_variable[name]))), (name, by_variable[name])
    tokens = weight_encoding.encode(model.params, weight_encoding.EncodingConfig())
    assert tokens.tags.shape[1] == weight_encoding.N_TAGS and tokens.tags[:, 4].max() >= 5
