"""CNN weights -> meta-model inputs: neuron tokens (ours), flat chunks (paper 000, App. A), a flat vector, a random
slice (EJR), per-layer statistics (StatNN); and the function-preserving channel permutation used as augmentation.

A CNN's weights are a dict in :mod:`~metamodels.zoo.cnn`'s layout (``convs.{i}.weight [out, in, kernel]``,
``convs.{i}.bias [out]``, ``head.weight [classes, width]``, ``head.bias [classes]``).
"""

from __future__ import annotations

import numpy as np

MAX_FAN_IN = 256  # a neuron token holds this many incoming weights (a 32-channel, kernel-7 conv has 224), then bias
MAX_LAYERS = 8  # layer tags 0..MAX_LAYERS-1 for convolutions; MAX_LAYERS is the head
STAT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
LAYER_STATS = 3 + len(STAT_QUANTILES)  # mean, std, log std, quantiles (StatNN's per-layer statistics)
SHAPE_STATS = 3  # skewness, excess kurtosis, mean |x| / RMS: a distribution's shape, free of its scale
ROW_STATS = 3  # a layer's fan-in rows: log mean norm, norms' coefficient of variation, mean |cosine| between rows
SUMMARY_FEATURES = 2 * (LAYER_STATS + SHAPE_STATS) + ROW_STATS  # ours' layer summary: weights, biases, rows


def layers(weights: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per layer in order, convolutions then the head; a weight as ``[out, fan_in]``."""
    depth = sum(1 for name in weights if name.startswith("convs.") and name.endswith(".weight"))
    names = [f"convs.{i}" for i in range(depth)] + ["head"]
    return [(weights[f"{n}.weight"].reshape(len(weights[f"{n}.bias"]), -1), weights[f"{n}.bias"]) for n in names]


NEURON_FEATURES = MAX_FAN_IN + 1 + 6 + SHAPE_STATS  # fan-in weights, bias, the fan-in's mean, std, min, max, RMS,
# log RMS and shape
EPS = 1e-8


def neuron_tokens(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One token per output channel or neuron: ``tokens [n_neurons, NEURON_FEATURES]`` (its fan-in weights, zero
    padded or truncated; its bias; the fan-in's mean, std, min, max, RMS and log RMS, so that scale, which
    initialisation and optimizer set multiplicatively, is read directly; and the fan-in's shape, :func:`_shape`) and
    ``tags [n_neurons]`` (its layer; MAX_LAYERS for the head)."""
    rows, tags = [], []
    all_layers = layers(weights)
    for i, (w, b) in enumerate(all_layers):
        token = np.zeros((w.shape[0], NEURON_FEATURES), np.float32)
        fan_in = min(w.shape[1], MAX_FAN_IN)
        token[:, :fan_in], token[:, MAX_FAN_IN] = w[:, :fan_in], b
        rms = np.sqrt((w**2).mean(1))
        scale = np.stack([w.mean(1), w.std(1), w.min(1), w.max(1), rms, np.log(rms + EPS)], 1)
        token[:, MAX_FAN_IN + 1 :] = np.concatenate([scale, _shape(w)], 1)
        rows.append(token)
        tags.append(np.full(w.shape[0], _slot(i, len(all_layers))))
    return np.concatenate(rows), np.concatenate(tags).astype(np.int64)


def layer_tokens(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One summary token per layer: ``tokens [n_layers, 2 * LAYER_STATS]`` (its weights' and biases' mean, std and
    quantiles, as StatNN reads them) and ``tags [n_layers]``."""
    all_layers = layers(weights)
    tokens = np.stack([np.concatenate([_stats(w.ravel()), _stats(b)]) for w, b in all_layers]).astype(np.float32)
    return tokens, np.array([_slot(i, len(all_layers)) for i in range(len(all_layers))], np.int64)


def summary_tokens(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ours' summary token per layer: ``tokens [n_layers, SUMMARY_FEATURES]`` (StatNN's statistics and the shape of
    the layer's weights, then of its biases, then its fan-in rows' norms and angles: biases start at zero, so their
    shape is what training did; orthogonal rows are what orthogonal initialisation did) and ``tags [n_layers]``."""
    statnn, tags = layer_tokens(weights)  # [n_layers, 2 * LAYER_STATS]: weights' statistics, then biases'
    all_layers = layers(weights)
    shape_w = np.concatenate([_shape(w.ravel()[None]) for w, _ in all_layers])  # [n_layers, SHAPE_STATS]
    shape_b = np.concatenate([_shape(b[None]) for _, b in all_layers])
    rows = np.stack([_rows(w) for w, _ in all_layers])  # [n_layers, ROW_STATS]
    tokens = np.concatenate([statnn[:, :LAYER_STATS], shape_w, statnn[:, LAYER_STATS:], shape_b, rows], 1)
    return tokens.astype(np.float32), tags


def _shape(rows: np.ndarray) -> np.ndarray:
    """Each row's skewness, excess kurtosis and mean |x| / RMS: ``rows [n, k] -> [n, SHAPE_STATS]`` (a constant row:
    zeros and 1)."""
    centred = rows - rows.mean(1, keepdims=True)
    z = centred / (centred.std(1, keepdims=True) + EPS)
    rms = np.sqrt((rows**2).mean(1))
    return np.stack([(z**3).mean(1), (z**4).mean(1) - 3, np.abs(rows).mean(1) / (rms + EPS)], 1)


def _rows(w: np.ndarray) -> np.ndarray:
    """A layer's ``w [out, fan_in]`` rows: log mean norm, the norms' coefficient of variation, and the mean |cosine|
    between distinct rows, ``[ROW_STATS]``."""
    norms = np.linalg.norm(w, axis=1)
    unit = w / (norms[:, None] + EPS)
    cos = np.abs(unit @ unit.T)[~np.eye(len(w), dtype=bool)]
    return np.array([np.log(norms.mean() + EPS), norms.std() / (norms.mean() + EPS), cos.mean() if cos.size else 0.0])


def _slot(i: int, n_layers: int) -> int:
    """Layer ``i``'s tag: its index for convolutions (the last tag shared beyond MAX_LAYERS), MAX_LAYERS for the head."""
    return MAX_LAYERS if i == n_layers - 1 else min(i, MAX_LAYERS - 1)


def _stats(values: np.ndarray) -> np.ndarray:
    """Mean, std, log std and the STAT_QUANTILES of ``values`` (np.quantile's linear rule, from one sort: 10x
    faster than np.quantile)."""
    v = np.sort(values)
    pos = np.array(STAT_QUANTILES) * (len(v) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(v) - 1)
    return np.array([v.mean(), v.std(), np.log(v.std() + EPS), *(v[lo] + (pos - lo) * (v[hi] - v[lo]))])


def flat(weights: dict[str, np.ndarray], length: int) -> np.ndarray:
    """All weights, layer by layer (weight then bias), truncated or zero padded to ``[length]``."""
    values = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in layers(weights)]).astype(np.float32)
    out = np.zeros(length, np.float32)
    out[: min(length, len(values))] = values[:length]
    return out


def chunks(weights: dict[str, np.ndarray], n_chunks: int, chunk: int) -> np.ndarray:
    """Paper 000's input: the flat weights truncated or padded to ``n_chunks * chunk``, as ``[n_chunks, chunk]``."""
    return flat(weights, n_chunks * chunk).reshape(n_chunks, chunk)


def random_slice(weights: dict[str, np.ndarray], size: int, rng: np.random.Generator | None) -> np.ndarray:
    """EJR's input: ``[size]`` consecutive flat weights from a random offset (``rng`` None: offset 0)."""
    values = flat(weights, sum(w.size + b.size for w, b in layers(weights)))
    start = 0 if rng is None or len(values) <= size else int(rng.integers(len(values) - size + 1))
    out = np.zeros(size, np.float32)
    part = values[start : start + size]
    out[: len(part)] = part
    return out


def statistics(weights: dict[str, np.ndarray]) -> np.ndarray:
    """StatNN's features ``[(MAX_LAYERS + 1) * 2 * LAYER_STATS]``: per layer slot, :func:`layer_tokens`' summary
    (zeros for a slot the CNN does not have; convolutions past MAX_LAYERS - 1 share the last slot, the deepest wins)."""
    return _slotted(*layer_tokens(weights))


def summaries(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Ours' layer summaries side by side, ``[(MAX_LAYERS + 1) * SUMMARY_FEATURES]``, slotted as :func:`statistics`."""
    return _slotted(*summary_tokens(weights))


def _slotted(tokens: np.ndarray, tags: np.ndarray) -> np.ndarray:
    out = np.zeros((MAX_LAYERS + 1, tokens.shape[1]), np.float32)
    out[tags] = tokens
    return out.ravel()


def permute_channels(weights: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The same function with every convolution's output channels reordered at random (and the next layer's input
    channels with them): an augmentation that changes the weights but not what the CNN computes."""
    out = dict(weights)
    depth = sum(1 for name in weights if name.startswith("convs.") and name.endswith(".weight"))
    for i in range(depth):
        perm = rng.permutation(out[f"convs.{i}.bias"].shape[0])
        out[f"convs.{i}.weight"], out[f"convs.{i}.bias"] = out[f"convs.{i}.weight"][perm], out[f"convs.{i}.bias"][perm]
        nxt = f"convs.{i + 1}.weight" if i + 1 < depth else "head.weight"
        out[nxt] = out[nxt][:, perm]
    return out
