"""What results are broken down by (ops, vocabulary kind, causal masking), and verified@k."""

from __future__ import annotations

import json

from tqdm import tqdm

from metamodels.dataset import store
from metamodels.decompilation import pipeline
from metamodels.evaluation import oracle
from metamodels.meta import metamodel, weight_encoding
from metamodels.transformer.compiled import CompiledModel

GROUPS = ("n_ops", "vocab_kind", "causal")


def vocab_kind(vocab: tuple | list) -> str:
    """Which of VOCAB_KINDS a vocabulary is (strings of length 1 are letters)."""
    if all(isinstance(v, str) for v in vocab):
        return "letters" if all(len(v) == 1 for v in vocab) else "words"
    return "floats" if any(isinstance(v, float) for v in vocab) else "integers"


def groups_of(row: store.Row) -> dict:
    """What results are broken down by: number of ops, vocabulary kind, causal or not."""
    return {
        "n_ops": int(row["n_ops"]),
        "vocab_kind": vocab_kind(json.loads(row["vocab"])),
        "causal": bool(row["causal"]),
    }


def verified_at_k(
    meta: metamodel.MetaModel,
    rows: list[store.Row],
    k: int,
    *,
    progress: bool = True,
    models: list[CompiledModel] | None = None,
    repair: int = pipeline.REPAIR,
    wiring: bool = True,
) -> dict:
    """verified@{1,8,k}, with repair, and the false-verification rate over dataset rows, overall and by group.

    A verified program is then compared with the true program: on every input
    when verification was exhaustive (they can still differ where the program is
    undefined), else on a larger random battery with another seed. Groups: number
    of ops, vocabulary kind, causal or not (``by_*``, where there is more than one).
    ``models``: the rows' models as they are to be decompiled (default: as compiled). ``wiring``: the program
    read whole from the weights is the first candidate (models in Tracr's basis); counted at rank 0 and
    reported as ``wired`` (the share verified that way). No time budget: all k candidates are checked.
    """
    results = []
    models = models if models is not None else [store.model_from_row(r) for r in rows]
    for row, model in tqdm(
        zip(rows, models), total=len(rows), disable=not progress, desc=f"verify beam {k}", unit="model"
    ):
        record = {**groups_of(row), "rank": None, "repaired": False, "false": False, "wired": False}
        try:
            result = pipeline.decompile(model, checkpoint=meta, beam=k, verify=True, repair=repair, certificate=False,
                                        budget=None, wiring=wiring)  # fmt: skip
        except weight_encoding.EncodingError:
            results.append(record)
            continue
        if result.status == "verified":
            record["rank"] = result.candidates[result.chosen].rank if not result.repaired else None
            record["repaired"] = result.repaired
            record["wired"] = result.candidates[result.chosen].wiring
            record["false"] = oracle.differs_from_truth(result.program, row, model)  # type: ignore[arg-type]
        results.append(record)
    report = {"beam": k, **verified_rates(results, k)}
    for group in GROUPS:
        values = sorted({str(r[group]) for r in results}, key=lambda v: (len(v), v))
        if len(values) > 1:
            report[f"by_{group}"] = {v: verified_rates([r for r in results if str(r[group]) == v], k) for v in values}
    return report


def verified_rates(results: list[dict], k: int) -> dict:
    """verified@j for j in {1, 8, k}, with repair, and false verifications among ``results``."""
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
        "wired": sum(r["wired"] for r in results) / n,
        "false_verification": false_verified / max(1, verified),
        "false_verified": false_verified,
    }
