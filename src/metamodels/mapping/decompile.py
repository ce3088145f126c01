"""Decompile a trained transformer with a mapping meta-model, and measure the program's agreement with the model.

A trained model is only approximately its program, so the check is a measured rate, not a proof: the decoded
program and the model run on ``probes`` seeded random inputs of the model's vocabulary (lengths 1..max_seq_len);
``agreement`` is the fraction of (input, position) pairs where the program is defined and equals the model's output,
with the shortest disagreeing inputs as counterexamples. ``agrees`` says whether that rate reaches ``bar`` (default 0.95, the
zoo's training bar: a model counts as trained on a program when it matches it that often on held-out inputs) and the
*balanced* rate (per output value of the model, the share of its pairs the program matches; their mean) reaches
0.9 (``decoding.BALANCED_BAR``): where 95% of a model's outputs are one value, a program that always writes it
matches 95% of pairs but only half of the balanced rate. Measured at stop 38 on the true programs of 60 test models
of each RASP zoo: balanced >= 0.9 for 59 of 60 of both; the bar turned away 4 of the 17 wrong programs that the
rate alone accepted on 79 wider models (`benchmarks/mapping_wide.py`), and none of the 42 right ones
(`docs/mapping/balanced_check.py`).

:func:`decompile` decodes a beam of programs and keeps the one agreeing with the model most on probes drawn with
``seed`` (:func:`metamodels.mapping.decoding.search`, which also tries the programs the meta-model was trained on,
stored in its checkpoint, and one-substitution neighbours); the agreement it reports is measured on fresh probes
(seed + 1), so choosing among many candidates does not inflate it (where a model has fewer distinct inputs than
``probes``, both are every input).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from metamodels.errors import MetamodelsError
from metamodels.mapping import data, decoding, training
from metamodels.python import program as python_program
from metamodels.python import tokens as python_tokens
from metamodels.python.program import PyProgram
from metamodels.rasp import text
from metamodels.rasp.program import Program
from metamodels.transformer.trained import TrainedModel

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints" / "mapping"
LANGUAGES = ("rasp", "python")


def default_checkpoint(language: str) -> Path:
    path = CHECKPOINTS / f"{language}.safetensors"
    if not path.is_file():
        raise MetamodelsError(f"no shipped mapping checkpoint for {language} ({path}); train one with "
                              f"`metamodels mapping train ZOO -o CKPT` and pass --checkpoint CKPT")  # fmt: skip
    return path


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How often a program matches a trained model on seeded random inputs (see the module docstring)."""

    rate: float
    balanced: float  # per output value of the model, the share of its pairs the program matches; their mean
    compared: int  # (input, position) pairs where the program is defined
    counterexamples: tuple[tuple[tuple, tuple, tuple], ...]  # (input, model output, program output)
    bar: float
    balanced_bar: float
    probes: int
    seed: int
    longest: int  # the longest probe input (lengths are drawn up to the model's context, or decoding.PROBE_LENGTH)

    @property
    def agrees(self) -> bool:
        return decoding.agreeing(self.compared, self.rate, self.balanced, self.bar, self.balanced_bar)

    def describe(self) -> str:
        lines = [f"agreement with the model: {self.rate:.3f} of {self.compared} (input, position) pairs on {self.probes} "
                 f"random inputs of lengths 1-{self.longest} (seed {self.seed}), {self.balanced:.3f} balanced over "
                 f"the model's output values: {'agrees' if self.agrees else 'does not agree'} (bars {self.bar} and "
                 f"{self.balanced_bar})"]  # fmt: skip
        for xs, want, got in self.counterexamples:
            lines.append(f"  input {_shown(xs)}: model {_shown(want)}, program {_shown(got)}")
        return "\n".join(lines)


SHOWN = 20  # values of a counterexample printed before eliding the rest


def _shown(values: tuple) -> str:
    """``values`` as a list, the part past ``SHOWN`` elided with a count."""
    if len(values) <= SHOWN:
        return str(list(values))
    return f"{str(list(values[:SHOWN]))[:-1]}, ... ({len(values) - SHOWN} more)]"


def _agreement(measured: decoding.Tally, probed: decoding.Probes, bar: float) -> Agreement:
    return Agreement(measured.rate, measured.balanced, measured.compared, measured.counterexamples, bar,
                     decoding.BALANCED_BAR, len(probed.inputs), probed.seed, max(map(len, probed.inputs)))  # fmt: skip


def agreement(program: Program | PyProgram, model: TrainedModel, probes: int = decoding.PROBES, seed: int = 0,
              bar: float = decoding.BAR, longest: int = decoding.PROBE_LENGTH) -> Agreement:  # fmt: skip
    """Run ``program`` and ``model`` on ``probes`` seeded random inputs of the model's vocabulary (at most
    ``longest`` long) and compare."""
    probed = decoding.probe(model, probes, seed, longest)
    return _agreement(decoding.tally(program, model, probed), probed, bar)


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
    """The program the search put first (None if there was nothing to search) and its agreement with the model.

    ``origin``: where it came from (the meta-model's ``beam``, the checkpoint's ``prior`` programs, or a
    ``neighbour`` of one of those); ``beam`` and ``prior``: how many programs each offered.
    """

    language: str
    tokens: tuple[str, ...]
    text: str | None
    agreement: Agreement | None
    checkpoint: str
    origin: str = ""
    beam: int = 0
    prior: int = 0

    def describe(self) -> str:
        if self.text is None or self.agreement is None:
            return f"no {self.language} program: the meta-model finished none and its checkpoint holds no prior"
        how = {"beam": "decoded from the weights", "prior": "a program the meta-model was trained on",
               "neighbour": "one substitution away from a decoded or prior program"}[self.origin]  # fmt: skip
        chosen = (f"chosen by agreement with the model among {self.beam} decoded and {self.prior} prior programs "
                  f"and their neighbours: {how}")  # fmt: skip
        return "\n".join([self.text.rstrip(), "", chosen, self.agreement.describe()])

    def to_json(self) -> dict:
        agrees = self.agreement is not None and self.agreement.agrees
        return dataclasses.asdict(self) | {"agrees": agrees}


def decompile(model: TrainedModel, checkpoint: Path | None = None, language: str = "rasp", probes: int = decoding.PROBES,
              seed: int = 0, bar: float = decoding.BAR, beam: int = decoding.BEAM,
              longest: int = decoding.PROBE_LENGTH) -> MappingResult:  # fmt: skip
    """Decode ``beam`` programs for ``model`` with the mapping checkpoint (default: the shipped one for ``language``),
    search them, the checkpoint's prior programs and their neighbours by agreement with the model on probes drawn
    with ``seed`` (:func:`metamodels.mapping.decoding.search`), and return the first with its agreement on fresh
    probes (every probe at most ``longest`` long)."""
    if language not in LANGUAGES:
        raise MetamodelsError(f"unknown language {language!r} (rasp or python)")
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(language)
    meta_model, vocab, meta = training.load(path)
    if vocab.language != language:
        raise MetamodelsError(f"{path} maps to {vocab.language}, not {language}")
    config = training.MappingConfig(**meta["config"])
    example = data.Example("", "", "", "", 0, model.n_params, config.featurize(model), (1, 2))
    inputs, _ = training.collate(config, [example])
    candidates = decoding.beam_search(meta_model, inputs, vocab, meta["max_len"], beam)
    prior = [data.parse_program(language, t) for t in meta.get("prior", [])]
    kept = decoding.search(candidates, prior, model, probes, seed, longest=longest)
    if not kept:
        return MappingResult(language, (), None, None, str(path))
    program = kept[0].program
    shown = text.format_program(program) if isinstance(program, Program) else python_program.format_program(program)
    fresh = decoding.probe(model, probes, seed + 1, longest)
    return MappingResult(language, tuple(data.program_strings(program)[1:]), shown,
                         _agreement(decoding.tally(program, model, fresh), fresh, bar), str(path), kept[0].origin,
                         len(candidates), len(prior))  # fmt: skip
