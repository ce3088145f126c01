"""Decoding for the mapping meta-models: grammar-constrained beam search, and choosing a candidate by its agreement
with the trained model.

Paper 002 decodes greedily and unconstrained (:func:`metamodels.mapping.training.greedy`, kept for its token
accuracy). Here every step keeps only the tokens that leave the prefix a prefix of some program of the language
(RASP: :class:`metamodels.rasp.tokens.Grammar`; Python: :func:`metamodels.python.tokens.allowed_next`), so every
finished candidate parses, and a beam keeps the ``beam`` most likely ones.

:func:`choose` then reads the model's *behaviour* to pick among what its *weights* suggested: each candidate and the
model run on the same seeded probe inputs, and the candidate agreeing with the model on the most (input, position)
pairs wins (ties: the more likely one). The probes are drawn from the model's own vocabulary and lengths, never from
the true program, so choosing needs nothing but the model file.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch

from metamodels.errors import MetamodelsError
from metamodels.mapping import data, graph_t5
from metamodels.python import tokens as python_tokens
from metamodels.python.program import PyProgram
from metamodels.rasp import tokens as rasp_tokens
from metamodels.rasp.program import Program
from metamodels.transformer import trained
from metamodels.transformer.trained import TrainedModel
from metamodels.zoo import programs, tasks

BEAM = 8  # candidates decoded for a trained model
PROBES = 256  # random inputs an agreement check runs
BAR = 0.95  # agreement rate that counts as agreeing (the zoo's training bar)


class _Prefix(Protocol):
    """A program prefix that knows which tokens may come next."""

    done: bool

    def allowed(self) -> set[str]: ...

    def step(self, token: str) -> None: ...

    def copy(self) -> _Prefix: ...


class _RaspPrefix:
    def __init__(self) -> None:
        self.grammar = rasp_tokens.Grammar()
        self.grammar.step("BOS")
        self.done = False

    def allowed(self) -> set[str]:
        return self.grammar.allowed()

    def step(self, token: str) -> None:
        self.grammar.step(token)
        self.done = self.grammar.done

    def copy(self) -> _RaspPrefix:
        other = _RaspPrefix.__new__(_RaspPrefix)
        other.grammar, other.done = self.grammar.copy(), self.done
        return other


class _PythonPrefix:
    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self.tokens = tokens
        self.done = bool(tokens) and tokens[-1] == python_tokens.EOS

    def allowed(self) -> set[str]:
        return set(python_tokens.allowed_next(self.tokens))

    def step(self, token: str) -> None:
        self.tokens = (*self.tokens, token)
        self.done = token == python_tokens.EOS

    def copy(self) -> _PythonPrefix:
        return _PythonPrefix(self.tokens)


def _start(language: str) -> _Prefix:
    return _RaspPrefix() if language == "rasp" else _PythonPrefix()


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A finished candidate: token ids (BOS ... EOS), summed log-probability, and the program they spell."""

    ids: tuple[int, ...]
    score: float
    program: Program | PyProgram


def beam_search(model: graph_t5.GraphT5, inputs: dict[str, torch.Tensor], vocab: data.Vocabulary, max_len: int,
                beam: int = BEAM) -> list[Decoded]:  # fmt: skip
    """Up to ``beam`` distinct programs for one model (``inputs``: the encoder's batch of one), most likely first.

    The beam's finished programs, joined by the grammar-constrained greedy one: a wide beam can fill with
    hypotheses that go on writing (Python's grammar has no length bound) and finish none. Empty only when no program
    finishes within ``max_len`` tokens.
    """
    if beam < 1:
        raise MetamodelsError(f"--beam must be at least 1, got {beam}")
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        found = {d.ids: d for width in sorted({1, beam}) for d in _search(model, memory, mask, vocab, max_len, width)}
    return sorted(found.values(), key=lambda d: -d.score)[:beam]


def _search(model: graph_t5.GraphT5, memory: torch.Tensor, mask: torch.Tensor, vocab: data.Vocabulary, max_len: int,
            beam: int) -> list[Decoded]:  # fmt: skip
    ids = vocab.ids
    alive: list[tuple[list[int], float, _Prefix]] = [([1], 0.0, _start(vocab.language))]
    finished: list[Decoded] = []
    for _ in range(max_len - 1):
        if not alive:
            break
        n = len(alive)
        seqs = torch.tensor([seq for seq, _, _ in alive])
        logits = model.decode(memory.expand(n, -1, -1), mask.expand(n, -1), seqs)[:, -1]
        logp = torch.log_softmax(logits.float(), -1)
        totals = torch.full_like(logp, float("-inf"))
        for b, (_, s, prefix) in enumerate(alive):
            allowed = [ids[t] for t in prefix.allowed() if t in ids]
            totals[b, allowed] = logp[b, allowed] + s
        flat = totals.flatten()
        top = torch.topk(flat, min(beam, int(torch.isfinite(flat).sum()))).indices.tolist()
        survivors = []
        for idx in top:
            b, t = divmod(idx, logp.shape[1])
            seq, _, prefix = alive[b]
            prefix = prefix.copy()
            prefix.step(vocab.tokens[t])
            entry = ([*seq, t], float(flat[idx]), prefix)
            if not prefix.done:
                survivors.append(entry)
                continue
            program = _program(vocab, entry[0])
            if program is not None:
                finished.append(Decoded(tuple(entry[0]), entry[1], program))
        finished = sorted(finished, key=lambda d: -d.score)[:beam]
        # Scores only fall as sequences grow: a full finished list beats every live sequence below its worst.
        alive = [e for e in survivors if len(finished) < beam or e[1] > finished[-1].score]
    return finished


def _program(vocab: data.Vocabulary, ids: list[int]) -> Program | PyProgram | None:
    strings = data.decode_strings(vocab, ids)
    try:
        if vocab.language == "rasp":
            return rasp_tokens.detokenize([rasp_tokens.VOCAB.id(t) for t in ["BOS", *strings]])
        return python_tokens.parse(strings)
    except (MetamodelsError, KeyError, ValueError, IndexError):
        return None


@dataclasses.dataclass(frozen=True)
class Probes:
    """Seeded random inputs of a model's vocabulary and lengths, and the model's outputs on them."""

    inputs: list[tuple]
    outputs: list[list]
    seed: int


def probe(model: TrainedModel, probes: int = PROBES, seed: int = 0) -> Probes:
    cfg = model.config
    inputs = tasks.input_pool(cfg.input_vocab, cfg.max_seq_len, probes, np.random.default_rng(seed))
    return Probes(inputs, trained.run(model, inputs), seed)


@dataclasses.dataclass(frozen=True)
class Tally:
    """How a program's outputs compare with the model's on probes."""

    right: int  # (input, position) pairs where the program is defined and equals the model
    compared: int  # pairs where the program is defined
    counterexamples: tuple[tuple[tuple, tuple, tuple], ...]  # up to 3 (input, model output, program output)

    @property
    def rate(self) -> float:
        return self.right / max(1, self.compared)


def tally(program: Program | PyProgram, model: TrainedModel, probed: Probes) -> Tally:
    """Run ``program`` on the probe inputs under ``model``'s settings and compare with the model's outputs."""
    cfg = model.config
    made = programs.from_program(program, cfg.input_vocab, cfg.max_seq_len, cfg.causal)
    right = compared = 0
    counter: list[tuple[tuple, tuple, tuple]] = []
    for xs, want in zip(probed.inputs, probed.outputs):
        try:
            got = list(made.evaluate(xs))
        except Exception:  # noqa: BLE001 - a decoded program may fail on an input: every position disagrees
            got = ["<error>"] * len(xs)
        pairs = [(g, m) for g, m in zip(got, want) if g is not None]
        compared += len(pairs)
        right += sum(g == m for g, m in pairs)
        if any(g != m for g, m in pairs) and len(counter) < 3:
            counter.append((tuple(xs), tuple(want), tuple(got)))
    return Tally(right, compared, tuple(counter))


def choose(candidates: list[Decoded], model: TrainedModel, probed: Probes) -> tuple[int, list[Tally]]:
    """The index of the candidate agreeing with the model on the most probe pairs (ties: the earlier, i.e. more
    likely, one), and every candidate's tally."""
    if not candidates:
        raise MetamodelsError("no candidates to choose from")
    tallies = [tally(c.program, model, probed) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: (tallies[i].right, -i))
    return best, tallies
