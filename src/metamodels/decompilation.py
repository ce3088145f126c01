"""Compiled model -> RASP program: the ``decompile`` orchestrator.

1. encode the weights (:mod:`metamodels.weight_encoding`),
2. decode with the meta-model under the grammar (:mod:`metamodels.decoding`):
   greedy, or a beam of K candidates best-first,
2b. (``readout``, on by default) read each candidate's functions and predicates
   from the weights (:mod:`metamodels.readout`); where the structure fits, that
   variant comes first — it can hold tables the library does not have,
3. optionally verify the candidates in order against the model
   (:mod:`metamodels.verification`) and return the first that verifies (not
   refuted, and defined on at least half the positions: a program undefined
   everywhere agrees with anything), with its weight certificate;
4. if none does (and ``repair``), try the best candidates' neighbours — one
   function or predicate replaced by another from the library, the usual error
   of a meta-model that read the structure right — in order of the meta-model's
   score, and return the first that verifies (marked as repaired); otherwise the
   best candidate marked unverified, with its counterexamples.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from metamodels import decoding, metamodel, readout, weight_encoding
from metamodels import tokens as tokens_mod
from metamodels.compiled import CompiledModel
from metamodels.dataset import store
from metamodels.rasp import functions, text
from metamodels.rasp.program import Program

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default"
DENSE_CHECKPOINT = Path(__file__).parent / "checkpoints" / "dense"
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
    repaired: bool = False  # verified only after replacing one function or predicate of a decoded candidate
    chosen: int = 0  # index in ``candidates`` of the returned program
    checkpoint: str = ""  # the meta-model's checkpoint directory

    def to_json(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("program", "report")}
        out["verification"] = self.report.to_json() if self.report is not None else None  # type: ignore[attr-defined]
        return out


_LOADED: dict[str, metamodel.MetaModel] = {}


def shipped_checkpoint(model: CompiledModel | None = None) -> Path:
    """The shipped checkpoint for ``model``: in Tracr's own residual basis (it has residual labels), the default
    one; in any other basis (dense: rotated, PCA-compressed), the one that reads weights in their canonical basis."""
    dense = model is not None and not model.residual_labels
    return DENSE_CHECKPOINT if dense and DENSE_CHECKPOINT.is_dir() else DEFAULT_CHECKPOINT


def load_metamodel(checkpoint: str | Path | None = None) -> metamodel.MetaModel:
    """The meta-model of a checkpoint directory (default: the shipped default one), loaded once per process."""
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
    repair: int = 200,
    certificate: bool = True,
    read_tables: bool = True,
) -> Decompiled:
    """Decompile a compiled model; see the module docstring. EncodingError if the weights are out of range.

    ``checkpoint`` None: the shipped meta-model for the model's basis (:func:`shipped_checkpoint`).
    ``certificate=False`` skips the recompile-and-compare check of the verified program;
    ``read_tables=False`` keeps the meta-model's library functions as decoded.
    """
    if checkpoint is None:
        checkpoint = shipped_checkpoint(model)
    if isinstance(checkpoint, metamodel.MetaModel):
        return _decompile(model, checkpoint, beam, verify, max_inputs, repair, certificate, read_tables)
    result = _decompile(model, load_metamodel(checkpoint), beam, verify, max_inputs, repair, certificate, read_tables)
    return dataclasses.replace(result, checkpoint=str(checkpoint))


def _decompile(
    model: CompiledModel,
    meta: metamodel.MetaModel,
    beam: int,
    verify: bool,
    max_inputs: int,
    repair: int,
    certificate: bool,
    read_tables: bool,
) -> Decompiled:
    weights = weight_encoding.encode(model.params, meta.cfg.encoding)
    found = decoding.greedy(meta, [weights]) if beam == 1 else decoding.beam_search(meta, weights, beam)
    if read_tables:
        found = with_readout(found, model)
    # Beam rank: decoded candidates before this one (a read-out variant precedes its own).
    candidates = [_candidate(sum(not f.read_out for f in found[:i]), c) for i, c in enumerate(found)]
    if not verify:
        return _result(found[0], "not_checked", candidates)
    from metamodels import verification

    def verified(c: decoding.Candidate, report, listed: list[Candidate], chosen: int, repaired=False) -> Decompiled:
        weights_ = verification.compare_weights(c.program, model) if certificate else None  # type: ignore[arg-type]
        return _result(c, "verified", listed, dataclasses.replace(report, weights=weights_), repaired, chosen)

    first_report = None
    for i, c in enumerate(found):
        if c.program is None:
            continue
        report = check(c.program, model, max_inputs)
        candidates[i] = dataclasses.replace(candidates[i], verdict=report.verdict)
        first_report = first_report or report
        if report.holds():
            return verified(c, report, candidates, i)
    fixed = repair_candidates(meta, weights, found, model, budget=repair, max_inputs=max_inputs)
    if fixed is not None:
        c, report = fixed
        repaired = dataclasses.replace(_candidate(len(candidates), c), verdict=report.verdict)
        return verified(c, report, [*candidates, repaired], len(candidates), repaired=True)
    return _result(found[0], "unverified", candidates, first_report)


def with_readout(found: list[decoding.Candidate], model: CompiledModel) -> list[decoding.Candidate]:
    """Each candidate preceded by its read-out variant, where the structure fits; repeated programs dropped."""
    out: list[decoding.Candidate] = []
    seen: set[str] = set()
    for c in found:
        for variant in (_read_out(c, model), c):
            if variant is None:
                continue
            key = text.format_program(variant.program) if variant.program is not None else None
            if key is None or key not in seen:
                seen.update([key] if key else [])
                out.append(variant)
    return out


def _read_out(c: decoding.Candidate, model: CompiledModel) -> decoding.Candidate | None:
    read = readout.read_tables_or_none(c.program, model) if c.program is not None else None
    return dataclasses.replace(c, program=read, read_out=True) if read is not None else None


def neighbours(program: Program) -> list[Program]:
    """Programs differing from ``program`` in one library function or one predicate."""
    out = []
    for i, op in enumerate(program.ops):
        if op.fn is not None:
            pool = functions.MAP_FUNCTIONS if op.kind == "Map" else functions.SEQUENCE_MAP_FUNCTIONS
            changes = [dataclasses.replace(op, fn=f.name) for f in pool if f.name != op.fn]
        elif op.predicate is not None:
            changes = [dataclasses.replace(op, predicate=p) for p in functions.PREDICATES if p != op.predicate]
        else:
            continue
        out += [dataclasses.replace(program, ops=program.ops[:i] + (new,) + program.ops[i + 1 :]) for new in changes]
    return out


def repair_candidates(
    meta: metamodel.MetaModel,
    weights: weight_encoding.WeightTokens,
    found: list[decoding.Candidate],
    model: CompiledModel,
    *,
    budget: int,
    max_inputs: int = 100_000,
    top: int = 4,
) -> tuple[decoding.Candidate, object] | None:
    """The best-scored single-substitution neighbour of the top candidates that verifies (at most ``budget`` checks)."""
    seen = {c.tokens for c in found}
    pool: dict[tuple[int, ...], Program] = {}
    for c in found[:top]:
        for p in neighbours(c.program) if c.program is not None else []:
            try:
                ids = tuple(tokens_mod.tokenize(p))
            except ValueError:
                continue
            if ids not in seen:
                pool.setdefault(ids, p)
    if not budget or not pool:
        return None
    ids = list(pool)
    scores = decoding.score(meta, weights, ids)
    for s, i in sorted(zip(scores, ids), reverse=True)[:budget]:
        report = check(pool[i], model, max_inputs)
        if report.holds():
            return decoding.Candidate(i, s, pool[i]), report
    return None


def check(program: Program, model: CompiledModel, max_inputs: int = 100_000, screen: int = 300):
    """Behavioural verification, screened first on a few hundred inputs (most wrong candidates fail there)."""
    from metamodels import verification

    first = verification.verify(program, model, max_inputs=min(screen, max_inputs), weights=False)
    if first.verdict == "refuted" or screen >= max_inputs:
        return first
    return verification.verify(program, model, max_inputs=max_inputs, weights=False)


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


def verified_at_k(
    meta: metamodel.MetaModel,
    rows: list[dict],
    k: int,
    *,
    progress: bool = True,
    models: list[CompiledModel] | None = None,
    repair: int = 200,
) -> dict:
    """verified@{1,8,k}, with repair, and the false-verification rate over dataset rows, overall and by group.

    A verified program is then compared with the true program: on every input
    when verification was exhaustive (they can still differ where the program is
    undefined), else on a larger random battery with another seed. Groups: number
    of ops, vocabulary kind, causal or not (``by_*``, where there is more than one).
    ``models``: the rows' models as they are to be decompiled (default: as compiled).
    """
    from metamodels import evaluation

    results = []
    models = models if models is not None else [store.model_from_row(r) for r in rows]
    for row, model in tqdm(
        zip(rows, models), total=len(rows), disable=not progress, desc=f"verify beam {k}", unit="model"
    ):
        record = {**evaluation.groups_of(row), "rank": None, "repaired": False, "false": False}
        try:
            result = decompile(model, checkpoint=meta, beam=k, verify=True, repair=repair, certificate=False)
        except weight_encoding.EncodingError:
            results.append(record)
            continue
        if result.status == "verified":
            record["rank"] = result.candidates[result.chosen].rank if not result.repaired else None
            record["repaired"] = result.repaired
            record["false"] = _differs_from_truth(result.program, row, model)  # type: ignore[arg-type]
        results.append(record)
    report = {"beam": k, **_verified_rates(results, k)}
    for group in ("n_ops", "vocab_kind", "causal"):
        values = sorted({str(r[group]) for r in results}, key=lambda v: (len(v), v))
        if len(values) > 1:
            report[f"by_{group}"] = {v: _verified_rates([r for r in results if str(r[group]) == v], k) for v in values}
    return report


def _verified_rates(results: list[dict], k: int) -> dict:
    n = max(1, len(results))
    verified = sum(r["rank"] is not None or r["repaired"] for r in results)
    false_verified = sum(r["false"] for r in results)
    return {
        "n": len(results),
        **{
            f"verified@{j}": sum(r["rank"] is not None and r["rank"] < j for r in results) / n
            for j in sorted({1, 8, k})
            if j <= k
        },
        f"verified@{k}+repair": verified / n,
        "false_verification": false_verified / max(1, verified),
        "false_verified": false_verified,
    }


def _differs_from_truth(program: Program, row: dict, model: CompiledModel) -> bool:
    from metamodels import battery, evaluation, verification

    s = model.settings
    inputs, exhaustive = verification.verification_inputs(model)
    if not exhaustive:
        inputs = battery.make_battery(s.vocab, s.max_seq_len, per_length=5000, seed=12345)
    want = evaluation.outputs_of(text.parse_program(row["program"]), inputs, s.causal)
    return want is not None and not evaluation.same_outputs(evaluation.outputs_of(program, inputs, s.causal), want)
