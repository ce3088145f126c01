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


def layers(weights: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per layer in order, convolutions then the head; a weight as ``[out, fan_in]``."""
    depth = sum(1 for name in weights if name.startswith("convs.") and name.endswith(".weight"))
    names = [f"convs.{i}" for i in range(depth)] + ["head"]
    return [(weights[f"{n}.weight"].reshape(len(weights[f"{n}.bias"]), -1), weights[f"{n}.bias"]) for n in names]


def neuron_tokens(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One token per output channel or neuron: ``tokens [n_neurons, MAX_FAN_IN + 1]`` (its fan-in weights, zero
    padded or truncated, then its bias) and ``tags [n_neurons]`` (its layer; MAX_LAYERS for the head)."""
    rows, tags = [], []
    all_layers = layers(weights)
    for i, (w, b) in enumerate(all_layers):
        token = np.zeros((w.shape[0], MAX_FAN_IN + 1), np.float32)
        fan_in = min(w.shape[1], MAX_FAN_IN)
        token[:, :fan_in], token[:, -1] = w[:, :fan_in], b
        rows.append(token)
        tags.append(np.full(w.shape[0], MAX_LAYERS if i == len(all_layers) - 1 else min(i, MAX_LAYERS - 1)))
    return np.concatenate(rows), np.concatenate(tags).astype(np.int64)


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
    """StatNN's features ``[(MAX_LAYERS + 1) * 2 * 7]``: per layer slot, for its weights and its biases, mean,
    standard deviation and the quantiles of STAT_QUANTILES (zeros for a slot the CNN does not have)."""
    per = 2 + len(STAT_QUANTILES)
    out = np.zeros((MAX_LAYERS + 1, 2, per), np.float32)
    all_layers = layers(weights)
    for i, (w, b) in enumerate(all_layers):
        slot = MAX_LAYERS if i == len(all_layers) - 1 else min(i, MAX_LAYERS - 1)
        for j, values in enumerate((w.ravel(), b)):
            out[slot, j] = [values.mean(), values.std(), *np.quantile(values, STAT_QUANTILES)]
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
