"""Dense weights (``metamodels.densify``): PCA-compress and randomly rotate a compiled model's residual stream.

Tracr models are sparse, one variable per residual direction. ``densify`` makes
them dense without changing what they compute (paper 000, section 3.2):

- **Compression.** Residual activations (every sublayer, position and input of a
  fitting set) are decomposed by (uncentred) PCA; the top d' directions V
  [D, d'] become the new residual basis: every matrix that writes to the
  residual stream (embeddings, attention output, MLP output) is multiplied by V
  on the right, every matrix that reads from it (query, key, value, MLP input,
  read-out) by Vᵀ on the left. d' is the smallest for which the decoded outputs
  are unchanged on at least ``fidelity`` of held-out inputs (not the fitting ones)
  of every length: a bar on all lengths together lets the few short inputs go
  (every input of length 1 wrong costs 5 of 4,000), and they are inputs too.
- **Rotation.** A random orthogonal A [d', d'] (seeded) is applied the same way;
  this is exactly output-preserving.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

from metamodels import options
from metamodels.errors import MetamodelsError
from metamodels.transformer import battery, forward, residual_basis
from metamodels.transformer.compiled import CompiledModel, Value

FIDELITY = 0.99  # the default bar: decoded outputs unchanged on at least this fraction of held-out inputs


@dataclasses.dataclass(frozen=True)
class DensifyConfig:
    """What ``metamodels densify`` does to a model file (see :func:`densify`)."""

    fidelity: float = options.option(FIDELITY, help="fraction of held-out inputs whose output must not change")
    d_model: int | None = options.option(None, help="compress to exactly this width instead")
    seed: int = options.option(0, help="seed of the rotation and the inputs")

    def __post_init__(self) -> None:
        if not 0.0 < self.fidelity <= 1.0:
            raise MetamodelsError(f"--fidelity must be in (0, 1], got {self.fidelity}")
        if self.d_model is not None and self.d_model < 1:
            raise MetamodelsError(f"--d-model must be at least 1, got {self.d_model}")


def change_basis(model: CompiledModel, basis: np.ndarray) -> CompiledModel:
    """Re-express the residual stream in ``basis`` [D, d'] (orthonormal columns): x' = x @ basis."""
    return dataclasses.replace(model, params=residual_basis.change_basis(model.params, basis), residual_labels=())


def permute_units(model: CompiledModel, seed: int) -> CompiledModel:
    """The same model with each layer's MLP hidden units and attention heads in a random order (exact).

    Residual labels are kept: the residual basis does not change. What Tracr's
    own unit order tells a meta-model is what this augmentation takes away.
    """
    rng = np.random.default_rng(seed)
    p = dict(model.params)
    heads, k = model.n_heads, model.key_size
    for layer in range(model.n_layers):
        at = f"transformer/layer_{layer}/"
        units = (np.arange(heads * k).reshape(heads, k)[rng.permutation(heads)]).ravel()
        for key in ("attn/query", "attn/key", "attn/value"):
            p[at + key + "/w"], p[at + key + "/b"] = p[at + key + "/w"][:, units], p[at + key + "/b"][units]
        p[at + "attn/linear/w"] = p[at + "attn/linear/w"][units]
        hidden = rng.permutation(p[at + "mlp/linear_1/w"].shape[1])
        p[at + "mlp/linear_1/w"], p[at + "mlp/linear_1/b"] = (
            p[at + "mlp/linear_1/w"][:, hidden],
            p[at + "mlp/linear_1/b"][hidden],
        )
        p[at + "mlp/linear_2/w"] = p[at + "mlp/linear_2/w"][hidden]
    return dataclasses.replace(model, params=p)


def random_rotation(dim: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal matrix [dim, dim]."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def rotate(model: CompiledModel, seed: int) -> CompiledModel:
    """The same model in a random orthonormal residual basis (exactly output-preserving)."""
    return change_basis(model, random_rotation(model.d_model, seed))


def principal_directions(model: CompiledModel, inputs: Sequence[Sequence[Value]]) -> tuple[np.ndarray, np.ndarray]:
    """(V [D, D] right singular vectors, singular values [D]) of the residual activations on ``inputs``."""
    rows = []
    for length in sorted({len(xs) for xs in inputs}):
        ids = np.stack([forward.encode(model, xs) for xs in inputs if len(xs) == length])
        rows += [r.reshape(-1, model.d_model) for r in forward.residuals(model, ids)]
    activations = np.concatenate(rows).astype(np.float64)  # [samples, D]
    _, s, vt = np.linalg.svd(activations, full_matrices=False)
    return vt.T, s


def fidelity(model: CompiledModel, other: CompiledModel, inputs: Sequence[Sequence[Value]]) -> float:
    """Fraction of inputs on which ``other`` decodes like ``model`` at every position ``model`` decides.

    A categorical position is decided when its top read-out score leads the
    next by more than 0.01 (Tracr's outputs are one-hot; a tie, e.g. an Aggregate
    that selects nothing, decodes arbitrarily and is not counted); ``other`` must
    then decode the same value, also by a clear margin.
    """
    counts = agreement_by_length(model, other, inputs)
    return sum(agree for agree, _ in counts.values()) / len(inputs)


def agreement_by_length(
    model: CompiledModel, other: CompiledModel, inputs: Sequence[Sequence[Value]]
) -> dict[int, tuple[int, int]]:
    """Per input length: (inputs on which ``other`` decodes like ``model``, as in :func:`fidelity`; inputs)."""
    out = {}
    for length in sorted({len(xs) for xs in inputs}):
        batch = [xs for xs in inputs if len(xs) == length]
        ids = np.stack([forward.encode(model, xs) for xs in batch])
        a, b = forward.logits(model, ids), forward.logits(other, ids)
        if model.output_encoding == "numerical":
            same = np.abs(a - b)[:, 1:, 0] <= 1e-3 * np.maximum(1.0, np.abs(a[:, 1:, 0]))
        else:
            decided, clear = forward.margin(a) > forward.DECIDED, forward.margin(b) > forward.DECIDED
            same = ((a.argmax(-1) == b.argmax(-1)) & clear)[:, 1:] | ~decided[:, 1:]
        out[length] = (int(same.all(axis=1).sum()), len(batch))
    return out


@dataclasses.dataclass(frozen=True)
class Densified:
    """A densified model and how it was made."""

    model: CompiledModel
    d_model: int
    original_d_model: int
    fidelity: float
    seed: int

    def describe(self, out: object) -> str:
        """What ``metamodels densify`` prints."""
        held = self.model.densified["heldout_inputs"] if self.model.densified else 0
        return f"{out}: d_model {self.original_d_model} -> {self.d_model}, fidelity {self.fidelity:.4f} on {held} held-out inputs"


def densify(
    model: CompiledModel,
    *,
    target_fidelity: float = FIDELITY,
    d_model: int | None = None,
    seed: int = 0,
    fit_per_length: int = 128,
    heldout_max: int = 20_000,
) -> Densified:
    """Compress to the smallest d' meeting ``target_fidelity`` on held-out inputs of every length (or to ``d_model``),
    then rotate.

    Held-out inputs are every input when there are at most ``heldout_max``, else
    that many random ones drawn apart from the fitting set.
    """
    vocab, n = model.settings.vocab, model.settings.max_seq_len
    fit = battery.make_battery(vocab, n, per_length=fit_per_length, seed=seed)
    if battery.input_space_size(vocab, n) <= heldout_max:
        heldout = battery.make_battery(vocab, n, exhaustive_up_to=heldout_max)
    else:
        fitted = set(fit)
        drawn = battery.make_battery(vocab, n, per_length=heldout_max // n, seed=seed + 10_000)
        heldout = [xs for xs in drawn if xs not in fitted]
    basis, _ = principal_directions(model, fit)
    if d_model is not None and not 1 <= d_model <= model.d_model:
        raise MetamodelsError(f"d_model must be between 1 and {model.d_model}, got {d_model}")

    def dense(k: int) -> CompiledModel:
        return change_basis(change_basis(model, basis[:, :k]), random_rotation(k, seed))

    # The bar's inputs: the held-out ones, and at a length with none (every input of it is a fitting one) those.
    held_lengths = {len(xs) for xs in heldout}
    barred = heldout + [xs for xs in fit if len(xs) not in held_lengths]

    def worst_length(k: int) -> float:  # measured on the final, rotated model
        return min(agree / total for agree, total in agreement_by_length(model, dense(k), barred).values())

    if d_model is None:  # smallest k meeting the bar at every length (binary search)
        lo, hi = 1, model.d_model
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if worst_length(mid) >= target_fidelity else (mid + 1, hi)
        d_model = lo
    final = dense(d_model)
    held = agreement_by_length(model, final, heldout)
    kept = sum(agree for agree, _ in held.values()) / len(heldout)  # reported either way
    # Per length, on the held-out and the fitting inputs together: the error rate varies with length, and where the
    # fitting set holds every input of a length (short ones) it is that length's exact rate. Verification allows
    # a compressed model its own errors at the lengths it checks (verification.fidelity_allowance).
    held_set = set(heldout)
    on_fit = agreement_by_length(model, final, [xs for xs in dict.fromkeys(fit) if xs not in held_set])
    by_length = {n: [sum(c) for c in zip(held.get(n, (0, 0)), on_fit.get(n, (0, 0)))] for n in {*held, *on_fit}}
    info = {
        "d_model": d_model,
        "original_d_model": model.d_model,
        "fidelity": kept,
        "heldout_inputs": len(heldout),
        "fidelity_by_length": {str(n): agree / total for n, (agree, total) in sorted(by_length.items())},
        "seed": seed,
    }
    return Densified(dataclasses.replace(final, densified=info), d_model, model.d_model, kept, seed)


def permuted(model: CompiledModel, seed: int) -> CompiledModel:
    """The same model with its variables' residual blocks in a random order (exactly output-preserving).

    This is what compiling the program with other variable names does: Tracr
    sorts residual directions by label, so whole variables move while each
    variable's values stay in order. Blocks come from the residual labels; a
    model without labels gets every direction permuted.
    """
    rng = np.random.default_rng([seed, model.d_model, model.n_params])
    labels = model.residual_labels
    if labels:
        blocks: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            blocks.setdefault(label.split(":")[0], []).append(i)
        groups = list(blocks.values())
        order = np.concatenate([groups[g] for g in rng.permutation(len(groups))])
    else:
        order = rng.permutation(model.d_model)
    return change_basis(model, np.eye(model.d_model)[:, order])


@dataclasses.dataclass(frozen=True)
class Dense:
    """Read every model densified: :func:`densification.densify` to ``fidelity`` on ``heldout`` inputs, then
    :func:`densification.permute_units`; example seeds derive from ``seed`` and the example id."""

    fidelity: float = FIDELITY
    seed: int = 0
    heldout: int = 1000


def densified(model: CompiledModel, dense: Dense, example_id: str) -> CompiledModel:
    """The model as :class:`Dense` says."""
    seed = int(hashlib.sha256(f"{dense.seed}:{example_id}".encode()).hexdigest()[:8], 16)
    out = densify(model, target_fidelity=dense.fidelity, seed=seed, heldout_max=dense.heldout).model
    return permute_units(out, seed + 1)
