"""Weights in any residual basis -> the same weights in a basis read off the weights themselves.

A transformer computes the same function in any orthonormal residual basis:
rotate every matrix that writes to the residual stream by A and every matrix
that reads from it by Aᵀ (:func:`change_basis`). Tracr's basis is axis-aligned,
one variable value per direction; a dense (rotated, PCA-compressed) model hides
that, and a meta-model that reads residual directions sees noise.

:func:`canonical_basis` undoes any rotation without knowing it. It walks the
*writers* of the residual stream in a fixed order (token embedding rows,
position embedding rows, then per layer the attention output rows, its bias,
the MLP output rows, its bias) and Gram–Schmidt-orthonormalises their residual
vectors, keeping a vector only when it adds a new direction. The resulting basis
turns with the model (writers rotate by A, so does every Gram–Schmidt vector),
so the weights expressed in it are the same whatever rotation was applied:
``canonicalize(rotate(m)) == canonicalize(m)`` up to float error. Directions
no writer touches are always zero in the residual stream and are dropped, so
canonicalising is exactly output-preserving.

On Tracr's own weights the basis is nearly Tracr's: an MLP's output rows are
one-hot value directions, so Gram–Schmidt returns those directions (in the order
the hidden units first write them); only blocks whose rows overlap (the token
embedding also writes the ``one`` direction) come out as mixtures.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_EMBEDDINGS = ("token_embed/embeddings", "pos_embed/embeddings")
_LAYER_WRITES = ("attn/linear/w", "attn/linear/b", "mlp/linear_2/w", "mlp/linear_2/b")
_LAYER_READS = ("attn/query/w", "attn/key/w", "attn/value/w", "mlp/linear_1/w")
NEW_DIRECTION = 1e-3  # a writer vector adds a direction if this fraction of its norm is outside the span so far
ZERO = 1e-5  # entries below this fraction of their matrix's largest are float error, set to 0


def n_layers(params: Mapping[str, np.ndarray]) -> int:
    """Number of layers of weights in :mod:`metamodels.transformer.compiled`'s layout."""
    return sum(1 for k in params if k.endswith("attn/query/w"))


def writers(params: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the matrices and biases that write to the residual stream, in canonical order."""
    return list(_EMBEDDINGS) + [f"transformer/layer_{i}/{k}" for i in range(n_layers(params)) for k in _LAYER_WRITES]


def change_basis(params: Mapping[str, np.ndarray], basis: np.ndarray) -> dict[str, np.ndarray]:
    """Re-express the residual stream in ``basis`` [D, d'] (orthonormal columns): x' = x @ basis.

    Writers (embeddings, attention/MLP outputs and their biases) are multiplied
    by ``basis`` on the right, readers (query, key, value, MLP input, read-out)
    by ``basisᵀ`` on the left; other parameters are unchanged. float32 out.
    """
    basis = np.asarray(basis, np.float64)
    out = dict(params)
    for name in writers(params):
        out[name] = (np.asarray(params[name], np.float64) @ basis).astype(np.float32)
    reads = ["unembed"] + [f"transformer/layer_{i}/{k}" for i in range(n_layers(params)) for k in _LAYER_READS]
    for name in reads:
        out[name] = (basis.T @ np.asarray(params[name], np.float64)).astype(np.float32)
    return out


def writer_vectors(params: Mapping[str, np.ndarray]) -> np.ndarray:
    """[n_writer_vectors, D] float64: every writer row (biases as one row each), in canonical order."""
    rows = [np.atleast_2d(np.asarray(params[name], np.float64)) for name in writers(params)]
    return np.concatenate(rows)


def canonical_basis(params: Mapping[str, np.ndarray]) -> np.ndarray:
    """[D, d'] orthonormal columns spanning everything written to the residual stream, read off the writers.

    Rotation-covariant: for orthogonal A, ``canonical_basis(change_basis(p, A)) == Aᵀ @ canonical_basis(p)``.
    """
    vectors = writer_vectors(params)
    scale = np.abs(vectors).max(initial=0.0)
    d = vectors.shape[1]
    basis, k = np.zeros((d, d)), 0
    for v in vectors:
        norm = np.linalg.norm(v)
        if norm <= ZERO * scale or k == d:
            continue
        r = v - basis[:, :k] @ (basis[:, :k].T @ v)
        r -= basis[:, :k] @ (basis[:, :k].T @ r)  # twice: orthogonal to float precision
        if np.linalg.norm(r) > NEW_DIRECTION * norm:
            basis[:, k] = r / np.linalg.norm(r)
            k += 1
    return basis[:, :k]


def canonicalize(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights in their canonical residual basis; entries that are float error set to exactly 0."""
    out = change_basis(params, canonical_basis(params))
    for name, w in out.items():
        largest = np.abs(w).max(initial=0.0)
        out[name] = np.where(np.abs(w) > ZERO * largest, w, 0).astype(np.float32)
    return out
