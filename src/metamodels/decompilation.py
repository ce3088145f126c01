"""Compiled model -> RASP program: the ``decompile`` orchestrator.

1. encode the weights (:mod:`metamodels.weight_encoding`),
2. decode with the meta-model under the grammar (:mod:`metamodels.decoding`):
   greedy, or a beam of K candidates best-first,
3. optionally verify the candidates in order against the model
   (:mod:`metamodels.verification`) and return the first that verifies, with its
   weight certificate; if none does, the best candidate marked unverified, with
   its counterexamples.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from metamodels import decoding, metamodel, weight_encoding
from metamodels import tokens as tokens_mod
from metamodels.compiled import CompiledModel
from metamodels.rasp import text
from metamodels.rasp.program import Program

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default"
Status = Literal["verified", "unverified", "not_checked"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One decoded candidate: rank (0 = best score), program text, log-probability, verdict if checked."""

    rank: int
    text: str | None
    tokens: tuple[str, ...]
    score: float
    verdict: str | None = None


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
    report: object | None = None

    def to_json(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("program", "report")}
        out["verification"] = self.report.to_json() if self.report is not None else None  # type: ignore[attr-defined]
        return out


_LOADED: dict[str, metamodel.MetaModel] = {}


def load_metamodel(checkpoint: str | Path | None = None) -> metamodel.MetaModel:
    """The meta-model of a checkpoint directory (default: the shipped one), loaded once per process."""
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    key = str(path.resolve())
    if key not in _LOADED:
        _LOADED[key] = metamodel.load_checkpoint(path)[0]
    return _LOADED[key]


def decompile(
    model: CompiledModel,
    *,
    checkpoint: str | Path | metamodel.MetaModel | None = None,
    beam: int = 1,
    verify: bool = False,
    max_inputs: int = 100_000,
) -> Decompiled:
    """Decompile a compiled model; see the module docstring. EncodingError if the weights are out of range."""
    meta = checkpoint if isinstance(checkpoint, metamodel.MetaModel) else load_metamodel(checkpoint)
    weights = weight_encoding.encode(model.params, meta.cfg.encoding)
    found = decoding.greedy(meta, [weights]) if beam == 1 else decoding.beam_search(meta, weights, beam)
    candidates = [_candidate(i, c) for i, c in enumerate(found)]
    if not verify:
        return _result(found[0], "not_checked", candidates)
    from metamodels import verification

    first_report = None
    for i, c in enumerate(found):
        if c.program is None:
            continue
        report = check(c.program, model, max_inputs)
        candidates[i] = dataclasses.replace(candidates[i], verdict=report.verdict)
        first_report = first_report or report
        if report.verdict != "refuted":
            certificate = verification.compare_weights(c.program, model)
            return _result(c, "verified", candidates, dataclasses.replace(report, weights=certificate))
    return _result(found[0], "unverified", candidates, first_report)


def check(program: Program, model: CompiledModel, max_inputs: int = 100_000, screen: int = 300):
    """Behavioural verification, screened first on a few hundred inputs (most wrong candidates fail there)."""
    from metamodels import verification

    first = verification.verify(program, model, max_inputs=min(screen, max_inputs), weights=False)
    if first.verdict == "refuted" or screen >= max_inputs:
        return first
    return verification.verify(program, model, max_inputs=max_inputs, weights=False)


def _candidate(rank: int, c: decoding.Candidate) -> Candidate:
    return Candidate(rank, text.format_program(c.program) if c.program else None, tuple(c.token_strings), c.score)


def _result(c: decoding.Candidate, status: Status, candidates: list[Candidate], report=None) -> Decompiled:
    return Decompiled(
        program=c.program,
        text=text.format_program(c.program) if c.program else None,
        tokens=tuple(c.token_strings),
        score=c.score,
        status=status,
        candidates=tuple(candidates),
        report=report,
    )


def verified_at_k(
    meta: metamodel.MetaModel, rows: list[dict], k: int, *, progress: bool = True, permute_residual: int | None = None
) -> dict:
    """verified@{1,8,k} and the false-verification rate over dataset rows (see :mod:`metamodels.evaluation`)."""
    from metamodels import battery, evaluation, verification
    from metamodels.dataset import store

    first: list[int | None] = []
    false_verified = checked_independently = 0
    for row in tqdm(rows, disable=not progress, desc=f"verify beam {k}", unit="model"):
        model = store.model_from_row(row)
        if permute_residual is not None:
            model = evaluation.permuted(model, permute_residual)
        try:
            found = decoding.beam_search(meta, weight_encoding.encode(model.params, meta.cfg.encoding), k)
        except weight_encoding.EncodingError:
            first.append(None)
            continue
        rank = None
        for i, c in enumerate(found):
            if c.program is not None and check(c.program, model).verdict != "refuted":
                rank = i
                break
        first.append(rank)
        if rank is None:
            continue
        # Independent check against the true program on a different, larger battery.
        s = model.settings
        inputs, exhaustive = verification.verification_inputs(model)
        if not exhaustive:
            inputs = battery.make_battery(s.vocab, s.max_seq_len, per_length=5000, seed=12345)
            truth = tokens_mod.detokenize(row["tokens"])
            checked_independently += 1
            want = evaluation.outputs_of(truth, inputs, s.causal)
            got = evaluation.outputs_of(found[rank].program, inputs, s.causal)  # type: ignore[arg-type]
            false_verified += want is not None and not evaluation.same_outputs(got, want)
    n = max(1, len(first))
    ks = sorted({1, 8, k} & set(range(1, k + 1)))
    verified = sum(r is not None for r in first)
    return {
        "beam": k,
        "n": len(first),
        **{f"verified@{j}": sum(r is not None and r < j for r in first) / n for j in ks},
        "false_verification": false_verified / max(1, verified),
        "independently_rechecked": checked_independently,
        "note": "models whose verification was exhaustive cannot be falsely verified and are not rechecked",
    }
