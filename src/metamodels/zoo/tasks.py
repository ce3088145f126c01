"""A program's input/output data for training a base model on it: a pool of distinct inputs, split once.

The pool is every input when the input space is small, else distinct random inputs (length uniform
in 1..max_seq_len, then tokens uniform). Its held-out part is never trained on. Outputs the program
leaves undefined (None) are masked (-1); a program whose outputs take too many values for one
classifier, or that raises on an input, is a failure with its reason (a value, not an exception).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from metamodels import options
from metamodels.transformer import battery, trained
from metamodels.transformer.compiled import Value
from metamodels.zoo.trainer import Task


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How much input/output data each base model sees."""

    pool: int = options.option(2048, help="distinct inputs per program (train + held-out)")
    heldout: int = options.option(256, help="of which held out (never trained on) to judge convergence")
    max_output_values: int = 32  # one classifier over at most this many output values


def input_pool(vocab: Sequence[Value], max_seq_len: int, size: int, rng: np.random.Generator) -> list[tuple]:
    """``size`` distinct inputs (all of them if the space is no larger), in a random order."""
    if battery.input_space_size(vocab, max_seq_len) <= size:
        every = battery.make_battery(vocab, max_seq_len, exhaustive_up_to=size)
        return [every[i] for i in rng.permutation(len(every))]
    seen: set[tuple] = set()
    out: list[tuple] = []
    while len(out) < size:
        n = int(rng.integers(1, max_seq_len + 1))
        xs = tuple(vocab[i] for i in rng.integers(0, len(vocab), size=n))
        if xs not in seen:
            seen.add(xs)
            out.append(xs)
    return out


def make_task(
    key: str,
    evaluate: Callable[[tuple], Sequence[Value | None]],
    vocab: Sequence[Value],
    max_seq_len: int,
    causal: bool,
    seed: int,
    lr: float,
    config: DataConfig,
) -> Task | str:
    """The Task of one program (``evaluate``: input -> outputs, None where undefined), or a failure reason."""
    rng = np.random.default_rng([seed, 11])
    inputs = input_pool(vocab, max_seq_len, config.pool, rng)
    if len(inputs) < 4:
        return "input_space_too_small"
    try:
        outputs = [list(evaluate(xs)) for xs in inputs]
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError):
        return "evaluation_error"
    values = sorted({trained.value_key(v): v for row in outputs for v in row if v is not None}.items())
    if not values:
        return "undefined"
    if len(values) > config.max_output_values:
        return "too_many_output_values"
    column = {k: i for i, (k, _) in enumerate(values)}
    index = {trained.value_key(v): i + 1 for i, v in enumerate(vocab)}
    ids = np.zeros((len(inputs), 1 + max_seq_len), dtype=np.int64)
    targets = np.full((len(inputs), max_seq_len), -1, dtype=np.int64)
    for r, (xs, ys) in enumerate(zip(inputs, outputs)):
        ids[r, 1 : 1 + len(xs)] = [index[trained.value_key(v)] for v in xs]
        targets[r, : len(ys)] = [-1 if y is None else column[trained.value_key(y)] for y in ys]
    held = min(config.heldout, len(inputs) // 4)
    return Task(key, tuple(vocab), tuple(v for _, v in values), max_seq_len, causal,
                ids[held:], targets[held:], ids[:held], targets[:held], seed, lr)  # fmt: skip


def heldout_inputs(task: Task) -> list[tuple]:
    """The held-out inputs of a task as value tuples (stored with each model so it can be re-checked)."""
    out = []
    for row in task.heldout_ids:
        out.append(tuple(task.input_vocab[i - 1] for i in row[1:] if i > 0))
    return out
