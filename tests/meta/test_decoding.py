"""Grammar-constrained decoding: always valid programs; the right logits reproduce the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metamodels.meta import decoding, metamodel, weight_encoding
from metamodels.rasp import text
from metamodels.rasp import tokens as tokens_mod
from tests import cases

V = len(tokens_mod.VOCAB)
WEIGHTS = weight_encoding.WeightTokens(np.zeros((3, 32), np.float32), np.zeros((3, 5), np.int64))


class Scripted:
    """Stands in for a MetaModel: logits from a function of (row, position); a dummy cache."""

    def __init__(self, logits_fn, max_program_tokens=128):
        self.cfg = metamodel.MetaModelConfig(**metamodel.PRESETS["tiny"], max_program_tokens=max_program_tokens)
        self.logits_fn = logits_fn

    def eval(self):
        return self

    def prefill(self, values, tags, mask):
        return [(torch.zeros(len(values), 1), torch.zeros(len(values), 1))]

    def step(self, token, position, cache, key_mask):
        history = cache[0][1]
        history = torch.cat([history, token[:, None].float()], dim=1)
        return self.logits_fn(history, position), [(cache[0][0], history)]


def _random_logits(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda history, position: 4 * torch.randn(len(history), V, generator=g)


@pytest.mark.parametrize("seed", range(40))
def test_greedy_on_random_logits_gives_valid_programs(seed):
    [c] = decoding.greedy(Scripted(_random_logits(seed), 600), [WEIGHTS])
    assert c.program is not None
    assert tokens_mod.detokenize(list(c.tokens)).ops == c.program.ops  # the grammar's own check, independently re-run


@pytest.mark.parametrize("seed", range(5))
def test_beam_on_random_logits_gives_distinct_valid_programs_best_first(seed):
    found = decoding.beam_search(Scripted(_random_logits(seed), 600), WEIGHTS, beam=6)
    assert 1 <= len(found) <= 6
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert len({c.tokens for c in found}) == len(found)
    for c in found:
        tokens_mod.detokenize(list(c.tokens))


def _teacher(truth: list[int]):
    def logits(history, position):
        out = torch.randn(len(history), V)
        if position + 1 < len(truth):
            out[:, truth[position + 1]] += 20.0
        return out

    return logits


@pytest.mark.parametrize("name", sorted(cases.HAND_WRITTEN))
def test_decoding_the_true_tokens_reproduces_the_program(name):
    program = text.parse_program(cases.HAND_WRITTEN[name][0])
    truth = tokens_mod.tokenize(program)
    [c] = decoding.greedy(Scripted(_teacher(truth)), [WEIGHTS])
    assert list(c.tokens) == truth
    assert tokens_mod.tokenize(c.program) == truth
    best = decoding.beam_search(Scripted(_teacher(truth)), WEIGHTS, beam=4)[0]
    assert list(best.tokens) == truth


def test_greedy_batches_models_of_different_lengths():
    model = metamodel.MetaModel(metamodel.MetaModelConfig(**metamodel.PRESETS["tiny"])).eval()
    rng = np.random.default_rng(0)
    items = [
        weight_encoding.WeightTokens(rng.normal(size=(n, 32)).astype(np.float32), rng.integers(0, 5, (n, 5)))
        for n in (3, 11)
    ]
    together = decoding.greedy(model, items)
    alone = [decoding.greedy(model, [w])[0] for w in items]
    assert [c.tokens for c in together] == [c.tokens for c in alone]
    assert decoding.beam_search(model, items[1], 1)[0].tokens == alone[1].tokens


def test_beam_must_be_positive():
    with pytest.raises(ValueError, match="beam must be at least 1"):
        decoding.beam_search(Scripted(_random_logits(0)), WEIGHTS, beam=0)
