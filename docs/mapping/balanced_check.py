"""The stop-38 measurements behind the balanced agreement bar (`decoding.BALANCED_BAR`), one run each:

    python docs/mapping/balanced_check.py truth zoos/rasp test     # true programs of the first 60 test models
    python docs/mapping/balanced_check.py truth zoos/wide          # the same, first 60 programs of the wide zoo
    python docs/mapping/balanced_check.py recheck zoos/wide docs/mapping/wide-rasp-79-rate.json docs/mapping/wide-rasp-79.json

`truth`: the share of true programs (view 0 of each program) whose agreement with their model on 256 fresh probes
(seed 1, as `decompile` measures) reaches the rate bar, the balanced bar, and how many models write one value on
>= 90% of positions. `recheck`: the wide benchmark's decompiled programs (recorded when `agrees` was the rate alone)
re-judged by `decompile.agreement` with both bars; writes the records with `agrees_balanced` and `balanced` added.
"""

from __future__ import annotations

import collections
import json
import sys

from metamodels.mapping import data, decoding, decompile
from metamodels.transformer import trained
from metamodels.zoo import build, stats


def truth(zoo: str, split: str | None) -> None:
    rows = [r for r in build.read_zoo(zoo, split=split) if r["view"] == 0][:60]
    rate = balanced = skewed = 0
    for r in rows:
        model = stats.model_from_row(r)
        probed = decoding.probe(model, decoding.PROBES, seed=1)
        t = decoding.tally(data.parse_program(r["language"], r["program"]), model, probed)
        counts = collections.Counter(trained.value_key(m) for out in probed.outputs for m in out)
        rate += t.rate >= decoding.BAR
        balanced += t.balanced >= decoding.BALANCED_BAR
        skewed += max(counts.values()) >= 0.9 * sum(counts.values())
    print(f"{zoo}: {len(rows)} true programs; rate >= {decoding.BAR}: {rate}; balanced >= {decoding.BALANCED_BAR}: "
          f"{balanced}; models writing one value on >= 90% of positions: {skewed}")  # fmt: skip


def recheck(zoo: str, records: str, out: str) -> None:
    recs = json.loads(open(records).read())
    rows = {r["id"]: r for r in build.read_zoo(zoo)}
    tally: collections.Counter = collections.Counter()
    for x in recs:
        x["agrees_balanced"] = False
        if x["decompiled"] is not None:
            program = data.parse_program("rasp", x["decompiled"])
            a = decompile.agreement(program, stats.model_from_row(rows[x["id"]]), seed=1)
            x["agrees_balanced"], x["balanced"] = a.agrees, round(a.balanced, 4)
        tally[(x["functional"], x["agrees"], x["agrees_balanced"])] += 1
    print("(functional, agrees by the rate, agrees by both bars):", dict(tally))
    n = len(recs)
    print(f"agrees {sum(x['agrees_balanced'] for x in recs) / n:.3f}, agreeing yet wrong "
          f"{sum(x['agrees_balanced'] and not x['functional'] for x in recs) / n:.3f}")  # fmt: skip
    open(out, "w").write(json.dumps(recs, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["truth"]:
        truth(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif sys.argv[1:2] == ["recheck"] and len(sys.argv) == 5:
        recheck(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
