"""Label-free reading of dense models: the lib and written programs, compiled, made dense, read back.

For each program: compile it, then rotate it (``--mode rotate``: exact) or densify it (``--mode dense``: PCA to
fidelity 0.99 on held-out inputs, rotated; seeded). Two readers, neither told the program:

- ``traced``: the whole program traced from the activations (``decompilation.tracing``);
- ``probed``: the true structure with every table wrong, tables probed (``decompilation.probing``).

Each read program is judged two ways: ``verified`` (our verification against the dense model, which allows a
compressed model its own recorded error rate) and ``right`` (an independent check: the source program's own RASP
evaluation on a battery of other inputs; ``exact`` = equal everywhere there, ``at fidelity`` = differs on no more
inputs than verification allows the model). ``false`` counts verified programs that are not right at fidelity.

    python benchmarks/dense_programs.py --mode dense
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from metamodels.dataset import lib, written
from metamodels.decompilation import probing, readout, tracing, verification
from metamodels.evaluation import oracle
from metamodels.transformer import battery, compiler, densification

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests import cases  # noqa: E402


def _judge(read, source, model, vocab, n, causal, seconds: float) -> dict:
    if read is None:
        return {"read": False, "verified": False, "exact": False, "fidelity": False}
    inputs = battery.make_battery(vocab, n, per_length=60, seed=7)
    got, want = oracle.outputs_of(read, inputs, causal), oracle.outputs_of(source, inputs, causal)
    exact = oracle.same_outputs(got, want)
    if exact or got is None or want is None or verification.compressed_fidelity(model) is None:
        at_fidelity = exact
    else:
        wrong = [len(xs) for xs, g, w in zip(inputs, got, want) if not oracle.same_outputs([g], [w])]
        at_fidelity = not verification.beyond_fidelity(model, map(len, inputs), wrong)
    held = verification.verify(read, model, weights=False, seconds=seconds).holds()
    return {"read": True, "verified": held, "exact": exact, "fidelity": at_fidelity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("rotate", "dense"), default="dense")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0, help="verification budget per program")
    args = parser.parse_args()
    programs = {f"lib/{k}": (p, lib.LIB_VOCAB, lib.LIB_MAX_SEQ_LEN, False) for k, p in lib.lib_programs().items()}
    programs.update({f"written/{k}": v for k, v in written.written_programs().items()})
    rows, widths, times = [], [], []
    for name, (source, vocab, n, causal) in programs.items():
        model = compiler.compile_program(source, vocab, n, causal=causal)
        if args.mode == "rotate":
            dense = densification.rotate(model, args.seed)
        else:
            dense = densification.densify(model, seed=args.seed).model
        widths.append(dense.d_model / model.d_model)
        start = time.perf_counter()
        traced = tracing.read_program_or_none(dense)
        times.append(time.perf_counter() - start)
        try:
            probed = probing.read_tables(cases.scrambled(source), dense)
        except readout.ReadoutError:
            probed = None
        row = {"name": name, "ops": source.n_ops}
        for reader, read in (("traced", traced), ("probed", probed)):
            row.update({f"{reader}_{k}": v for k, v in _judge(read, source, dense, vocab, n, causal, args.seconds).items()})
        rows.append(row)
        print(name, {k: v for k, v in row.items() if k.startswith("traced")}, flush=True)
    total = len(rows)
    print(f"\nmode {args.mode}, seed {args.seed}: {total} programs, mean width {statistics.mean(widths):.2f} of the "
          f"original; tracing median {statistics.median(times):.2f} s, max {max(times):.1f} s")  # fmt: skip
    print("reader   read  verified  right(exact)  right(at fidelity)  false verification")
    for reader in ("traced", "probed"):
        count = {k: sum(r[f"{reader}_{k}"] for r in rows) for k in ("read", "verified", "exact", "fidelity")}
        false = sum(r[f"{reader}_verified"] and not r[f"{reader}_fidelity"] for r in rows)
        print(f"{reader:8s} {count['read']:4d}  {count['verified']:8d}  {count['exact']:12d}  {count['fidelity']:18d}"
              f"  {false:18d}   (of {total})")  # fmt: skip
    for lo, hi in ((1, 1), (2, 3), (4, 6), (7, 9), (10, 99)):
        group = [r for r in rows if lo <= r["ops"] <= hi]
        if group:
            ok = sum(r["traced_verified"] and r["traced_fidelity"] for r in group)
            print(f"  ops {lo}-{hi}: traced, verified and right {ok}/{len(group)}")


if __name__ == "__main__":
    main()
