"""Decoding for the mapping meta-models: grammar-constrained beam search, and choosing a candidate by its agreement
with the trained model.

Paper 002 decodes greedily and unconstrained (:func:`metamodels.mapping.training.greedy`, kept for its token
accuracy). Here every step keeps only the tokens that leave the prefix a prefix of some program of the language
(RASP: :class:`metamodels.rasp.tokens.Grammar`; Python: :func:`metamodels.python.tokens.viable`), so every
finished candidate parses, and a beam keeps the ``beam`` most likely ones.

:func:`search` then reads the model's *behaviour* to pick among what its *weights* suggested (and a prior pool of
programs, and their one-substitution neighbours): each candidate and the model run on the same seeded probe inputs,
and the candidate agreeing with the model on the most (input, position) pairs wins (ties: the more likely one;
ranking by the balanced rate too was measured worse at stop 38: a model's rare spurious outputs weigh as much as
its common ones). The
probes are drawn from the model's own vocabulary and lengths, never from the true program, so searching needs
nothing but the model file.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch

from metamodels.errors import MetamodelsError
from metamodels.mapping import data, graph_t5
from metamodels.python import program as python_program
from metamodels.python import tokens as python_tokens
from metamodels.python.program import PyProgram
from metamodels.rasp import program as rasp_program
from metamodels.rasp import text as rasp_text
from metamodels.rasp import tokens as rasp_tokens
from metamodels.rasp.program import Program
from metamodels.transformer import trained
from metamodels.transformer.trained import TrainedModel
from metamodels.zoo import programs, tasks

BEAM = 8  # candidates decoded for a trained model
PROBES = 256  # random inputs an agreement check runs
BAR = 0.95  # agreement rate that counts as agreeing (the zoo's training bar)
BALANCED_BAR = 0.9  # and the balanced rate it needs too (a near-constant program can match 95% of skewed outputs)
PROBE_LENGTH = 128  # longest probe input (a GPT-2 with 1,024 positions is probed on lengths 1..128 unless told)


class _Prefix(Protocol):
    """A program prefix that knows which tokens may come next."""

    done: bool

    def accepts(self, token: str) -> bool: ...

    def step(self, token: str) -> None: ...

    def copy(self) -> _Prefix: ...


class _RaspPrefix:
    def __init__(self) -> None:
        self.grammar = rasp_tokens.Grammar()
        self.grammar.step("BOS")
        self.done = False
        self._allowed: set[str] | None = None

    def accepts(self, token: str) -> bool:
        if self._allowed is None:
            self._allowed = self.grammar.allowed()
        return token in self._allowed

    def step(self, token: str) -> None:
        self.grammar.step(token)
        self.done = self.grammar.done
        self._allowed = None

    def copy(self) -> _RaspPrefix:
        other = _RaspPrefix.__new__(_RaspPrefix)
        other.grammar, other.done, other._allowed = self.grammar.copy(), self.done, self._allowed
        return other


class _PythonPrefix:
    def __init__(self, tokens: tuple[str, ...] = ()) -> None:
        self.tokens = tokens
        self.done = bool(tokens) and tokens[-1] == python_tokens.EOS
        self._accepts: dict[str, bool] = {}

    def accepts(self, token: str) -> bool:
        # The numbers 2..MAX_NUMBER are interchangeable in the grammar (only 0 and 1 are refused anywhere).
        key = "2" if token.isdigit() and int(token) >= 2 else token
        if key not in self._accepts:
            self._accepts[key] = python_tokens.viable([*self.tokens, key])
        return self._accepts[key]

    def step(self, token: str) -> None:
        self.tokens = (*self.tokens, token)
        self.done = token == python_tokens.EOS
        self._accepts = {}

    def copy(self) -> _PythonPrefix:
        return _PythonPrefix(self.tokens)


# Past the decoding length, a prefix takes the first of these its grammar accepts (close a body, return, stop), so
# a program whose grammar has no length bound (Python's) still finishes; RASP's grammar bounds its programs itself.
CLOSING = (python_tokens.DEDENT, "return", python_tokens.EOS)
RESERVE = 64  # tokens a prefix may take past the decoding length to close (Python: a statement, three bodies, return)


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

    The beam's finished programs, joined by the grammar-constrained greedy one. A hypothesis still writing at
    ``max_len`` tokens is closed (:data:`CLOSING`, within :data:`RESERVE` more tokens): Python's grammar has no length
    bound, and a wide beam could otherwise fill with hypotheses that finish none. Empty only when none finishes.
    """
    if beam < 1:
        raise MetamodelsError(f"--beam must be at least 1, got {beam}")
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        found = {d.ids: d for width in sorted({1, beam}) for d in _search(model, memory, mask, vocab, max_len, width)}
    return sorted(found.values(), key=lambda d: -d.score)[:beam]


def _search(model: graph_t5.GraphT5, memory: torch.Tensor, mask: torch.Tensor, vocab: data.Vocabulary, max_len: int,
            beam: int) -> list[Decoded]:  # fmt: skip
    alive: list[tuple[list[int], float, _Prefix]] = [([1], 0.0, _start(vocab.language))]
    finished: list[Decoded] = []
    for _ in range(max_len - 1 + RESERVE):
        if not alive:
            break
        n = len(alive)
        seqs = torch.tensor([seq for seq, _, _ in alive])
        logits = model.decode(memory.expand(n, -1, -1), mask.expand(n, -1), seqs)[:, -1]
        logp = torch.log_softmax(logits.float(), -1)
        totals = torch.full_like(logp, float("-inf"))
        for b, (seq, s, prefix) in enumerate(alive):
            chosen = _next_tokens(vocab, prefix, logp[b], beam, closing=len(seq) >= max_len)
            totals[b, chosen] = logp[b, chosen] + s
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
            program = data.parse_decoded(vocab, data.decode_strings(vocab, entry[0]))
            if program is not None:
                finished.append(Decoded(tuple(entry[0]), entry[1], program))
        finished = sorted(finished, key=lambda d: -d.score)[:beam]
        # Scores only fall as sequences grow: a full finished list beats every live sequence below its worst.
        alive = [e for e in survivors if len(finished) < beam or e[1] > finished[-1].score]
    return finished


TAIL = 1e-6  # probability mass of unlikely next tokens not offered to the grammar while a likelier one is accepted


def _next_tokens(vocab: data.Vocabulary, prefix: _Prefix, logp: torch.Tensor, beam: int, closing: bool) -> list[int]:
    """The ids of the (at most ``beam``) most likely tokens the grammar accepts after ``prefix`` (``logp``: [V]),
    tried most likely first until the untried ones hold under :data:`TAIL` of the probability and one is accepted
    (the grammar check is the slow part, and most positions admit one token); when ``closing``, only the first
    :data:`CLOSING` token the grammar accepts, if any."""
    if closing:
        ids = vocab.ids
        for token in CLOSING:
            if token in ids and prefix.accepts(token):
                return [ids[token]]
    order = torch.argsort(logp, descending=True)
    left = (1.0 - torch.cumsum(logp[order].exp(), 0)).tolist()  # probability of the tokens after each
    out: list[int] = []
    for t, rest in zip(order.tolist(), left):
        if t > 1 and prefix.accepts(vocab.tokens[t]):  # ids 0, 1: PAD and BOS, never next
            out.append(t)
        if len(out) == beam or out and rest < TAIL:
            break
    return out


def most_likely(model: graph_t5.GraphT5, inputs: dict[str, torch.Tensor], vocab: data.Vocabulary,
                programs: list[Program | PyProgram], k: int,
                chunk: int = 128) -> list[Program | PyProgram]:  # fmt: skip
    """The ``k`` of ``programs`` the meta-model finds most likely for one model's weights (``inputs``: the encoder's
    batch of one): each program's tokens teacher-forced, log-probabilities summed. Ties keep the given order."""
    seqs = [[vocab.ids[t] for t in data.program_strings(p)] for p in programs]
    scores: list[float] = []
    with torch.no_grad():
        memory, mask = model.encode(inputs)
        for start in range(0, len(seqs), chunk):
            part = seqs[start : start + chunk]
            ids = torch.zeros(len(part), max(map(len, part)), dtype=torch.long)  # [n, T], PAD-filled
            for b, seq in enumerate(part):
                ids[b, : len(seq)] = torch.tensor(seq)
            n = len(part)
            logits = model.decode(memory.expand(n, -1, -1), mask.expand(n, -1), ids[:, :-1])
            logp = torch.log_softmax(logits.float(), -1)
            picked = logp.gather(-1, ids[:, 1:, None])[..., 0] * (ids[:, 1:] != 0)  # [n, T-1], PAD positions 0
            scores += picked.sum(-1).tolist()
    order = sorted(range(len(programs)), key=lambda i: (-scores[i], i))
    return [programs[i] for i in order[:k]]


@dataclasses.dataclass(frozen=True)
class Probes:
    """Seeded random inputs of a model's vocabulary and lengths, and the model's outputs on them."""

    inputs: list[tuple]
    outputs: list[list]
    seed: int


def probe(model: TrainedModel, probes: int = PROBES, seed: int = 0, longest: int = PROBE_LENGTH) -> Probes:
    """``probes`` distinct random inputs of lengths 1..min(``max_seq_len``, ``longest``) and the model's outputs on
    them."""
    cfg = model.config
    inputs = tasks.input_pool(cfg.input_vocab, min(longest, cfg.max_seq_len), probes, np.random.default_rng(seed))
    return Probes(inputs, trained.run(model, inputs), seed)


@dataclasses.dataclass(frozen=True)
class Tally:
    """How a program's outputs compare with the model's on probes."""

    right: int  # (input, position) pairs where the program is defined and equals the model
    compared: int  # pairs where the program is defined
    counterexamples: tuple[tuple[tuple, tuple, tuple], ...]  # the 3 shortest (input, model output, program output)
    balanced: float = 0.0  # per output value of the model, the share of its pairs the program matches; their mean

    @property
    def rate(self) -> float:
        return self.right / max(1, self.compared)

    def agrees(self, bar: float = BAR, balanced_bar: float = BALANCED_BAR) -> bool:
        return agreeing(self.compared, self.rate, self.balanced, bar, balanced_bar)


def agreeing(compared: int, rate: float, balanced: float, bar: float = BAR, balanced_bar: float = BALANCED_BAR) -> bool:
    """The rule for a program agreeing with a trained model: something compared, the rate and the balanced rate at
    their bars."""
    return compared > 0 and rate >= bar and balanced >= balanced_bar


def tally(program: Program | PyProgram, model: TrainedModel, probed: Probes) -> Tally:
    """Run ``program`` on the probe inputs under ``model``'s settings and compare with the model's outputs."""
    cfg = model.config
    made = programs.from_program(program, cfg.input_vocab, cfg.max_seq_len, cfg.causal)
    per_value: dict[tuple[str, str], list[int]] = {}  # the model's output value -> [matched, compared]
    counter: list[tuple[tuple, tuple, tuple]] = []
    for xs, want in zip(probed.inputs, probed.outputs):
        try:
            got = list(made.evaluate(xs))
        except Exception:  # noqa: BLE001 - a decoded program may fail on an input: every position disagrees
            got = ["<error>"] * len(xs)
        pairs = [(g, m) for g, m in zip(got, want) if g is not None]
        for g, m in pairs:
            seen = per_value.setdefault(trained.value_key(m), [0, 0])
            seen[0] += g == m
            seen[1] += 1
        if any(g != m for g, m in pairs):
            counter.append((tuple(xs), tuple(want), tuple(got)))
    shortest = sorted(counter, key=lambda c: len(c[0]))[:3]  # stable: probe order among equal lengths
    right, compared = sum(v[0] for v in per_value.values()), sum(v[1] for v in per_value.values())
    balanced = sum(v[0] / v[1] for v in per_value.values()) / max(1, len(per_value))
    return Tally(right, compared, tuple(shortest), balanced)


SCREEN = 16  # probe inputs every candidate of a search runs first
KEEP = 8  # candidates kept after screening (expanded to their neighbours, then checked on every probe)
ROUNDS = 2  # times the kept candidates are expanded to their neighbours (a short hill climb)
WIDEN = 4  # the screen's best KEEP * WIDEN are screened again on SCREEN * WIDEN probes before KEEP are kept
SCREEN_LENGTH = 16  # longest screening input (a RASP Select costs length^2: a 150-token model screens on short inputs)
ORIGINS = ("beam", "prior", "neighbour")


@dataclasses.dataclass(frozen=True)
class Found:
    """A program a search considered: where it came from (``beam``, ``prior`` or ``neighbour``), its place in the
    search order (beam candidates first, most likely first), and its tally on the full probes."""

    program: Program | PyProgram
    origin: str
    order: int
    tally: Tally


def search(beam: list[Decoded], prior: list[Program | PyProgram], model: TrainedModel, probes: int = PROBES,
           seed: int = 0, expand: bool = True, screen: int = SCREEN, keep: int = KEEP,
           rounds: int = ROUNDS, widen: int = WIDEN, longest: int = PROBE_LENGTH) -> list[Found]:  # fmt: skip
    """Weights propose, behaviour decides: the ``beam``'s programs and a ``prior`` pool (e.g. the programs the
    meta-model was trained on) run on ``screen`` probe inputs (at most ``SCREEN_LENGTH`` long), the ``keep * widen``
    agreeing most run again on ``screen * widen`` others (many candidates fit 16 inputs equally well; one screen
    would keep the first ``keep`` of them in search order) and the ``keep`` agreeing most on both are kept; with
    ``expand``, ``rounds`` times, the kept ones' one-substitution neighbours (RASP: another library function or
    comparison; Python: an offset, bound or constant moved by one, or another comparison) are
    screened the same way and compete for the places. The kept ones run on all ``probes`` (at most ``longest``
    long). Returns the survivors,
    best first (most agreeing pairs; ties: earlier in the search order). Empty only when there is nothing to search."""
    seen: dict[str, None] = {}
    pool: list[tuple[Program | PyProgram, str]] = []

    def add(program: Program | PyProgram, origin: str) -> None:
        key = _text(program)
        if key is not None and key not in seen:
            seen[key] = None
            pool.append((program, origin))

    for d in beam:
        add(d.program, "beam")
    for p in prior:
        add(p, "prior")
    short = min(SCREEN_LENGTH, longest)
    quick = probe(model, screen, seed, short)
    finer = probe(model, screen * widen, seed + 2, short) if widen > 1 else quick  # seed + 1: decompile's fresh check
    rights: list[dict[int, int]] = [{}, {}]  # per screen, candidate -> agreeing pairs (computed once)

    def screened(i: int, stage: int) -> int:
        if i not in rights[stage]:
            rights[stage][i] = tally(pool[i][0], model, (quick, finer)[stage]).right
        return rights[stage][i]

    def best(indices: list[int]) -> list[int]:
        first = sorted(indices, key=lambda i: (-screened(i, 0), i))[: keep * widen]
        if widen == 1:
            return first
        return sorted(first, key=lambda i: (-screened(i, 0) - screened(i, 1), i))[:keep]

    top = best(list(range(len(pool))))
    expanded: set[int] = set()
    for _ in range(rounds if expand else 0):
        start = len(pool)
        for i in set(top) - expanded:
            for n in _neighbours(pool[i][0]):
                add(n, "neighbour")
        expanded.update(top)
        if len(pool) == start:
            break
        top = best(top + list(range(start, len(pool))))
    full = probe(model, probes, seed, longest)
    found = [Found(pool[i][0], pool[i][1], i, tally(pool[i][0], model, full)) for i in top]
    return sorted(found, key=lambda f: (-f.tally.right, f.order))


def _text(program: Program | PyProgram) -> str | None:
    """The program's canonical text, or None when it is not one of its language (a Python neighbour whose text does
    not read back, e.g. a negative loop bound)."""
    try:
        if isinstance(program, Program):
            return rasp_text.format_program(program)
        shown = python_program.format_program(program)
        return shown if python_tokens.parse_text(shown) == program else None
    except (MetamodelsError, ValueError, KeyError, IndexError, SyntaxError):
        return None


def _neighbours(program: Program | PyProgram) -> list[Program | PyProgram]:
    if isinstance(program, Program):
        return list(rasp_program.neighbours(program))
    return list(python_tokens.neighbours(program))
