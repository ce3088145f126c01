"""Weight tokens -> program tokens: grammar-constrained greedy and beam search with a KV cache.

At every step only tokens the :class:`~metamodels.rasp.tokens.Grammar` allows are
considered (defined variables, right arity and encodings, valid layer
structure), so every complete candidate is a valid program. The weights are
encoded once (``prefill``); each step feeds one token per sequence through the
cached keys and values. A :class:`Guide` (e.g. the wiring read from the weights,
:mod:`metamodels.decompilation.guide`) narrows the grammar's tokens further.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import torch

from metamodels.errors import MetamodelsError
from metamodels.meta import batching, metamodel, weight_encoding
from metamodels.rasp import tokens as tokens_mod
from metamodels.rasp.program import Program

_NEG = float("-inf")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A decoded token sequence (BOS ... EOS), its summed log-probability and its program.

    ``program`` is None only when decoding hit the meta-model's length limit first.
    """

    tokens: tuple[int, ...]
    score: float
    program: Program | None
    read_out: bool = False  # program's functions/predicates read from the weights (see readout.py)

    @property
    def token_strings(self) -> list[str]:
        return [tokens_mod.VOCAB.tokens[i] for i in self.tokens]


class Guide(Protocol):
    """Knowledge beyond the grammar: which of the grammar's next tokens may come (a subset of ``grammar.allowed()``)."""

    def allowed(self, grammar: tokens_mod.Grammar) -> set[str]: ...


def _allowed_mask(grammar: tokens_mod.Grammar, vocab_size: int, guide: Guide | None = None) -> torch.Tensor:
    """[vocab_size] 0 where allowed, -inf elsewhere; the grammar alone where the guide leaves nothing."""
    allowed = (guide.allowed(grammar) if guide is not None else set()) or grammar.allowed()
    mask = torch.full((vocab_size,), _NEG)
    mask[[tokens_mod.VOCAB.id(t) for t in allowed]] = 0.0
    return mask


@torch.no_grad()
def greedy(
    model: metamodel.MetaModel,
    items: Sequence[weight_encoding.WeightTokens],
    guides: Sequence[Guide | None] | None = None,
) -> list[Candidate]:
    """The most likely valid next token at each step, for a batch of models at once (``guides[i]`` for item i)."""
    model.eval()
    guides = list(guides) if guides is not None else [None] * len(items)
    values, tags, key_mask = batching.pad_weights(items)
    cache = model.prefill(values, tags, key_mask)
    n, v, bos = len(items), model.cfg.vocab_size, tokens_mod.VOCAB.id("BOS")
    grammars = [tokens_mod.Grammar() for _ in items]
    seqs: list[list[int]] = [[bos] for _ in items]
    scores = [0.0] * n
    for g in grammars:
        g.step("BOS")
    token = torch.full((n,), bos)
    for position in range(model.cfg.max_program_tokens - 1):
        live = [i for i in range(n) if not grammars[i].done]
        if not live:
            break
        key_mask = torch.cat([key_mask, torch.ones(n, 1, dtype=torch.bool)], dim=1)
        logits, cache = model.step(token, position, cache, key_mask)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()  # the grammar's masks live on the CPU
        token = torch.zeros(n, dtype=torch.long)  # PAD for finished rows
        for i in live:
            row = logp[i] + _allowed_mask(grammars[i], v, guides[i])
            t = int(row.argmax())
            token[i] = t
            seqs[i].append(t)
            scores[i] += float(row[t])
            grammars[i].step(tokens_mod.VOCAB.tokens[t])
    return [Candidate(tuple(s), sc, g.program() if g.done else None) for s, sc, g in zip(seqs, scores, grammars)]


@torch.no_grad()
def beam_search(
    model: metamodel.MetaModel, item: weight_encoding.WeightTokens, beam: int, guide: Guide | None = None
) -> list[Candidate]:
    """Up to ``beam`` complete valid programs (the ``guide`` allowing), best (highest log-probability) first."""
    if beam < 1:
        raise MetamodelsError(f"beam must be at least 1, got {beam}")
    model.eval()
    values, tags, prefix_mask = batching.pad_weights([item])
    cache = model.prefill(values, tags, prefix_mask)
    bos = tokens_mod.VOCAB.id("BOS")
    start = tokens_mod.Grammar()
    start.step("BOS")
    alive: list[tuple[list[int], float, tokens_mod.Grammar]] = [([bos], 0.0, start)]
    finished: list[Candidate] = []
    for position in range(model.cfg.max_program_tokens - 1):
        if not alive:
            break
        token = torch.tensor([seq[-1] for seq, _, _ in alive])
        key_mask = torch.ones(len(alive), prefix_mask.shape[1] + position + 1, dtype=torch.bool)
        key_mask[:, : prefix_mask.shape[1]] = prefix_mask
        logits, cache = model.step(token, position, cache, key_mask)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        totals = torch.stack([logp[b] + _allowed_mask(g, logp.shape[1], guide) + s for b, (_, s, g) in enumerate(alive)])
        flat = totals.flatten()
        k = min(beam, int(torch.isfinite(flat).sum()))
        top = torch.topk(flat, k).indices.tolist()
        survivors, keep = [], []
        for idx in top:
            b, t = divmod(idx, logp.shape[1])
            seq, _, g = alive[b]
            g = g.copy()
            g.step(tokens_mod.VOCAB.tokens[t])
            entry = ([*seq, t], float(flat[idx]), g)
            if g.done:
                finished.append(Candidate(tuple(entry[0]), entry[1], g.program()))
            else:
                survivors.append(entry)
                keep.append(b)
        finished.sort(key=lambda c: -c.score)
        finished = finished[:beam]
        # Scores only fall as sequences grow, so a full finished list beats every live sequence below its worst.
        if len(finished) == beam:
            survivors = [e for e in survivors if e[1] > finished[-1].score]
            keep = keep[: len(survivors)]
        alive = survivors
        if alive:
            index = torch.tensor(keep, device=cache[0][0].device)
            cache = [(k_[index], v_[index]) for k_, v_ in cache]
    if not finished:  # length limit before any EOS
        seq, score, _ = max(alive, key=lambda e: e[1]) if alive else ([bos], _NEG, None)
        return [Candidate(tuple(seq), score, None)]
    return finished


@torch.no_grad()
def score(
    model: metamodel.MetaModel, item: weight_encoding.WeightTokens, sequences: Sequence[Sequence[int]]
) -> list[float]:
    """Summed log-probability of each complete token sequence (BOS ... EOS) given one model's weights."""
    if not sequences:
        return []
    model.eval()
    values, tags, mask = batching.pad_weights([item])
    n, t = len(sequences), max(len(s) for s in sequences)
    program = torch.zeros(n, t, dtype=torch.long)
    for i, s in enumerate(sequences):
        program[i, : len(s)] = torch.tensor(s)
    logp = torch.log_softmax(model.extend(model.prefill(values, tags, mask), mask, program[:, :-1]).float(), -1).cpu()
    picked = logp.gather(-1, program[:, 1:, None])[..., 0] * (program[:, 1:] != 0)
    return picked.sum(1).tolist()
