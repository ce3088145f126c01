"""Meta-model checkpoint + dataset split -> evaluation report (JSON-able) and plot.

Metrics, overall and by number of ops:

- ``exact``: autoregressive (greedy, grammar-constrained) decoding gives the true
  program's canonical token sequence. The honest headline.
- ``functional``: the decoded program's RASP evaluation equals the stored outputs
  of the true program on the example's input battery (causal models compared
  prefix by prefix).
- ``functional_readout``: the same, after reading the decoded program's
  functions and predicates from the weights (:mod:`metamodels.readout`; the
  decoded program as is where its structure does not fit the model).
- ``teacher_forced_token`` / ``teacher_forced_program``: next-token accuracy
  given the true prefix, per token and per whole program (what paper 000's
  reference code reported; optimistic, shown for comparison).
- ``fields``: teacher-forced accuracy per token kind (ops, encodings, functions,
  variables, predicates, coefficients, structure).
- ``verified@k`` (optional, ``verify_k``): a beam of k candidates, each checked
  against the model (:mod:`metamodels.verification`); the fraction of models with
  a verified candidate among the first k. ``false_verification``: verified
  programs that still differ from the true program on a larger independent
  battery.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from metamodels import (
    batching,
    battery,
    decoding,
    densification,
    forward,
    metamodel,
    readout,
    verification,
    weight_encoding,
)
from metamodels import tokens as tokens_mod
from metamodels.compiled import CompiledModel
from metamodels.dataset import store
from metamodels.dataset.examples import vocab_kind
from metamodels.rasp import canonical, text
from metamodels.rasp.program import Program

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


def outputs_of(program: Program, inputs: Iterable, causal: bool) -> list[list] | None:
    """The program's outputs on each input (None if evaluation fails, e.g. a function outside its domain)."""
    try:
        return [battery.expected_output(program.evaluate, xs, causal) for xs in inputs]
    except verification.EVALUATION_ERRORS:
        return None


def same_outputs(a: list[list] | None, b: list[list]) -> bool:
    return a is not None and all(
        forward.outputs_match([x for x in got if x is not None], [y for x, y in zip(got, want) if x is not None])
        and all((x is None) == (y is None) for x, y in zip(got, want))
        for got, want in zip(a, b)
    )


@torch.no_grad()
def _teacher_forced(model: metamodel.MetaModel, items: list[weight_encoding.WeightTokens], programs: list[list[int]]):
    """Per example: (hits [T-1] bool, fields [T-1] int) over the real target tokens."""
    values, tags, mask = decoding.pad(items)
    t = max(len(p) for p in programs)
    program = torch.zeros(len(programs), t, dtype=torch.long)
    for i, p in enumerate(programs):
        program[i, : len(p)] = torch.tensor(p)
    logits = model(values, tags, mask, program[:, :-1])
    hits = (logits.argmax(-1) == program[:, 1:]).numpy()
    return [(hits[i, : len(p) - 1], _FIELD_OF_ID[np.asarray(p[1:])]) for i, p in enumerate(programs)]


def evaluate(
    model: metamodel.MetaModel,
    data: str | Path,
    split: str,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    verify_k: int = 0,
    verify_limit: int = 100,
    permute_residual: int | None = None,
    dense: batching.Dense | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate on (the first ``limit`` examples of) one split; returns the report.

    ``permute_residual`` (a seed): evaluate each model in a random permutation of
    its residual basis (exactly output-preserving; what compiling the same program
    with other variable names does to Tracr's residual order). ``dense``: evaluate
    each model densified (PCA-compressed to a fidelity bar on held-out inputs,
    rotated, units permuted; see :class:`batching.Dense`); the report gives the
    compressed widths and fidelities.
    """
    if split == "lib":  # hand-written programs, compiled here (datasets exclude them from every split)
        from metamodels.dataset import lib

        rows = lib.lib_rows()[:limit]
    elif split == "written":  # programs written against Tracr's rasp in other people's style (dataset/written.py)
        from metamodels.dataset import written

        rows = written.written_rows()[:limit]
    else:
        rows = list(itertools.islice(store.iter_rows(Path(data), split), limit))
    if not rows:
        raise ValueError(f"{data}: split {split!r} has no examples")
    per_example, densified, verify_models = [], [], []  # models are shown chunk by chunk, not all held at once
    bar = tqdm(total=len(rows), disable=not progress, desc=f"evaluate {split}", unit="model")
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        models = [shown(store.model_from_row(r), r["id"], permute_residual, dense) for r in chunk]
        per_example += _evaluate_chunk(model, chunk, models)
        densified += [m.densified for m in models if dense is not None]
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
        from metamodels import decompilation

        report["verification"] = decompilation.verified_at_k(
            model, rows[:verify_limit], verify_k, progress=progress, models=verify_models
        )
    return report


def shown(
    model: CompiledModel, example_id: str, permute_residual: int | None, dense: batching.Dense | None
) -> CompiledModel:
    """The model as the evaluation shows it to the meta-model (see :func:`evaluate`)."""
    if permute_residual is not None:
        model = permuted(model, permute_residual)
    return batching.densified(model, dense, example_id) if dense is not None else model


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


def permuted(model: CompiledModel, seed: int) -> CompiledModel:
    """The same model with its variables' residual blocks in a random order (exactly output-preserving).

    This is what compiling the program with other variable names does: Tracr
    sorts residual directions by label, so whole variables move while each
    variable's values stay in order. Blocks come from the residual labels; a
    model without labels gets every direction permuted.
    """
    rng = np.random.default_rng([seed, model.d_model, model.n_params])
    labels = model.residual_labels
    if labels:
        blocks: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            blocks.setdefault(label.split(":")[0], []).append(i)
        groups = list(blocks.values())
        order = np.concatenate([groups[g] for g in rng.permutation(len(groups))])
    else:
        order = rng.permutation(model.d_model)
    return densification.change_basis(model, np.eye(model.d_model)[:, order])


def groups_of(row: dict) -> dict:
    """What results are broken down by: number of ops, vocabulary kind, causal or not."""
    return {
        "n_ops": int(row["n_ops"]),
        "vocab_kind": vocab_kind(json.loads(row["vocab"])),
        "causal": bool(row["causal"]),
    }


def _evaluate_chunk(model: metamodel.MetaModel, rows: list[dict], models: list[CompiledModel]) -> list[dict]:
    out, items, programs, kept = [], [], [], []
    for row, model_ in zip(rows, models):
        record = {"id": row["id"], **groups_of(row), "truth": row["program"]}
        try:
            items.append(weight_encoding.encode(model_.params, model.cfg.encoding))
        except weight_encoding.EncodingError as e:
            record.update(supported=False, reason=str(e), exact=False, functional=False, functional_readout=False)
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
            _teacher_forced(model, [items[i] for i in tokenized], [programs[i] for i in tokenized])
            if tokenized
            else [],
        )
    )
    decoded = decoding.greedy(model, items)
    for i, ((record, row, model_), candidate, truth) in enumerate(zip(kept, decoded, programs)):
        hits, fields = teacher.get(i, (np.zeros(0, bool), np.zeros(0, int)))
        record["tf_hits"], record["tf_fields"], record["tokenized"] = hits.tolist(), fields.tolist(), truth is not None
        record["decoded_tokens"] = candidate.token_strings
        if candidate.program is None:
            record.update(exact=False, functional=False, functional_readout=False, decoded=None)
            continue
        record["decoded"] = text.format_program(candidate.program)
        read = readout.read_tables_or_none(candidate.program, model_)
        record["read_out"] = read is not None
        read = read or candidate.program
        if truth is not None:
            record["exact"] = tokens_mod.tokenize(candidate.program) == truth
        else:
            record["exact"] = _canonical_text(candidate.program) == _canonical_text(text.parse_program(row["program"]))
        inputs = [tuple(x) for x in json.loads(row["battery_inputs"])]
        want = json.loads(row["battery_outputs"])
        # exact tokens prove a library program; a table program's tokens are its structure only (tables unread)
        record["functional"] = (record["exact"] and truth is not None) or same_outputs(
            outputs_of(candidate.program, inputs, row["causal"]), want
        )
        record["functional_readout"] = same_outputs(outputs_of(read, inputs, row["causal"]), want)
    return out


def _canonical_text(program: Program) -> str:
    return text.format_program(canonical.canonicalize(program))


def _rates(records: list[dict]) -> dict:
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
        "fields": {f: float(np.mean(v)) for f, v in sorted(fields.items())},
    }


def summarize(records: list[dict]) -> dict:
    """Rates overall, by number of ops, and by vocabulary kind and causal masking where those vary."""
    out: dict = {"overall": _rates(records)}
    for group in ("n_ops", "vocab_kind", "causal"):
        by = defaultdict(list)
        for r in records:
            by[r[group]].append(r)
        if group == "n_ops" or len(by) > 1:
            out[f"by_{group}"] = {k: _rates(v) for k, v in sorted(by.items(), key=lambda kv: str(kv[0]).zfill(3))}
    out["examples"] = [{k: v for k, v in r.items() if k not in ("tf_hits", "tf_fields")} for r in records]
    return out


def plot(report: dict, png: str | Path) -> None:
    """Accuracy against number of ops (paper 000, Figure 3 right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted(int(k) for k in report["by_n_ops"])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, label in [
        ("teacher_forced_token", "token accuracy (teacher-forced)"),
        ("functional_readout", "functional accuracy (greedy + readout)"),
        ("functional", "functional accuracy (greedy)"),
        ("exact", "exact program (greedy)"),
    ]:
        ax.plot(ops, [report["by_n_ops"][k][key] for k in ops], marker="o", label=label)
    ax.set(
        xlabel="number of ops",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title=f"{report['split']} split, n={report['n_examples']}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def format_table(report: dict) -> str:
    """The report's rates as plain-text tables: by op count (and vocabulary kind, causal) plus the total."""
    lines = [f"{report['split']} split of {report['data']}"]
    if report.get("densified"):
        d = report["densified"]
        lines.append(
            f"densified (fidelity bar {report['dense']['fidelity']}): width {d['width_ratio_mean']:.2f} of the "
            f"original on average, {d['compressed']:.0%} compressed, held-out fidelity mean {d['fidelity_mean']:.3f}, "
            f"min {d['fidelity_min']:.3f}"
        )
    for group, title in (("n_ops", "ops"), ("vocab_kind", "vocab"), ("causal", "causal")):
        if f"by_{group}" not in report:
            continue
        lines.append(f"{title:>8} {'n':>5} {'exact':>7} {'funct.':>7} {'+readout':>8} {'tf tok':>7} {'tf prog':>7}")
        for k, r in [*report[f"by_{group}"].items(), ("all", report["overall"])]:
            lines.append(
                f"{k!s:>8} {r['n']:>5} {r['exact']:>7.3f} {r['functional']:>7.3f} {r['functional_readout']:>8.3f} "
                f"{r['teacher_forced_token']:>7.3f} {r['teacher_forced_program']:>7.3f}"
            )
    lines.append(
        "fields (teacher-forced): " + ", ".join(f"{f} {a:.3f}" for f, a in report["overall"]["fields"].items())
    )
    if report["overall"]["unsupported"]:
        lines.append(f"unsupported by the encoder (counted wrong): {report['overall']['unsupported']}")
    if "verification" in report:
        v = report["verification"]
        lines.append(f"verification (beam {v['beam']}): {_verified_line(v)}")
        for group in ("n_ops", "vocab_kind", "causal"):
            for k, r in v.get(f"by_{group}", {}).items():
                lines.append(f"  {group} {k}: {_verified_line(r)}")
    return "\n".join(lines)


def _verified_line(v: dict) -> str:
    rates = ", ".join(f"{k} {v[k]:.3f}" for k in v if k.startswith("verified@"))
    return f"{rates}, false verification {v['false_verification']:.3f} (n={v['n']})"
