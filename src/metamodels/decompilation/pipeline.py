"""Compiled model -> RASP program: the ``decompile`` orchestrator.

1. encode the weights (:mod:`metamodels.meta.weight_encoding`),
2. decode with the meta-model under the grammar (:mod:`metamodels.meta.decoding`):
   greedy (guided by the data flow the weights show, :mod:`metamodels.decompilation.guide`,
   unless ``wiring`` is off), or a beam of K candidates best-first,
2b. (``readout``, on by default) read each candidate's functions and predicates
   from the weights (:mod:`metamodels.decompilation.readout`, by Tracr's residual labels) or, in
   a basis without them (dense), probed from the activations (:mod:`metamodels.decompilation.probing`);
   where the structure fits, that variant comes first — it can hold tables the library does not have,
3. optionally verify the candidates in order against the model
   (:mod:`metamodels.decompilation.verification`) and return the first whose verdict holds
   (not refuted and with evidence at every input length: ``verification.verdict_of``),
   with its weight certificate;
4. if none does (and ``repair``), try the best candidates' neighbours — one
   function or predicate replaced by another from the library, the usual error
   of a meta-model that read the structure right — in order of the meta-model's
   score, and return the first that verifies (marked as repaired); otherwise the
   best candidate marked unverified, with its counterexamples.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from metamodels import devices, options
from metamodels.decompilation import guide, probing, tracing, wiring
from metamodels.errors import MetamodelsError
from metamodels.meta import decoding, metamodel, weight_encoding
from metamodels.rasp import program as program_mod
from metamodels.rasp import text
from metamodels.rasp import tokens as tokens_mod
from metamodels.rasp.program import Program
from metamodels.transformer import battery
from metamodels.transformer.compiled import CompiledModel

if TYPE_CHECKING:
    from metamodels.decompilation.verification import VerificationReport

DEFAULT_CHECKPOINT = Path(__file__).parents[1] / "checkpoints" / "default"
DENSE_CHECKPOINT = Path(__file__).parents[1] / "checkpoints" / "dense"
REPAIR = 200  # one-substitution repairs checked when no decoded candidate verifies
Status = Literal["verified", "unverified", "not_checked"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One decoded candidate: beam rank (0 = best score; a read-out variant shares its candidate's), program text,
    log-probability, verdict if checked."""

    rank: int
    text: str | None
    tokens: tuple[str, ...]
    score: float
    verdict: str | None = None
    read_out: bool = False  # functions and predicates read from the weights (tokens give the structure)
    wiring: bool = False  # the structure read from the weights too (decompilation.wiring), not decoded


@dataclasses.dataclass(frozen=True)
class Decompiled:
    """The result of decompiling one model.

    ``program`` is the chosen candidate (None only if decoding hit the length
    limit); ``status`` says whether it was verified against the model, found to
    disagree ("unverified": no candidate verified), or not checked. ``report``
    is the chosen candidate's VerificationReport when checked.
    """

    program: Program | None
    text: str | None
    tokens: tuple[str, ...]
    score: float
    status: Status
    candidates: tuple[Candidate, ...]
    report: VerificationReport | None = None
    repaired: bool = False  # verified only after replacing one function or predicate of a decoded candidate
    chosen: int = 0  # index in ``candidates`` of the returned program
    checkpoint: str = ""  # the meta-model's checkpoint directory
    out_of_time: bool = False  # unverified because the verification budget ran out (not every candidate checked)
    traced: bool = False  # the model has no residual labels: a whole program read from it was traced (tracing.py)

    def describe(self, default_checkpoint: bool = True, repair: int = 0) -> str:
        """The result as ``metamodels decompile`` prints it: the program, then what was checked, as comments."""
        lines = [self.text or ""]
        if default_checkpoint and self.checkpoint == str(DENSE_CHECKPOINT):
            lines.append("# read by the dense-weights meta-model (the model's residual stream is not in Tracr's basis)")
        r = self.report
        if self.status == "verified" and r is not None:
            weights = {True: "weights match after recompiling", False: "weights differ after recompiling",
                       None: "weights not compared"}[r.weights.match if r.weights else None]  # fmt: skip
            chosen = self.candidates[self.chosen]
            source = ("a one-substitution repair of the decoded candidates" if self.repaired else
                      "structure, functions and predicates read from the weights (residual labels)" if chosen.wiring and not self.traced else
                      "structure, functions and predicates traced from the activations (no residual labels)" if chosen.wiring else
                      f"beam candidate {chosen.rank + 1}" + (", functions and predicates read from the weights" if chosen.read_out else ""))  # fmt: skip
            lines.append(f"# verified: {r.verdict} on {r.n_inputs} inputs ({'all' if r.exhaustive else 'random'}); "
                         f"{weights}; {source}")  # fmt: skip
        elif self.status == "unverified":
            checked = sum(c.verdict is not None for c in self.candidates)
            lines.append(f"# UNVERIFIED: none of the {checked} candidates checked"
                         + (f" (of {len(self.candidates)}; the time budget ran out)" if self.out_of_time else
                            f" (all decoded, plus up to {repair} one-substitution repairs)" if repair else "")
                         + " holds on the model; best candidate shown")  # fmt: skip
            lines += [f"#   counterexample {list(c.input)}: model {list(c.model_output)}, program {list(c.program_output)}"
                      for c in (r.counterexamples if r else ())[:3]]  # fmt: skip
        return "\n".join(lines)

    def to_json(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("program", "report")}
        out["verification"] = self.report.to_json() if self.report is not None else None
        return out


def _budget(text: str) -> float | None:
    seconds = float(text)
    return None if seconds == 0 else seconds


@dataclasses.dataclass(frozen=True)
class DecompileConfig:
    """How :func:`decompile` searches and checks (``metamodels decompile``'s options).

    The default is the mode that is right most often in seconds: a beam of 32 candidates, verified in order of
    score against the model (then one-substitution repairs) within a time budget. ``greedy`` is the fast mode.
    """

    beam: int = options.option(32, help="beam width; 1 = greedy decoding")
    verify: bool = options.option(True, flag="--no-verify", help="return the best-scored candidate unchecked")
    max_inputs: int = battery.inputs_option()
    repair: int = options.option(REPAIR, help="if no candidate verifies, check up to this many one-substitution "
                                 "repairs of the best candidates (0: off)")  # fmt: skip
    certificate: bool = True  # recompile the verified program and compare weights
    read_tables: bool = options.option(True, flag="--no-readout", help="keep the meta-model's library functions "
                                       "instead of also reading each candidate's functions and predicates from the "
                                       "weights (tried first)")  # fmt: skip
    budget: float | None = options.option(20.0, parse=_budget, show=lambda s: f"{s:g} s", help="seconds spent "
                                          "verifying candidates and repairs; then the best candidate is returned "
                                          "unverified (0: no limit)")  # fmt: skip
    greedy: bool = options.option(False, help="fast mode: greedy decoding (guided by the data flow the weights "
                                  "show), no verification (--beam 1 --no-verify)")  # fmt: skip
    wiring: bool = options.option(True, flag="--no-wiring", help="only the meta-model's candidates: do not first "
                                  "read the whole program from the weights, nor guide greedy decoding by the data "
                                  "flow they show (models in Tracr's basis)")  # fmt: skip

    def __post_init__(self) -> None:
        for name, least in (("beam", 1), ("max_inputs", 1), ("repair", 0)):
            if getattr(self, name) < least:
                flag = "--inputs" if name == "max_inputs" else f"--{name}"
                raise MetamodelsError(f"{flag} must be at least {least}, got {getattr(self, name)}")
        if self.budget is not None and not self.budget > 0:
            raise MetamodelsError(f"--budget must be positive (0: no limit), got {self.budget}")

    def arguments(self) -> dict:
        """The keyword arguments of :func:`decompile` this config stands for (``greedy`` resolved)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "greedy"}
        return {**out, "beam": 1, "verify": False} if self.greedy else out


_LOADED: dict[str, metamodel.MetaModel] = {}


def shipped_checkpoint(model: CompiledModel | None = None) -> Path:
    """The shipped checkpoint for ``model``: in Tracr's own residual basis (it has residual labels), the default
    one; in any other basis (dense: rotated, PCA-compressed), the one that reads weights in their canonical basis."""
    dense = model is not None and not model.residual_labels
    return DENSE_CHECKPOINT if dense and DENSE_CHECKPOINT.is_dir() else DEFAULT_CHECKPOINT


def load_metamodel(checkpoint: str | Path | None = None, device: str = devices.DEVICE) -> metamodel.MetaModel:
    """The meta-model of a checkpoint directory (default: the shipped default one) on ``device`` (see
    :func:`devices.device`), loaded once per process and device."""
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    dev = devices.device(device)
    key = f"{path.resolve()}@{dev}"
    if key not in _LOADED:
        _LOADED[key] = metamodel.load_checkpoint(path)[0].to(dev)
    return _LOADED[key]


def decompile(
    model: CompiledModel,
    *,
    checkpoint: str | Path | metamodel.MetaModel | None = None,
    device: str = devices.DEVICE,
    beam: int = DecompileConfig.beam,
    verify: bool = DecompileConfig.verify,
    max_inputs: int = DecompileConfig.max_inputs,
    repair: int = DecompileConfig.repair,
    certificate: bool = DecompileConfig.certificate,
    read_tables: bool = DecompileConfig.read_tables,
    budget: float | None = DecompileConfig.budget,
    wiring: bool = DecompileConfig.wiring,
) -> Decompiled:
    """Decompile a compiled model; see the module docstring. EncodingError if the weights are out of range.

    ``checkpoint`` None: the shipped meta-model for the model's basis (:func:`shipped_checkpoint`), loaded on
    ``device`` (auto: a GPU if one is present; a MetaModel passed in stays where it is).
    ``certificate=False`` skips the recompile-and-compare check of the verified program;
    ``read_tables=False`` keeps the meta-model's library functions as decoded.
    """
    config = DecompileConfig(beam, verify, max_inputs, repair, certificate, read_tables, budget, wiring=wiring)
    if checkpoint is None:
        checkpoint = shipped_checkpoint(model)
    if isinstance(checkpoint, metamodel.MetaModel):
        return dataclasses.replace(_decompile(model, checkpoint, config), traced=not model.residual_labels)
    result = _decompile(model, load_metamodel(checkpoint, device), config)
    return dataclasses.replace(result, checkpoint=str(checkpoint), traced=not model.residual_labels)


def _decompile(model: CompiledModel, meta: metamodel.MetaModel, config: DecompileConfig) -> Decompiled:
    try:
        weights: weight_encoding.WeightTokens | None = weight_encoding.encode(
            model.params, weight_encoding.for_decompiling(meta.cfg.encoding)
        )
        too_large = None
    except weight_encoding.EncodingError as e:  # more weight tokens than the meta-model reads: wiring still can
        weights, too_large = None, e
    deadline = None if config.budget is None else time.monotonic() + config.budget
    # The whole program read from the model: from the weights by Tracr's residual labels (wiring.py), or traced
    # from the activations in any other basis (tracing.py); checked first, and when it verifies the meta-model's
    # beam is not needed.
    probed = None if model.residual_labels or not config.read_tables else probing.probe(model)
    read = _wired(meta, weights, model, probed) if config.verify and config.read_tables and config.wiring else None
    if read is not None:
        report = check(read.program, model, config.max_inputs, deadline=deadline)  # type: ignore[arg-type]
        wired = dataclasses.replace(_candidate(0, read), verdict=report.verdict, wiring=True)
        if report.holds():
            return _verified(model, config, read, report, [wired], 0)
        if too_large is not None:  # the meta-model cannot read it: the wired program, as checked
            return dataclasses.replace(_result(read, "unverified", [wired], report), out_of_time=_past(deadline))
    if too_large is not None:
        raise too_large
    assert weights is not None
    if config.beam == 1:  # greedy: one candidate, so decoded under the data flow the weights show (guide.py)
        found = decoding.greedy(meta, [weights], [guide.guide_or_none(model) if config.wiring else None])
    else:  # the meta-model's own candidates: alternatives to the program read whole from the weights
        found = decoding.beam_search(meta, weights, config.beam)
    if config.read_tables:
        found = with_readout(found, model, probed)
    # Beam rank: decoded candidates before this one (a read-out variant precedes its own).
    candidates = [_candidate(sum(not f.read_out for f in found[:i]), c) for i, c in enumerate(found)]
    if not config.verify:
        return _result(found[0], "not_checked", candidates)
    first_report = report if read is not None else None
    for i, c in enumerate(found):
        if _past(deadline):
            break
        if c.program is None:
            continue
        report = check(c.program, model, config.max_inputs, deadline=deadline)
        candidates[i] = dataclasses.replace(candidates[i], verdict=report.verdict)
        first_report = first_report or report
        if report.holds():
            return _verified(model, config, c, report, candidates, i)
    fixed = repair_candidates(meta, weights, found, model, budget=config.repair, max_inputs=config.max_inputs,
                              deadline=deadline)  # fmt: skip
    if fixed is not None:
        c, report = fixed
        repaired = dataclasses.replace(_candidate(len(candidates), c), verdict=report.verdict)
        return _verified(model, config, c, report, [*candidates, repaired], len(candidates), repaired=True)
    listed = candidates + ([wired] if read is not None else [])
    result = _result(found[0], "unverified", listed, first_report)
    return dataclasses.replace(result, out_of_time=_past(deadline))


def _verified(model, config: DecompileConfig, c: decoding.Candidate, report, listed: list[Candidate], chosen: int,
              repaired: bool = False) -> Decompiled:  # fmt: skip
    """The verified result, with its weight certificate (recompile and compare) unless ``config`` skips it."""
    from metamodels.decompilation import verification  # it imports the compiler (JAX): only when verifying

    certificate = verification.compare_weights(c.program, model) if config.certificate else None  # type: ignore[arg-type]
    return _result(c, "verified", listed, dataclasses.replace(report, weights=certificate), repaired, chosen)


def _wired(meta: metamodel.MetaModel, weights, model: CompiledModel, probed: probing.Probe | None
           ) -> decoding.Candidate | None:  # fmt: skip
    """The program read whole from the model (by residual labels, else traced from ``probed`` activations), scored
    by the meta-model (None if the model does not allow it; score -inf where the meta-model cannot score it:
    ``weights`` None, a model too large for it)."""
    if model.residual_labels:
        program = wiring.read_program_or_none(model)
    else:
        program = tracing.read_program_or_none(model, probed)
    if program is None:
        return None
    try:
        ids = tuple(tokens_mod.tokenize(program))
    except ValueError:  # beyond the meta-model's vocabulary
        ids = ()
    if weights is None or not ids or len(ids) > meta.cfg.max_program_tokens:  # what it cannot score: -inf
        return decoding.Candidate((), float("-inf"), program, read_out=True)
    return decoding.Candidate(ids, decoding.score(meta, weights, [ids])[0], program, read_out=True)


def with_readout(found: list[decoding.Candidate], model: CompiledModel, probed: probing.Probe | None = None
                 ) -> list[decoding.Candidate]:  # fmt: skip
    """Each candidate preceded by its read-out variant, where the structure fits; repeated programs dropped.
    Tables are read by residual labels in Tracr's basis, probed from activations in any other (dense; ``probed``:
    the model's probe, when already run)."""
    out: list[decoding.Candidate] = []
    seen: set[str] = set()
    if probed is None and not model.residual_labels:
        probed = probing.probe(model)
    for c in found:
        for variant in (_read_out(c, model, probed), c):
            if variant is None:
                continue
            key = text.format_program(variant.program) if variant.program is not None else None
            if key is None or key not in seen:
                seen.update([key] if key else [])
                out.append(variant)
    return out


def _read_out(c: decoding.Candidate, model: CompiledModel, probed: probing.Probe | None) -> decoding.Candidate | None:
    read = probing.read_any_or_none(c.program, model, probed) if c.program is not None else None
    return dataclasses.replace(c, program=read, read_out=True) if read is not None else None


def repair_candidates(
    meta: metamodel.MetaModel,
    weights: weight_encoding.WeightTokens,
    found: list[decoding.Candidate],
    model: CompiledModel,
    *,
    budget: int,
    max_inputs: int = battery.MAX_EXHAUSTIVE,
    top: int = 4,
    deadline: float | None = None,
) -> tuple[decoding.Candidate, VerificationReport] | None:
    """The best-scored single-substitution neighbour of the top candidates that verifies (at most ``budget`` checks,
    none after ``deadline``, a ``time.monotonic()`` value)."""
    seen = {c.tokens for c in found}
    pool: dict[tuple[int, ...], Program] = {}
    for c in found[:top]:
        for p in program_mod.neighbours(c.program) if c.program is not None else []:
            try:
                ids = tuple(tokens_mod.tokenize(p))
            except ValueError:
                continue
            if ids not in seen:
                pool.setdefault(ids, p)
    if not budget or not pool or (_past(deadline)):
        return None
    scores = decoding.score(meta, weights, list(pool))
    for s, ids in sorted(zip(scores, pool), reverse=True)[:budget]:
        if _past(deadline):
            return None
        report = check(pool[ids], model, max_inputs, deadline=deadline)
        if report.holds():
            return decoding.Candidate(ids, s, pool[ids]), report
    return None


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def check(
    program: Program,
    model: CompiledModel,
    max_inputs: int = battery.MAX_EXHAUSTIVE,
    screen: int = 300,
    deadline: float | None = None,
):
    """Behavioural verification, screened first on a few hundred inputs (most wrong candidates fail there); a check
    still running at ``deadline`` (``time.monotonic()``) is cut short: it holds only if every input length already
    has its evidence (inputs are checked one length at a time in turn)."""
    from metamodels.decompilation import verification  # it imports the compiler (JAX): only when verifying

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    first = verification.verify(program, model, max_inputs=min(screen, max_inputs), weights=False, seconds=left())
    if first.verdict == "refuted" or screen >= max_inputs:
        return first
    return verification.verify(program, model, max_inputs=max_inputs, weights=False, seconds=left())


def _candidate(rank: int, c: decoding.Candidate) -> Candidate:
    program_text = text.format_program(c.program) if c.program else None
    return Candidate(rank, program_text, tuple(c.token_strings), c.score, read_out=c.read_out)


def _result(
    c: decoding.Candidate,
    status: Status,
    candidates: list[Candidate],
    report=None,
    repaired: bool = False,
    chosen: int = 0,
) -> Decompiled:
    return Decompiled(
        program=c.program,
        text=text.format_program(c.program) if c.program else None,
        tokens=tuple(c.token_strings),
        score=c.score,
        status=status,
        candidates=tuple(candidates),
        report=report,
        repaired=repaired,
        chosen=chosen,
    )
