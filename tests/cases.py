"""Named programs shared by the tests (Tracr's test_cases.py is the model).

``HAND_WRITTEN``: readable programs in our text form, each with its settings.
``tracr_cases()``: every program of Tracr's own integration cases (its lib:
sort, sort_unique, length, reverse, hist, frac_prevs, pair_balance, shuffle_dyck,
...), with the vocabulary and length Tracr tests them at, one entry per program.
``sampled(n, ...)``: programs from our sampler, fixed seeds.
``FIXTURE``: the committed test dataset; ``read_model_file`` / ``write_model_file``: raw model-file access.
``tracr_truth``: Tracr's own evaluation of an original ``rasp`` expression (the oracle for converted programs).
``scrambled``: a program with every function and predicate wrong (the input readout and probing must repair).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from metamodels.dataset import sampling
from metamodels.transformer import battery, forward

FIXTURE = Path(__file__).parent / "fixtures" / "dataset"  # a small committed dataset (see dataset/test_build.py)


def read_model_file(path) -> tuple[dict, dict]:
    """A model file's raw tensors and metadata (to damage them in tests)."""
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def write_model_file(path, params: dict, metadata: dict) -> None:
    save_file(params, str(path), metadata=metadata)


def tracr_truth(sop, xs, causal: bool) -> list | None:
    """Tracr's evaluation of the original expression (prefix by prefix when causal); None outside its domain."""
    from tracr.compiler import validating

    try:
        if validating.dynamic_validate(sop, list(xs)):
            return None
        return [sop(list(xs[: i + 1]))[i] for i in range(len(xs))] if causal else sop(list(xs))
    except ArithmeticError:  # a function of the original raises here: outside its domain
        return None


def scrambled(program):
    """The same structure with every function and predicate replaced by a wrong guess (what readout must fix)."""

    def wrong(op):
        if op.fn is not None:
            return dataclasses.replace(op, fn="identity" if op.kind == "Map" else "first")
        return dataclasses.replace(op, predicate="TRUE") if op.predicate is not None else op

    return dataclasses.replace(program, ops=tuple(wrong(op) for op in program.ops))


HAND_WRITTEN: dict[str, tuple[str, tuple, int]] = {
    "paper_sort": (
        "smaller = Select(tokens, tokens, LT)\ntarget = SelectorWidth(smaller)\n"
        "sel = Select(target, indices, EQ)\nsort = Aggregate(sel, tokens)\nreturn sort\n",
        (1, 2, 3, 4, 5),
        5,
    ),
    "frac_prevs": (
        "is_one = numerical(Map(lambda x: x == 1, tokens))\nprevs = Select(indices, indices, LEQ)\n"
        "frac = numerical(Aggregate(prevs, is_one))\nreturn frac\n",
        (1, 2, 3),
        8,
    ),
    "length_10": ("all = Select(tokens, tokens, TRUE)\nlength = SelectorWidth(all)\nreturn length\n", (1, 2), 10),
    "linear": (
        "a = numerical(Map(lambda x: x == 1, tokens))\nb = numerical(Map(lambda x: x > 2, indices))\n"
        "c = numerical(LinearSequenceMap(a, b, 2, 1))\nreturn c\n",
        (1, 2, 3),
        5,
    ),
    "letters": (
        "s = Select(tokens, tokens, EQ)\nn = SelectorWidth(s)\nm = SequenceMap(lambda x, y: x + y, n, indices)\nreturn m\n",
        ("a", "b", "c"),
        6,
    ),
}


@functools.cache
def tracr_cases() -> dict[str, tuple]:
    """name -> (rasp program, vocab, max_seq_len, causal): one per distinct Tracr test program."""
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    from tracr.compiler import test_cases

    out: dict[str, tuple] = {}
    for causal, cases in ((False, test_cases.TEST_CASES), (True, test_cases.CAUSAL_TEST_CASES)):
        for case in cases:
            base = case["testcase_name"].rstrip("_0123456789") + ("_causal" if causal else "")
            name, i = base, 1
            while name in out:
                i += 1
                name = f"{base}_{i}"
            out[name] = (case["program"], tuple(sorted(case["vocab"], key=str)), case["max_seq_len"], causal)
    return out


def odd_rasp_cases() -> dict[str, tuple]:
    """name -> (rasp program, vocab, max_seq_len, causal): what people write that Tracr compiles and a converter
    can trip on — labels that are no identifiers (or are keywords, op names), tuple values, functions that return
    None or raise an ArithmeticError on some inputs."""
    from tracr.rasp import rasp

    t, i = rasp.tokens, rasp.indices
    big = rasp.numerical(rasp.Map(lambda x: 1 if x > 1 else 0, t)).named("x>1")
    mean = rasp.numerical(rasp.Aggregate(rasp.Select(i, i, rasp.Comparison.LEQ), big, default=0)).named("mean(x>1)")
    neg = rasp.Map(lambda x: -x, t).named("neg x")
    pair = rasp.SequenceMap(lambda x, y: (x, y), t, i).named("pair")
    num = rasp.numerical(rasp.Map(lambda x: x, t)).named("num")
    inv = rasp.Map(lambda x: 6 // (x - 2), num, simplify=False).named("6 // (x-2)")  # raises at 2: no value there
    pairs = rasp.SequenceMap(lambda p, q: (p, q % 2), pair, i).named("nested")
    keyword = rasp.Map(lambda x: x + 1, t).named("lambda")
    return {
        "label_parentheses": (mean, (1, 2, 3), 4, True),
        "label_space_minus": (rasp.SequenceMap(lambda x, y: x + y, neg, t).named("sum-1"), (1, 2, 3), 4, False),
        "tuple_values": (rasp.Map(lambda p: p[0] * p[1], pair).named("prod"), (1, 2, 3), 4, False),
        "tuple_output": (rasp.SequenceMap(lambda x, y: (x, y % 2), t, i).named("pair2"), ("a", "b"), 3, False),
        "nested_tuples": (rasp.Map(lambda pq: pq[0][0] + pq[1], pairs).named("flat"), (1, 2), 3, False),
        "raises_numerical": (rasp.Map(lambda y: y + 1, inv).named("inc"), (1, 2, 3, 4), 4, False),
        "returns_none": (rasp.Map(lambda x: None if x == "b" else x, t).named("partial"), ("a", "b", "c"), 4, False),
        "keyword_labels": (rasp.Map(lambda x: x * 2, keyword, simplify=False).named("Map"), (1, 2), 3, False),
        "digit_label": (rasp.Map(lambda x: x % 2, t).named("2x"), (1, 2, 3), 3, False),
    }


_SAMPLED: dict[int, tuple[sampling.Sampled, ...]] = {}


def sampled(n: int, seed: int = 0) -> tuple[sampling.Sampled, ...]:
    """The first ``n`` unique programs (1-10 ops) of ``seed``; shared across tests (a prefix is reused)."""
    if len(_SAMPLED.get(seed, ())) < n:
        _SAMPLED[seed] = tuple(sampling.sample_unique(sampling.SamplerConfig(), n, seed)[0])
    return _SAMPLED[seed][:n]


def assert_same_logits(model, other, atol: float, length: int = 4) -> list:
    """``other`` reads out like ``model`` on the battery's inputs of one length; returns the whole battery."""
    inputs = battery.make_battery(model.settings.vocab, model.settings.max_seq_len, seed=2)
    ids = np.stack([forward.encode(model, xs) for xs in inputs if len(xs) == length])
    np.testing.assert_allclose(forward.logits(other, ids), forward.logits(model, ids), atol=atol)
    return inputs
