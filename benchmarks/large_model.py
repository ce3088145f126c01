"""Decompile a large compiled model: 18 ops over 36 token values at length 20, 8 layers, d_model 503, 17.9 M
parameters, 16,135 weight tokens (twice what the meta-model reads), measured in one run.

    python benchmarks/large_model.py [--budget 20] [--out /tmp/large.safetensors]

Prints: compile time and size, the time to read the program whole from the weights (``decompilation/wiring.py``),
whether it equals the source program on a battery of inputs (an oracle apart from verification), the default
``decompile`` (verification within ``--budget`` seconds), and, with ``--full``, an unbounded verification.
"""

from __future__ import annotations

import argparse
import logging
import time

from tracr.rasp import rasp

from metamodels.decompilation import pipeline, wiring
from metamodels.evaluation import oracle
from metamodels.meta import weight_encoding
from metamodels.transformer import battery, compiler, modelfile

VOCAB, LENGTH = tuple(range(36)), 20


def source() -> rasp.SOp:
    tokens, indices = rasp.tokens, rasp.indices
    length = rasp.SelectorWidth(rasp.Select(tokens, tokens, rasp.Comparison.TRUE)).named("length")
    a = rasp.SequenceMap(lambda t, i: (t + i) % 36, tokens, indices).named("a")
    b = rasp.SequenceMap(lambda t, i: (t * (i + 1)) % 36, tokens, indices).named("b")
    c = rasp.SequenceMap(lambda u, v: (u + 2 * v) % 36, a, b).named("c")
    back = rasp.SequenceMap(lambda i, n: (i - 1) % n if n else 0, indices, length).named("back")
    prev = rasp.Aggregate(rasp.Select(indices, back, rasp.Comparison.EQ), c).named("prev_c")
    d = rasp.SequenceMap(lambda u, v: (u - v) % 36, c, prev).named("d")
    rank = rasp.SelectorWidth(rasp.Select(d, d, rasp.Comparison.LT)).named("rank_d")
    e = rasp.SequenceMap(lambda r, n: (r * 7 + n) % 36, rank, length).named("e")
    f = rasp.SequenceMap(lambda u, v: (u * v) % 36, e, tokens).named("f")
    g = rasp.SequenceMap(lambda u, v: (u + v) % 36, f, d).named("g")
    ahead = rasp.SequenceMap(lambda i, n: (i + 1) % n if n else 0, indices, length).named("ahead")
    nxt = rasp.Aggregate(rasp.Select(indices, ahead, rasp.Comparison.EQ), g).named("next_g")
    return rasp.SequenceMap(lambda u, v: (u + 3 * v) % 36, g, nxt).named("h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=pipeline.DecompileConfig.budget)
    parser.add_argument("--full", action="store_true", help="also verify without a time budget (minutes)")
    parser.add_argument("--out", default="/tmp/large.safetensors")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    t = time.perf_counter()
    program = compiler.program_from_rasp(source(), VOCAB, LENGTH)
    model = compiler.compile_program(program, VOCAB, LENGTH)
    modelfile.save(model, args.out)
    try:
        weight_encoding.encode(model.params, weight_encoding.for_decompiling(weight_encoding.EncodingConfig("rows")))
        tokens = "within the meta-model's reach"
    except weight_encoding.EncodingError as e:
        tokens = str(e)
    print(f"compiled in {time.perf_counter() - t:.1f} s: {len(program.ops)} ops, {model.n_layers} layers, d_model "
          f"{model.d_model}, {model.n_params:,} parameters; {tokens}")  # fmt: skip
    t = time.perf_counter()
    read = wiring.read_program(modelfile.load(args.out))
    inputs = battery.make_battery(model.settings.vocab, LENGTH, per_length=4, seed=1)
    same = oracle.same_outputs(oracle.outputs_of(read, inputs, False), oracle.outputs_of(program, inputs, False))
    print(f"read whole from the weights in {time.perf_counter() - t:.1f} s; equals the source on {len(inputs)} "
          f"battery inputs: {same}")  # fmt: skip
    t = time.perf_counter()
    result = pipeline.decompile(model, budget=args.budget)
    print(f"decompile (budget {args.budget} s): {result.status}{' (out of time)' if result.out_of_time else ''} in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    if args.full:
        t = time.perf_counter()
        report = pipeline.check(read, model, pipeline.DecompileConfig.max_inputs)
        print(f"unbounded verification: {report.verdict} in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
