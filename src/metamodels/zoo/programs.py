"""The programs a zoo trains on: candidate ``index`` of a seeded stream, in either language.

A :class:`Candidate` carries what the build needs to deduplicate, split and train: the program's
readable text and canonical hash, a fingerprint of its behaviour (outputs on a fixed battery of its
settings), its input vocabulary, length and masking, and its evaluation (input -> outputs, None where
undefined). RASP programs come from :mod:`metamodels.dataset.sampling`, Python programs from
:mod:`metamodels.python.generate`; both are deterministic functions of (seed, index) and settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from metamodels.dataset import examples, sampling
from metamodels.python import generate as python_generate
from metamodels.python import program as python_program
from metamodels.python import tokens as python_tokens
from metamodels.rasp import canonical, text
from metamodels.rasp.program import Program
from metamodels.transformer import battery
from metamodels.transformer.compiled import Value

LANGUAGES = ("rasp", "python")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One program of a zoo's stream, with its settings (``program``: a RASP or a Python program)."""

    language: str
    index: int
    program: Program | python_program.PyProgram
    text: str
    canonical_hash: str
    fingerprint: str
    size: int  # RASP ops, or Python statements
    vocab: tuple[Value, ...]
    max_seq_len: int
    causal: bool

    def evaluate(self, xs: Sequence[Value]) -> Sequence[Value | None]:
        """The program's output on ``xs`` (causal: as a causally masked model computes it)."""
        if isinstance(self.program, Program):
            return battery.expected_output(self.program.evaluate, xs, self.causal)
        arr = [int(v) for v in xs]  # Python programs read integers
        if self.causal:
            return [python_program.execute(self.program, arr[: i + 1])[i] for i in range(len(arr))]
        return python_program.execute(self.program, arr)


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where a stream's settings come from: per index, vocabulary size and length drawn from the ranges."""

    language: str
    seed: int
    min_ops: int
    max_ops: int
    vocab_size: tuple[int, int]
    max_seq_len: tuple[int, int]
    causal_share: float


def candidate(domain: Domain, index: int) -> Candidate | str:
    """Program ``index`` of the domain's stream, or the reason there is none."""
    rng = np.random.default_rng([domain.seed, index, 21])
    size = int(rng.integers(domain.vocab_size[0], domain.vocab_size[1] + 1))
    length = int(rng.integers(domain.max_seq_len[0], domain.max_seq_len[1] + 1))
    causal = bool(rng.random() < domain.causal_share)
    if domain.language == "rasp":
        config = sampling.SamplerConfig(vocab=tuple(range(1, size + 1)), max_seq_len=length,
                                        min_ops=domain.min_ops, max_ops=domain.max_ops, causal=causal)  # fmt: skip
        try:
            program = sampling.sample(config, domain.seed, index).program
        except sampling.SamplerExhausted:
            return "sampler_exhausted"
        made = Candidate("rasp", index, program, text.format_program(program), canonical.canonical_hash(program),
                         "", program.n_ops, config.vocab, length, causal)  # fmt: skip
    else:
        config_py = python_generate.GeneratorConfig(
            values=python_generate.values_of(size), max_seq_len=length,
            min_loops=min(domain.min_ops, 3), max_loops=min(domain.max_ops, 3),
        )  # fmt: skip
        sampled = python_generate.sample(config_py, domain.seed, index)
        if isinstance(sampled, str):
            return sampled
        made = Candidate("python", index, sampled, python_program.format_program(sampled),
                         python_program.canonical_hash(sampled), "", sampled.n_statements,
                         config_py.values, length, causal)  # fmt: skip
    inputs = battery.make_battery(made.vocab, made.max_seq_len, per_length=8, seed=0)
    outputs = [list(made.evaluate(xs)) for xs in inputs]
    key = (domain.language, made.vocab, made.max_seq_len, made.causal)
    return dataclasses.replace(made, fingerprint=examples.fingerprint(key, outputs))


def from_text(language: str, program_text: str, vocab: Sequence[Value], max_seq_len: int, causal: bool) -> Candidate:
    """The candidate a stored zoo row describes (its text parsed back; no hash or fingerprint recomputed)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (one of {', '.join(LANGUAGES)})")
    program = text.parse_program(program_text) if language == "rasp" else python_tokens.parse_text(program_text)
    return from_program(program, vocab, max_seq_len, causal, program_text)


def from_program(program: Program | python_program.PyProgram, vocab: Sequence[Value], max_seq_len: int, causal: bool,
                 program_text: str = "") -> Candidate:  # fmt: skip
    """A program (RASP or Python) with the settings it runs under, to evaluate it like a zoo's candidate."""
    if isinstance(program, Program):
        return Candidate("rasp", -1, program, program_text, "", "", program.n_ops, tuple(vocab), max_seq_len, causal)
    return Candidate(
        "python", -1, program, program_text, "", "", program.n_statements, tuple(vocab), max_seq_len, causal
    )
