"""Meta-model checkpoint + dataset split -> evaluation report (JSON-able) and plot.

Metrics, overall and by number of ops:

- ``exact``: autoregressive (greedy, grammar-constrained) decoding gives the true
  program's canonical token sequence. The honest headline. Unless ``--no-wiring``,
  greedy is guided by the data flow read from the weights where the weights show
  it (:mod:`metamodels.decompilation.guide`; ``guided``: how often); with it, the
  meta-model alone.
- ``functional``: the decoded program's RASP evaluation equals the stored outputs
  of the true program on the example's input battery (causal models compared
  prefix by prefix).
- ``functional_readout``: the same, after reading the decoded program's
  functions and predicates from the weights (:mod:`metamodels.decompilation.readout` by residual labels, else
  probed from activations by :mod:`metamodels.decompilation.probing`; the
  decoded program as is where its structure does not fit the model).
- ``teacher_forced_token`` / ``teacher_forced_program``: next-token accuracy
  given the true prefix, per token and per whole program (what paper 000's
  reference code reported; optimistic, shown for comparison).
- ``fields``: teacher-forced accuracy per token kind (ops, encodings, functions,
  variables, predicates, coefficients, structure).
- ``verified@k`` (optional, ``verify_k``): a beam of k candidates, each checked
  against the model (:mod:`metamodels.decompilation.verification`); the fraction of models with
  a verified candidate among the first k. ``false_verification``: verified
  programs that still differ from the true program on a larger independent
  battery.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import torch
from tqdm import tqdm

from metamodels import options
from metamodels.dataset import lib, store, written
from metamodels.decompilation import guide, probing
from metamodels.errors import MetamodelsError
from metamodels.evaluation import metrics, oracle
from metamodels.meta import batching, decoding, metamodel, weight_encoding
from metamodels.rasp import canonical, text
from metamodels.rasp import tokens as tokens_mod
from metamodels.rasp.program import Program
from metamodels.transformer import densification
from metamodels.transformer.compiled import CompiledModel

FIELDS = ("ops", "encodings", "functions", "variables", "predicates", "coefficients", "structure")


def field_of(token: str) -> str:
    if token in tokens_mod.ATTN_OPS or token in tokens_mod.MLP_OPS:
        return "ops"
    if token in tokens_mod.ENCODINGS:
        return "encodings"
    if token.startswith("fn:"):
        return "functions"
    if token.startswith("sop_") or token in ("tokens", "indices"):
        return "variables"
    if token.startswith("c:"):
        return "coefficients"
    if token in tokens_mod.SPECIAL:
        return "structure"
    return "predicates"


_FIELD_OF_ID = np.array([FIELDS.index(field_of(t)) for t in tokens_mod.VOCAB.tokens])


@torch.no_grad()
def _teacher_forced(model: metamodel.MetaModel, items: list[weight_encoding.WeightTokens], programs: list[list[int]]):
    """Per example: (hits [T-1] bool, fields [T-1] int) over the real target tokens."""
    _, hits_, _ = batching.teacher_forced(model, *batching.pad_weights(items), batching.pad_programs(programs))
    hits = hits_.cpu().numpy()
    return [(hits[i, : len(p) - 1], _FIELD_OF_ID[np.asarray(p[1:])]) for i, p in enumerate(programs)]


class Record(TypedDict, total=False):
    """One evaluated example: its groups (ops, vocabulary kind, causal), the truth, and every metric's verdict.

    ``supported`` False (with ``reason``) when the encoder cannot read the model: then every metric is False.
    ``tf_hits`` / ``tf_fields``: teacher-forced hit and field of each target token (programs with tokens only).
    """

    id: str
    n_ops: int
    vocab_kind: str
    causal: bool
    truth: str
    supported: bool
    reason: str
    tokenized: bool
    tf_hits: list[bool]
    tf_fields: list[int]
    decoded_tokens: list[str]
    decoded: str | None
    read_out: bool
    guided: bool  # greedy guided by the data flow read from the weights (decompilation.guide)
    exact: bool
    functional: bool
    functional_readout: bool


Split = Literal["test", "val", "train", "lib", "written"]
DENSE_HELDOUT = 20_000  # held-out inputs on which ``--dense`` models meet their fidelity bar


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What to evaluate a checkpoint on, and how the models are shown to it (see :func:`evaluate`)."""

    split: Split = options.option(
        "test", help="split; lib: Tracr's lib programs, written: open-vocabulary programs written in Tracr's rasp "
        "(dataset/written.py); both are compiled here"
    )  # fmt: skip
    limit: int | None = options.option(None, help="evaluate only the first N examples")
    verify_k: int = options.option(0, help="also measure verified@k with a beam of this width")
    verify_limit: int = options.option(100, help="models used for verified@k")
    permute_residual: int | None = options.option(
        None, metavar="SEED",
        help="first shuffle the order of each model's variables in its residual stream (what other variable names do)",
    )  # fmt: skip
    dense: float | None = options.option(
        None, metavar="FIDELITY",
        help="first make each model dense: PCA-compressed to the smallest width keeping this fidelity on held-out "
        "inputs, randomly rotated, hidden units and heads permuted (seeded by --dense-seed and the example)",
    )  # fmt: skip
    dense_seed: int = options.option(1, help="seed of --dense")
    wiring: bool = options.option(True, flag="--no-wiring", help="the meta-model alone: greedy not guided by the "
                                  "data flow read from the weights, and verified@k of its candidates only, without "
                                  "the program read whole from the weights first")  # fmt: skip
    dense_heldout: int = DENSE_HELDOUT
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("limit", "verify_limit", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise MetamodelsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.verify_k < 0:
            raise MetamodelsError(f"verify_k must be at least 0, got {self.verify_k}")

    @property
    def densify(self) -> densification.Dense | None:
        return densification.Dense(self.dense, self.dense_seed, self.dense_heldout) if self.dense is not None else None


def evaluate(
    model: metamodel.MetaModel, data: str | Path | None, config: EvaluateConfig, *, progress: bool = True
) -> dict:
    """Evaluate on (the first ``limit`` examples of) one split; returns the report.

    ``permute_residual`` (a seed): evaluate each model in a random permutation of
    its residual basis (exactly output-preserving; what compiling the same program
    with other variable names does to Tracr's residual order). ``dense``: evaluate
    each model densified (PCA-compressed to a fidelity bar on held-out inputs,
    rotated, units permuted; see :class:`densification.Dense`); the report gives the
    compressed widths and fidelities.
    """
    split, limit, verify_k, verify_limit = config.split, config.limit, config.verify_k, config.verify_limit
    permute_residual, dense, batch_size = config.permute_residual, config.densify, config.batch_size
    if data is None and split not in ("lib", "written"):
        raise MetamodelsError("--data is required (except for --split lib and --split written)")
    if split == "lib":  # hand-written programs, compiled here (datasets exclude them from every split)
        rows = lib.lib_rows()[:limit]
    elif split == "written":  # programs written against Tracr's rasp in other people's style (dataset/written.py)
        rows = written.written_rows()[:limit]
    else:
        rows = list(itertools.islice(store.iter_rows(Path(data or "."), split), limit))
    if not rows:
        raise MetamodelsError(f"{data}: split {split!r} has no examples")
    per_example: list[Record] = []  # models are shown chunk by chunk, not all held at once
    densified: list[dict] = []
    verify_models: list[CompiledModel] = []
    bar = tqdm(total=len(rows), disable=not progress, desc=f"evaluate {split}", unit="model")
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        models = [shown(store.model_from_row(r), r["id"], permute_residual, dense) for r in chunk]
        per_example += _evaluate_chunk(model, chunk, models, config.wiring)
        densified += [m.densified for m in models if dense is not None and m.densified is not None]
        if verify_k and len(verify_models) < verify_limit:  # verified@k reuses the first models as shown
            verify_models += models[: verify_limit - len(verify_models)]
        bar.update(len(chunk))
    bar.close()
    report = summarize(per_example)
    report.update(
        split=split,
        data={"lib": "lib.py", "written": "written.py"}.get(split, str(data)),
        n_examples=len(rows),
        permute_residual=permute_residual,
        dense=dataclasses.asdict(dense) if dense is not None else None,
    )
    if dense is not None:
        report["densified"] = _densified_summary(densified)
    if verify_k:
        report["verification"] = metrics.verified_at_k(
            model, rows[:verify_limit], verify_k, progress=progress, models=verify_models, wiring=config.wiring
        )
    return report


def shown(
    model: CompiledModel, example_id: str, permute_residual: int | None, dense: densification.Dense | None
) -> CompiledModel:
    """The model as the evaluation shows it to the meta-model (see :func:`evaluate`)."""
    if permute_residual is not None:
        model = densification.permuted(model, permute_residual)
    return densification.densified(model, dense, example_id) if dense is not None else model


def _densified_summary(infos: list[dict]) -> dict:
    ratio = np.array([i["d_model"] / i["original_d_model"] for i in infos])
    fid = np.array([i["fidelity"] for i in infos])
    return {
        "n": len(infos),
        "width_ratio_mean": float(ratio.mean()),
        "width_ratio_median": float(np.median(ratio)),
        "compressed": float((ratio < 1).mean()),
        "fidelity_mean": float(fid.mean()),
        "fidelity_min": float(fid.min()),
    }


def _evaluate_chunk(
    model: metamodel.MetaModel, rows: list[store.Row], models: list[CompiledModel], wiring: bool
) -> list[Record]:
    out, items, programs, kept = [], [], [], []
    for row, model_ in zip(rows, models):
        record: Record = {"id": row["id"], **metrics.groups_of(row), "truth": row["program"]}  # type: ignore[typeddict-item]
        try:
            items.append(weight_encoding.encode(model_.params, model.cfg.encoding))
        except weight_encoding.EncodingError as e:
            record.update(
                {"supported": False, "reason": str(e), "exact": False, "functional": False, "functional_readout": False}
            )
            out.append(record)
            continue
        record["supported"] = True
        programs.append(list(row["tokens"]) if row["tokens"] is not None else None)
        kept.append((record, row, model_))
        out.append(record)
    if not kept:
        return out
    # Programs with value tables have no tokens: no teacher forcing; "exact" compares canonical texts.
    tokenized = [i for i, p in enumerate(programs) if p is not None]
    teacher = dict(
        zip(
            tokenized,
            _teacher_forced(model, [items[i] for i in tokenized], [programs[i] for i in tokenized])  # type: ignore[misc]
            if tokenized
            else [],
        )
    )
    guides = [guide.guide_or_none(m) if wiring else None for _, _, m in kept]
    decoded = decoding.greedy(model, items, guides)
    for i, ((record, row, model_), candidate, truth) in enumerate(zip(kept, decoded, programs)):
        record["guided"] = guides[i] is not None
        hits, fields = teacher.get(i, (np.zeros(0, bool), np.zeros(0, int)))
        record["tf_hits"], record["tf_fields"], record["tokenized"] = hits.tolist(), fields.tolist(), truth is not None
        record["decoded_tokens"] = candidate.token_strings
        if candidate.program is None:
            record.update({"exact": False, "functional": False, "functional_readout": False, "decoded": None})
            continue
        record["decoded"] = text.format_program(candidate.program)
        read = probing.read_any_or_none(candidate.program, model_)
        record["read_out"] = read is not None
        read = read or candidate.program
        if truth is not None:
            record["exact"] = tokens_mod.tokenize(candidate.program) == truth
        else:
            record["exact"] = _canonical_text(candidate.program) == _canonical_text(text.parse_program(row["program"]))
        inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
        want = json.loads(row["battery_outputs"])
        # exact tokens prove a library program; a table program's tokens are its structure only (tables unread)
        record["functional"] = (record["exact"] and truth is not None) or oracle.same_outputs(
            oracle.outputs_of(candidate.program, inputs, row["causal"]), want
        )
        record["functional_readout"] = oracle.same_outputs(oracle.outputs_of(read, inputs, row["causal"]), want)
    return out


def _canonical_text(program: Program) -> str:
    return text.format_program(canonical.canonicalize(program))


def _rates(records: list[Record]) -> dict:
    supported = [r for r in records if r["supported"] and r.get("tokenized", True)]
    hits = [h for r in supported for h in r["tf_hits"]]
    fields: dict[str, list] = defaultdict(list)
    for r in supported:
        for h, f in zip(r["tf_hits"], r["tf_fields"]):
            fields[FIELDS[f]].append(h)
    n = max(1, len(records))
    return {
        "n": len(records),
        "exact": sum(r["exact"] for r in records) / n,
        "functional": sum(r["functional"] for r in records) / n,
        "functional_readout": sum(r["functional_readout"] for r in records) / n,
        "teacher_forced_token": float(np.mean(hits)) if hits else 0.0,
        "teacher_forced_program": sum(all(r["tf_hits"]) for r in supported) / n,
        "unsupported": sum(not r["supported"] for r in records),
        "guided": sum(r.get("guided", False) for r in records) / n,
        "fields": {f: float(np.mean(v)) for f, v in sorted(fields.items())},
    }


def summarize(records: list[Record]) -> dict:
    """Rates overall, by number of ops, and by vocabulary kind and causal masking where those vary."""
    out: dict = {"overall": _rates(records)}
    for group in metrics.GROUPS:
        by = defaultdict(list)
        for r in records:
            by[r[group]].append(r)  # type: ignore[literal-required]
        if group == "n_ops" or len(by) > 1:
            out[f"by_{group}"] = {k: _rates(v) for k, v in sorted(by.items(), key=lambda kv: str(kv[0]).zfill(3))}
    out["examples"] = [{k: v for k, v in r.items() if k not in ("tf_hits", "tf_fields")} for r in records]
    return out
