"""The fixed battery of test inputs on which programs are judged and models checked.

Deterministic from (vocab, max_seq_len, seed): every length from 1 to
max_seq_len, edge cases (constant, sorted, reversed, all-distinct sequences)
and random sequences. Exhaustive when the whole input space is small.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from metamodels import options
from metamodels.transformer.compiled import Value

MAX_EXHAUSTIVE = 100_000  # verification runs every input up to this many, else this many random ones


def inputs_option():
    """The ``--inputs`` field of the configs that check a program against a model (verify, decompile)."""
    return options.option(MAX_EXHAUSTIVE, flag="--inputs", metavar="N", help="verification: every input when there are at most "
                          "this many, else this many random ones")  # fmt: skip


def input_space_size(vocab: Sequence[Value], max_seq_len: int) -> int:
    """Number of distinct inputs of length 1..max_seq_len."""
    return sum(len(vocab) ** n for n in range(1, max_seq_len + 1))


def make_battery(
    vocab: Sequence[Value], max_seq_len: int, *, per_length: int = 16, seed: int = 0, exhaustive_up_to: int = 0
) -> list[tuple[Value, ...]]:
    """Test inputs, deduplicated, in a fixed order.

    Exhaustive (every sequence of every length) when that is at most
    ``exhaustive_up_to`` inputs; otherwise edge cases plus ``per_length``
    random sequences of each length drawn with ``np.random.default_rng(seed)``.
    """
    values = list(vocab)
    if input_space_size(values, max_seq_len) <= exhaustive_up_to:
        return [tuple(xs) for n in range(1, max_seq_len + 1) for xs in itertools.product(values, repeat=n)]
    rng = np.random.default_rng(seed)
    battery: dict[tuple[Value, ...], None] = {}
    for n in range(1, max_seq_len + 1):
        cycle = [values[i % len(values)] for i in range(n)]
        edge = [
            tuple(values[0] for _ in range(n)),
            tuple(values[-1] for _ in range(n)),
            tuple(sorted(cycle, key=values.index)),
            tuple(sorted(cycle, key=values.index, reverse=True)),
        ]
        if n <= len(values):
            edge.append(tuple(values[i] for i in rng.permutation(len(values))[:n]))
        for xs in edge + [tuple(values[i] for i in rng.integers(0, len(values), n)) for _ in range(per_length)]:
            battery[xs] = None
    return list(battery)


def expected_output(evaluate: Callable[..., Sequence[object]], xs: Sequence[Value], causal: bool) -> list[Value]:
    """What a model compiled from a program should output on ``xs``.

    ``evaluate`` is the program's RASP evaluation, called as ``evaluate(xs, causal=causal)``
    (:meth:`~metamodels.rasp.program.Program.evaluate`). A causal model is not the program
    run on each prefix: every attention sees only earlier positions, whose values were
    themselves computed causally, so a nested program differs (measured: prefix
    semantics disagreed with Tracr's causal models on a third of sampled programs).
    """
    return list(evaluate(list(xs), causal=True) if causal else evaluate(list(xs)))  # type: ignore[arg-type]
