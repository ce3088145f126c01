"""Decompile every program of Tracr's own test cases (its lib) and the odd ones of ``tests/cases.py``, measured in one run.

    python benchmarks/tracr_programs.py [--beam 32] [--written] [--json out.json]

Each program is written in Tracr's ``rasp``, converted (``program_from_rasp``: it must convert and compile to the same
behaviour), and the model Tracr compiles from the *original* expression is decompiled twice: greedy, and
the default mode (``--beam K``, verified within the time budget; the program read whole
from the weights is checked first, see ``decompilation/wiring.py``). The decompiled program is judged by an oracle independent of verification: Tracr's own
evaluation of the original expression on every input (or 1,000 random ones per length when there are more than
100,000), on the inputs where Tracr's dynamic validation accepts the original. Prints one line per program and the
rates by number of ops. ``--written``: the programs of the ``written`` split instead (``dataset/written.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests.cases holds the programs

from tests import cases  # noqa: E402

from metamodels.dataset import written  # noqa: E402
from metamodels.decompilation import pipeline, verification  # noqa: E402
from metamodels.errors import MetamodelsError  # noqa: E402
from metamodels.evaluation import oracle  # noqa: E402
from metamodels.transformer import compiler  # noqa: E402


def correct(program, sop, model) -> bool:
    """The decompiled program agrees with the original everywhere the original is defined and valid."""
    inputs, _ = verification.verification_inputs(model, seed=7)
    checked = 0
    for xs in inputs:
        want = cases.tracr_truth(sop, xs, model.settings.causal)
        if want is None:
            continue
        if not oracle.same_outputs(oracle.outputs_of(program, [xs], model.settings.causal), [want]):
            return False
        checked += 1
    return checked > 0


def main() -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)  # Tracr warns for each arithmetic error it skips
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beam", type=int, default=32)
    ap.add_argument("--written", action="store_true", help="the written split's programs (dataset/written.py)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    programs = written.written_rasp() if args.written else {**cases.tracr_cases(), **cases.odd_rasp_cases()}
    rows = []
    for name, (sop, vocab, n, causal) in programs.items():
        row: dict = {"name": name}
        try:
            row["n_ops"] = len(compiler.program_from_rasp(sop, vocab, n).ops)
            model = compiler.compile_program(sop, vocab, n, causal=causal)
            row["weights"] = model.n_params
            for mode, kwargs in (("greedy", {"beam": 1, "verify": False}), ("verified", {"beam": args.beam})):
                start = time.perf_counter()
                result = pipeline.decompile(model, **kwargs)
                row[f"{mode}_s"] = round(time.perf_counter() - start, 2)
                row[mode] = result.program is not None and correct(result.program, sop, model)
                row[f"{mode}_status"] = result.status
                row[f"{mode}_wired"] = bool(result.candidates) and result.candidates[result.chosen].wiring
        except MetamodelsError as e:
            row["error"] = str(e)[:120]
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r for r in rows if "error" not in r]
    print(f"\n{len(rows)} programs; {len(rows) - len(ok)} not decompiled (error)")
    for lo, hi in ((1, 1), (2, 3), (4, 6), (7, 9), (10, 99)):
        group = [r for r in ok if lo <= r["n_ops"] <= hi]
        if group:
            g, v = sum(r["greedy"] for r in group), sum(r["verified"] for r in group)
            print(
                f"ops {lo}-{hi}: {len(group)} programs, greedy correct {g}, default mode (beam {args.beam}) correct {v}"
            )
    false = sum(r.get("verified_status") == "verified" and not r["verified"] for r in ok)
    wired = sum(r["verified_wired"] and r["verified"] for r in ok)
    print(f"default mode: {wired} of the correct ones read whole from the weights (decompilation/wiring.py)")
    seconds = sorted(r["verified_s"] for r in ok)
    print(
        f"all: greedy {sum(r['greedy'] for r in ok)}/{len(rows)}, default mode {sum(r['verified'] for r in ok)}/{len(rows)};"
        f" verified but wrong: {false}; default-mode seconds: median {seconds[len(seconds) // 2]}, max {seconds[-1]}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
