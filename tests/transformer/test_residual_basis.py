"""Canonical residual basis: read off the writers, unchanged by rotation, output-preserving, compact on dense models."""

from __future__ import annotations

import dataclasses

import numpy as np

from metamodels.meta import weight_encoding
from metamodels.transformer import compiler, densification, residual_basis
from tests import cases

CANONICAL = weight_encoding.EncodingConfig("rows", basis="canonical", min_row=0.01, max_tokens=100_000)


def test_any_rotation_gives_the_same_canonical_weights_and_tokens():
    for s in cases.sampled(20, seed=0):
        model = compiler.compile_program(s.program)
        rotated = densification.rotate(model, seed=s.index)
        a, b = residual_basis.canonicalize(model.params), residual_basis.canonicalize(rotated.params)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(b[name], a[name], atol=1e-4 * max(1.0, np.abs(a[name]).max()), err_msg=name)
        ta, tb = weight_encoding.encode(model.params, CANONICAL), weight_encoding.encode(rotated.params, CANONICAL)
        np.testing.assert_array_equal(ta.tags, tb.tags)
        np.testing.assert_allclose(ta.values, tb.values, atol=1e-3)
        # the stored basis is not invariant: that is what the canonical one fixes
        stored = weight_encoding.EncodingConfig("rows", max_tokens=100_000)
        assert len(weight_encoding.encode(rotated.params, stored)) > len(weight_encoding.encode(model.params, stored))


def test_canonical_basis_is_orthonormal_and_output_preserving():
    for s in cases.sampled(12, seed=4):
        model = compiler.compile_program(s.program)
        basis = residual_basis.canonical_basis(model.params)
        np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-9)
        assert basis.shape[1] <= model.d_model
        canonical = dataclasses.replace(model, params=residual_basis.canonicalize(model.params), residual_labels=())
        assert canonical.d_model == basis.shape[1]
        cases.assert_same_logits(model, canonical, atol=1e-2)


def test_a_direction_nobody_writes_is_dropped_and_covariance_holds():
    model = compiler.compile_program(cases.sampled(1, seed=0)[0].program)
    padded = residual_basis.change_basis(model.params, np.eye(model.d_model + 3)[: model.d_model])  # 3 unused dims
    assert padded["unembed"].shape[0] == model.d_model + 3
    assert residual_basis.canonical_basis(padded).shape[1] == residual_basis.canonical_basis(model.params).shape[1]
    rotation = densification.random_rotation(model.d_model, seed=9)
    turned = residual_basis.change_basis(model.params, rotation)
    np.testing.assert_allclose(
        residual_basis.canonical_basis(turned), rotation.T @ residual_basis.canonical_basis(model.params), atol=1e-6
    )


def test_compressed_models_stay_within_the_token_budget():
    sizes = []
    for s in cases.sampled(12, seed=3):
        model = compiler.compile_program(s.program)
        dense = densification.densify(model, seed=1, heldout_max=500).model
        sizes.append(
            (len(weight_encoding.encode(dense.params, CANONICAL)), len(weight_encoding.encode(model.params, CANONICAL)))
        )
    dense_sizes, sparse_sizes = np.array(sizes).T
    assert dense_sizes.max() <= 512
    assert np.median(dense_sizes) <= 2 * np.median(sparse_sizes)


def test_flat_encoding_refuses_a_basis():
    import pytest

    with pytest.raises(ValueError, match="rows options"):
        weight_encoding.EncodingConfig("flat", width=512, basis="canonical")
    with pytest.raises(ValueError, match="unknown residual basis"):
        weight_encoding.EncodingConfig("rows", basis="pca")
