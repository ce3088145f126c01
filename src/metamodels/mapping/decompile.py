"""Decompile a trained transformer with a mapping meta-model, and measure the program's agreement with the model.

A trained model is only approximately its program, so the check is a measured rate, not a proof: the decoded
program and the model run on ``probes`` seeded random inputs of the model's vocabulary (lengths 1..max_seq_len);
``agreement`` is the fraction of (input, position) pairs where the program is defined and equals the model's output,
with the first disagreements as counterexamples. ``agrees`` says whether that rate reaches ``bar`` (default 0.95, the
zoo's training bar: a model counts as trained on a program when it matches it that often on held-out inputs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from metamodels.errors import MetamodelsError
from metamodels.mapping import data, training
from metamodels.python import program as python_program
from metamodels.python import tokens as python_tokens
from metamodels.python.program import PyProgram
from metamodels.rasp import text
from metamodels.rasp.program import Program
from metamodels.transformer import trained
from metamodels.transformer.trained import TrainedModel
from metamodels.zoo import programs, tasks

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints" / "mapping"
LANGUAGES = ("rasp", "python")


def default_checkpoint(language: str) -> Path:
    path = CHECKPOINTS / f"{language}.safetensors"
    if not path.is_file():
        raise MetamodelsError(f"no shipped mapping checkpoint for {language} ({path}); train one with "
                              f"`metamodels mapping train ZOO -o CKPT` and pass --checkpoint CKPT")  # fmt: skip
    return path


PROBES = 256  # random inputs an agreement check runs
BAR = 0.95  # agreement rate that counts as agreeing (the zoo's training bar)


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How often a program matches a trained model on seeded random inputs (see the module docstring)."""

    rate: float
    compared: int  # (input, position) pairs where the program is defined
    counterexamples: tuple[tuple[tuple, tuple, tuple], ...]  # (input, model output, program output)
    bar: float
    probes: int
    seed: int

    @property
    def agrees(self) -> bool:
        return self.compared > 0 and self.rate >= self.bar

    def describe(self) -> str:
        lines = [f"agreement with the model: {self.rate:.3f} of {self.compared} (input, position) pairs on {self.probes} "
                 f"random inputs (seed {self.seed}): {'at or above' if self.agrees else 'below'} the bar {self.bar}"]  # fmt: skip
        for xs, want, got in self.counterexamples:
            lines.append(f"  input {list(xs)}: model {list(want)}, program {list(got)}")
        return "\n".join(lines)


def agreement(program: Program | PyProgram, model: TrainedModel, probes: int = PROBES, seed: int = 0,
              bar: float = BAR) -> Agreement:  # fmt: skip
    """Run ``program`` and ``model`` on ``probes`` seeded random inputs of the model's vocabulary and compare."""
    cfg = model.config
    made = programs.from_program(program, cfg.input_vocab, cfg.max_seq_len, cfg.causal)
    inputs = tasks.input_pool(cfg.input_vocab, cfg.max_seq_len, probes, np.random.default_rng(seed))
    right = compared = 0
    counter: list[tuple[tuple, tuple, tuple]] = []
    for xs, want in zip(inputs, trained.run(model, inputs)):
        try:
            got = list(made.evaluate(xs))
        except Exception:  # noqa: BLE001 - a decoded program may fail on an input: every position disagrees
            got = ["<error>"] * len(xs)
        pairs = [(g, m) for g, m in zip(got, want) if g is not None]
        compared += len(pairs)
        right += sum(g == m for g, m in pairs)
        if any(g != m for g, m in pairs) and len(counter) < 3:
            counter.append((tuple(xs), tuple(want), tuple(got)))
    return Agreement(right / max(1, compared), compared, tuple(counter), bar, len(inputs), seed)


def read_program(path: Path) -> Program | PyProgram:
    """A RASP or Python program file (Python if its text starts with ``def``); one-line error naming the file."""
    try:
        source = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MetamodelsError(f"{path}: cannot read ({e})") from None
    if not source.lstrip().startswith("def "):
        return text.read_program(Path(path), source)
    try:
        return python_tokens.parse_text(source)
    except MetamodelsError as e:
        raise MetamodelsError(f"{path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class MappingResult:
    """A decoded program (None if the tokens are not one) and its measured agreement with the model."""

    language: str
    tokens: tuple[str, ...]
    text: str | None
    agreement: Agreement | None
    checkpoint: str

    def describe(self) -> str:
        if self.text is None or self.agreement is None:
            return f"no {self.language} program: the meta-model wrote {' '.join(self.tokens)}"
        return "\n".join([self.text.rstrip(), "", self.agreement.describe()])

    def to_json(self) -> dict:
        agrees = self.agreement is not None and self.agreement.agrees
        return dataclasses.asdict(self) | {"agrees": agrees}


def decompile(model: TrainedModel, checkpoint: Path | None = None, language: str = "rasp", probes: int = PROBES,
              seed: int = 0, bar: float = BAR) -> MappingResult:  # fmt: skip
    """Decode ``model``'s program with the mapping checkpoint (default: the shipped one for ``language``)."""
    if language not in LANGUAGES:
        raise MetamodelsError(f"unknown language {language!r} (rasp or python)")
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(language)
    meta_model, vocab, meta = training.load(path)
    if vocab.language != language:
        raise MetamodelsError(f"{path} maps to {vocab.language}, not {language}")
    config = training.MappingConfig(**meta["config"])
    example = data.Example("", "", "", "", 0, model.n_params, config.featurize(model), (1, 2))
    inputs, _ = training.collate(config, [example])
    strings = data.decode_strings(vocab, training.greedy(meta_model, inputs, meta["max_len"])[0])
    program = training.parse_decoded(vocab, strings)
    if program is None:
        return MappingResult(language, tuple(strings), None, None, str(path))
    shown = text.format_program(program) if isinstance(program, Program) else python_program.format_program(program)
    return MappingResult(language, tuple(strings), shown, agreement(program, model, probes, seed, bar), str(path))
