"""False verification on adversarial candidates: single-token corruptions of true programs, checked against the
true programs' models. Goal: 0 corruptions that verify while computing something else.

    python benchmarks/false_verification.py [--sampled 40] [--per-program 24] [--seed 0] [--inputs 20000]

True programs: the ``written`` split (16 programs written in Tracr's rasp, open vocabularies), the ``lib``
split, paper 000's sort, and ``--sampled`` closed-library programs (seed 11, 2-9 ops). Candidates per program:
every one-token change of a predicate (to each other comparison), of a library function, of a Select's keys
and queries (swapped), and of one argument (another defined variable of the same encoding) — shuffled with
``--seed`` and cut to ``--per-program``. Each candidate is verified against the true model (behaviour only);
one that verifies is then compared with the truth on every verification input by RASP evaluation (the
oracle): a verified candidate whose outputs differ anywhere the truth is defined is a false verification.
Prints counts per source and the false-verification rate.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
from pathlib import Path

import numpy as np

import metamodels
from metamodels.dataset import lib, sampling, written
from metamodels.decompilation import pipeline, verification
from metamodels.evaluation import oracle
from metamodels.rasp import text
from metamodels.rasp.program import INPUTS, Program
from metamodels.transformer import compiler
from metamodels.transformer.compiled import CompiledModel


def corruptions(program: Program) -> list[Program]:
    """Every single-token change of a predicate, a library function, a Select's argument order, or an argument."""
    out = list(pipeline.neighbours(program))  # functions and predicates (tables are not library functions)
    for i, op in enumerate(program.ops):
        changes = []
        if op.kind == "Select":
            changes.append(dataclasses.replace(op, args=(op.args[1], op.args[0])))
        defined = [o.name for o in program.ops[:i] if o.is_sop] + list(INPUTS)
        for j, arg in enumerate(op.args):
            if op.kind == "Aggregate" and j == 0:
                continue  # the selector slot takes a Select
            for other in defined:
                if other != arg and program.encoding_of(other) == program.encoding_of(arg):
                    changes.append(dataclasses.replace(op, args=op.args[:j] + (other,) + op.args[j + 1 :]))
        for new in changes:
            try:
                out.append(Program(program.ops[:i] + (new,) + program.ops[i + 1 :], program.output))
            except ValueError:
                continue
    return out


def differs(candidate: Program, truth: Program, model: CompiledModel, max_inputs: int) -> bool:
    """The oracle: RASP outputs of the candidate and the truth on every verification input."""
    inputs, _ = verification.verification_inputs(model, max_inputs)
    want = oracle.outputs_of(truth, inputs, model.settings.causal)
    return want is not None and not oracle.same_outputs(
        oracle.outputs_of(candidate, inputs, model.settings.causal), want
    )


def sources(n_sampled: int) -> dict[str, list[tuple[str, Program, CompiledModel]]]:
    out: dict[str, list] = collections.defaultdict(list)
    for name, (program, vocab, length, causal) in written.written_programs().items():
        out["written"].append((name, program, compiler.compile_program(program, vocab, length, causal=causal)))
    for name, program in lib.lib_programs().items():
        out["lib"].append((name, program, compiler.compile_program(program, lib.LIB_VOCAB, lib.LIB_MAX_SEQ_LEN)))
    sort = text.parse_program((Path(metamodels.__file__).parent / "examples" / "sort.rasp").read_text())
    out["sort"].append(("sort", sort, compiler.compile_program(sort)))
    config = sampling.SamplerConfig(min_ops=2, max_ops=9)
    for s in sampling.sample_unique(config, n_sampled, 11)[0]:
        out["sampled"].append((f"seed11-{s.index}", s.program, compiler.compile_program(s.program)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sampled", type=int, default=40, help="closed-library programs sampled (default 40)")
    parser.add_argument("--per-program", type=int, default=24, help="candidates per program (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate shuffle (default 0)")
    parser.add_argument("--inputs", type=int, default=20_000, help="verification inputs (default 20000)")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)
    rng = np.random.default_rng(args.seed)
    total: collections.Counter[str] = collections.Counter()
    for source, entries in sources(args.sampled).items():
        counts: collections.Counter[str] = collections.Counter()
        for name, truth, model in entries:
            pool = corruptions(truth)
            for k in rng.permutation(len(pool))[: args.per_program]:
                candidate = pool[int(k)]
                try:
                    report = verification.verify(candidate, model, max_inputs=args.inputs, weights=False)
                except ValueError:  # the corruption cannot be evaluated at all (e.g. a type error in Tracr)
                    counts["not evaluable"] += 1
                    continue
                counts[report.verdict] += 1
                if report.holds() and differs(candidate, truth, model, args.inputs):
                    counts["FALSE VERIFICATION"] += 1
                    print(f"  false: {source}/{name}\n{text.format_program(candidate)}")
        n = sum(v for k, v in counts.items() if k != "FALSE VERIFICATION")
        print(
            f"{source}: {len(entries)} programs, {n} candidates: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )
        total.update(counts)
    verified = total["equivalent"] + total["agrees_where_defined"]
    print(
        f"all: {sum(v for k, v in total.items() if k != 'FALSE VERIFICATION')} candidates, {verified} verified "
        f"(same function as the truth unless counted false), {total['FALSE VERIFICATION']} false verifications "
        f"({total['FALSE VERIFICATION'] / max(1, verified):.3f} of verified)"
    )


if __name__ == "__main__":
    main()
