"""The ``metamodels`` command line: one subcommand per user-facing path.

Thin by design: parse arguments, call one stage or orchestrator, print. User
mistakes (bad files, bad programs, bad inputs) print one ``error:`` line and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = Path(__file__).parent / "examples"


def _range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or A-B, got {text!r}") from None
    if not 1 <= a <= b:
        raise argparse.ArgumentTypeError(f"expected 1 <= A <= B, got {text!r}")
    return a, b


def _value(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _vocab(text: str) -> tuple:
    """'1,2,3' -> (1, 2, 3); 'a,b' -> ('a', 'b'); '1-5' -> (1, ..., 5)."""
    if "," not in text and "-" in text.strip("-"):
        lo, hi = _range(text) if not text.startswith("-") else (None, None)
        if lo is not None:
            return tuple(range(lo, hi + 1))
    values = tuple(_value(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError("the vocabulary is empty")
    return values


def _add_settings(p: argparse.ArgumentParser) -> None:
    """The compile settings shared by commands that sample or compile one configuration."""
    p.add_argument(
        "--vocab", type=_vocab, default=None, help="input vocabulary, e.g. 1,2,3 or 1-5 or a,b,c (default 1-5)"
    )
    p.add_argument("--max-seq-len", type=int, default=None, help="maximum input length (default 5)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metamodels", description="Sample RASP programs, compile them with Tracr, run the compiled transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "sample",
        help="sample random RASP programs (rasp-gen)",
        description="Sample random, valid, non-trivial, deduplicated RASP programs and print them in readable form.",
    )
    p.add_argument("--n", type=int, default=5, help="number of programs (default 5)")
    p.add_argument("--ops", type=_range, default=(1, 10), help="operations per program, N or A-B (default 1-10)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed; program i of seed s is always the same (default 0)"
    )
    _add_settings(p)
    p.add_argument(
        "--stats", action="store_true", help="print realised histograms and rejection counts instead of programs"
    )
    p.add_argument("-o", "--out", type=Path, help="write each program to OUT/program_<index>.rasp instead of printing")
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file of SamplerConfig fields, e.g. "
        '{"op_weights": {"Map": 1, "Aggregate": 2}, "numerical": {"Map": 0.5}, "predicate_weights": {"EQ": 1}}',
    )

    p = sub.add_parser(
        "compile",
        help="compile a program file to a model file",
        description="Compile a RASP program file with Tracr into a safetensors model file.",
    )
    p.add_argument("program", type=Path, help="program file in readable form (see examples/)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model file (.safetensors)")
    _add_settings(p)
    p.add_argument("--causal", action="store_true", help="compile a causally masked model")
    p.add_argument(
        "--mlp-exactness",
        type=int,
        default=None,
        help="Tracr's MLP approximation parameter (default 100, 1000 from length 6)",
    )

    p = sub.add_parser(
        "demo",
        help="compile the paper's sort program and a sampled one, run both",
        description="The main job until a pretrained meta-model ships: compile paper 000's sort program (Figure 2) and a freshly sampled program with Tracr, run both compiled transformers, and check them against RASP evaluation.",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled program (default 0)")
    p.add_argument("--ops", type=_range, default=(4, 6), help="operations of the sampled program (default 4-6)")

    p = sub.add_parser(
        "dataset",
        help="build and inspect (program, weights) datasets",
        description="Datasets of compiled programs in sharded Parquet.",
    )
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser(
        "build",
        help="build (or resume) a dataset",
        description="Sample, compile, check and store N deduplicated examples as Parquet shards. Running the same command again resumes an interrupted build.",
    )
    b.add_argument("out", type=Path, help="output directory")
    b.add_argument("--n", type=int, required=True, help="number of examples to store")
    b.add_argument("--ops", type=_range, default=(1, 9), help="operations per program, N or A-B (default 1-9)")
    b.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    b.add_argument(
        "--vocab-size",
        type=_range,
        default=(5, 5),
        help="vocabulary size (1..size), fixed or A-B drawn per example (default 5)",
    )
    b.add_argument(
        "--max-seq-len", type=_range, default=(5, 5), help="maximum length, fixed or A-B drawn per example (default 5)"
    )
    b.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="local worker processes (default: all cores)"
    )
    b.add_argument(
        "--ray", metavar="ADDRESS", help="run on an existing Ray cluster (e.g. 'auto' or 'ray://host:10001')"
    )
    b.add_argument("--shard-size", type=int, default=250, help="sample indices per shard (default 250)")
    b.add_argument("--max-params", type=int, default=65536, help="drop models with more weights (default 65536)")
    b.add_argument("--max-tokens", type=int, default=128, help="drop programs with more tokens (default 128)")
    b.add_argument("--max-layers", type=int, default=10, help="drop models with more layers (default 10)")
    b.add_argument(
        "--dense", type=float, metavar="FIDELITY", help="densify every model (PCA + rotation) to this held-out fidelity"
    )
    b.add_argument(
        "--open-vocab", action="store_true",
        help="open-vocabulary programs: per example a vocabulary of integers, letters, words or floats (of "
        "--vocab-size), causal masking half the time, named variables, and random value-table functions and "
        "predicates alongside the library",
    )  # fmt: skip
    st = dsub.add_parser(
        "stats",
        help="tables and plots of a dataset",
        description="Print a dataset's statistics and write PNG plots (paper 000, Figures 6-7).",
    )
    st.add_argument("directory", type=Path, help="dataset directory")
    st.add_argument("--plot", type=Path, help="PNG file for the plots (default DIRECTORY/stats.png)")

    p = sub.add_parser(
        "verify",
        help="check a program against a model file",
        description="Run the program (RASP evaluation) and the model (forward pass) on every input (or a large random set) "
        "and compare; then recompile the program and compare weights up to permutations. Exit status 0 if no input "
        "refutes the program, 1 if one does.",
    )
    p.add_argument("program", type=Path, help="program file in readable form")
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument(
        "--inputs", type=int, default=100_000, help="exhaustive up to this many inputs, else this many random ones"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser(
        "densify",
        help="make a model file's weights dense (PCA compression + random rotation)",
        description="Compress the residual stream by PCA to the smallest width that keeps the decoded outputs unchanged on "
        "at least --fidelity of held-out inputs, then apply a random rotation. The result is an ordinary model file.",
    )
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model file")
    p.add_argument(
        "--fidelity",
        type=float,
        default=0.99,
        help="fraction of held-out inputs whose output must not change (default 0.99)",
    )
    p.add_argument("--d-model", type=int, help="compress to exactly this width instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotation and the inputs (default 0)")

    _add_metamodel_commands(sub)

    p = sub.add_parser(
        "run",
        help="run a model file on one input",
        description="Run a compiled model on one input sequence and print the decoded output.",
    )
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("tokens", nargs="+", help="input tokens, e.g. 3 1 2")
    p.add_argument(
        "--program", action="store_true", help="also print the RASP evaluation of the model's source program"
    )
    return parser


def _add_metamodel_commands(sub) -> None:
    p = sub.add_parser(
        "decompile",
        help="decompile a model file into a RASP program with the meta-model",
        description="Read a compiled model's weights with a trained meta-model and print the RASP program it implements "
        "(grammar-constrained greedy or beam decoding). With --verify, each beam candidate is checked against the model "
        "in order of score and the first that verifies is returned, with its evidence.",
    )
    p.add_argument("model", type=Path, help="model file (.safetensors), e.g. src/metamodels/examples/sort.safetensors")
    p.add_argument(
        "--checkpoint", type=Path,
        help="meta-model checkpoint directory (default: the shipped one for the model's weights: Tracr's basis, or "
        "dense when the model has no residual labels, e.g. after `metamodels densify`)",
    )  # fmt: skip
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy (default 1)")
    p.add_argument(
        "--verify", action="store_true", help="verify candidates against the model and return the first that holds"
    )
    p.add_argument(
        "--inputs", type=int, default=100_000, help="verification: exhaustive up to this many inputs (default 100000)"
    )
    p.add_argument(
        "--repair", type=int, default=200,
        help="with --verify, if no candidate verifies, check up to this many one-function/predicate substitutions "
        "of the best candidates, best-scored first (0: off; default 200)",
    )  # fmt: skip
    p.add_argument(
        "--no-readout", action="store_true",
        help="keep the meta-model's library functions; by default each candidate's functions and predicates are also "
        "read from the weights as value tables (needs the model's residual labels), and that variant is tried first",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser(
        "train",
        help="train a meta-model on a dataset",
        description="Train a meta-model (weights -> program tokens) on the train split of a dataset directory, with "
        "periodic validation, early stopping, loss curves, and the best checkpoint in OUT/checkpoint. Rerun the same "
        "command to resume a killed run.",
    )
    p.add_argument(
        "--data", type=Path, required=True, action="append",
        help="dataset directory (from `metamodels dataset build`); repeat to train on several (splits concatenated)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, log.jsonl, curves.png, state)")
    p.add_argument("--preset", default="small", help="model size: tiny, small (2 CPU cores; default) or paper")
    p.add_argument(
        "--encoding", default="rows", help="weight encoding: rows (structure-aware; default) or flat (paper)"
    )
    p.add_argument("--minutes", type=float, default=60.0, help="time budget in minutes (default 60)")
    p.add_argument("--steps", type=int, help="number of steps (overrides the time-fitted schedule)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--eval-every", type=int, default=250, help="steps between validations (default 250)")
    p.add_argument("--limit", type=int, help="use only the first N training examples (of each dataset)")
    p.add_argument("--augment", action="store_true", help="relabel residual directions randomly per example (rows)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cache", type=Path, help="where encoded examples are cached (default OUT/cache)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    p.add_argument(
        "--init", type=Path,
        help="fine-tune: start from this checkpoint's weights, architecture and encoding (--preset and --encoding "
        "are then ignored); tokens added to the vocabulary since it was trained are learned",
    )  # fmt: skip
    p.add_argument(
        "--basis", choices=("stored", "canonical"),
        help="rows encoding: read weights in their stored residual basis (Tracr's; default) or in the canonical basis "
        "read off the weights, which any rotation leaves unchanged (for dense models; also with --init)",
    )  # fmt: skip
    p.add_argument(
        "--dense-data", type=Path, action="append", default=[],
        help="also train on this dataset's models made dense (PCA to --dense-fidelity, random rotation, hidden units "
        "and heads permuted; seeded per example by --seed); repeatable",
    )  # fmt: skip
    p.add_argument("--dense-fidelity", type=float, default=0.99, help="fidelity bar of --dense-data (default 0.99)")
    p.add_argument(
        "--dense-limit", type=int, help="use only the first N training examples of each --dense-data (default --limit)"
    )

    p = sub.add_parser(
        "evaluate",
        help="evaluate a meta-model checkpoint on a dataset split",
        description="Greedy-decode every model of a split and report exact-program, functional, teacher-forced and "
        "per-field accuracy by number of ops (optionally verified@k). The lib split is printed program by program.",
    )
    p.add_argument("--checkpoint", type=Path, help="meta-model checkpoint directory (default: the shipped one)")
    p.add_argument(
        "--data",
        type=Path,
        help="dataset directory (not needed for --split lib or written: those programs are compiled here)",
    )
    p.add_argument(
        "--split",
        default="test",
        help="split: test, val, train, lib (Tracr's lib programs) or written (open-vocabulary programs written in "
        "Tracr's rasp, see dataset/written.py) (default test)",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N examples")
    p.add_argument("--verify-k", type=int, default=0, help="also measure verified@k with a beam of this width")
    p.add_argument("--verify-limit", type=int, default=100, help="models used for verified@k (default 100)")
    p.add_argument(
        "--permute-residual", type=int, metavar="SEED",
        help="first shuffle the order of each model's variables in its residual stream (what other variable names do)",
    )  # fmt: skip
    p.add_argument(
        "--dense", type=float, metavar="FIDELITY",
        help="first make each model dense: PCA-compressed to the smallest width keeping this fidelity on held-out "
        "inputs, randomly rotated, hidden units and heads permuted (seeded by --dense-seed and the example)",
    )  # fmt: skip
    p.add_argument("--dense-seed", type=int, default=1, help="seed of --dense (default 1)")
    p.add_argument("--programs", action="store_true", help="print every program, truth vs decoded (always for lib)")
    p.add_argument("--json", type=Path, help="write the full report (every example) to this JSON file")
    p.add_argument("--plot", type=Path, help="write accuracy by number of ops to this PNG")


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    # Tracr logs a warning per SequenceMap(f, x, x) it builds; decoded candidates make many.
    logging.getLogger("absl").setLevel(logging.ERROR)
    args = _parser().parse_args(argv)
    try:
        commands = {
            "sample": _sample,
            "compile": _compile,
            "run": _run,
            "demo": _demo,
            "dataset": _dataset,
            "verify": _verify,
            "densify": _densify,
            "decompile": _decompile,
            "train": _train,
            "evaluate": _evaluate,
        }
        return commands[args.command](args)
    except (ValueError, OSError) as e:  # user mistakes: our errors are ValueErrors that say what to fix
        print(f"error: {e}", file=sys.stderr)
        return 2


def _sample(args: argparse.Namespace) -> int:
    from metamodels import sampling
    from metamodels.rasp import text

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    overrides = {k: v for k, v in (("vocab", args.vocab), ("max_seq_len", args.max_seq_len)) if v is not None}
    from_file = sampling.config_fields(_read_json(args.config)) if args.config else {}
    config = sampling.SamplerConfig(**{"min_ops": args.ops[0], "max_ops": args.ops[1], **from_file, **overrides})
    samples, rejected = sampling.sample_unique(config, args.n, args.seed, progress=sys.stderr.isatty() or args.n >= 50)
    if args.stats:
        print(f"{len(samples)} programs (seed {args.seed}, ops {args.ops[0]}-{args.ops[1]})")
        for name, counter in sampling.histograms([s.program for s in samples]).items():
            _table(name, counter)
        _table("rejected candidates", {k: rejected.get(k, 0) for k in sampling.REJECTIONS})
        return 0
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for s in samples:
        body = f"# seed {s.seed}, index {s.index}, {s.program.n_ops} ops\n{text.format_program(s.program)}"
        if args.out:
            (args.out / f"program_{s.index}.rasp").write_text(body)
        else:
            print(body)
    return 0


def _read_json(path: Path) -> object:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from None


def _table(title: str, counter) -> None:
    total = sum(counter.values()) or 1
    print(f"\n{title}:")
    for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        print(f"  {str(key):<32} {count:>7}  {100 * count / total:5.1f}%  {'#' * round(40 * count / total)}")


def _compile(args: argparse.Namespace) -> int:
    from metamodels import compiler, modelfile

    program = _read_program(args.program)
    model = compiler.compile_program(
        program,
        args.vocab or compiler.DEFAULT_VOCAB,
        args.max_seq_len or compiler.DEFAULT_MAX_SEQ_LEN,
        causal=args.causal,
        mlp_exactness=args.mlp_exactness,
    )
    modelfile.save(model, args.out)
    print(
        f"{args.out}: {model.n_layers} layers, d_model {model.d_model}, {model.n_params} weights, vocab {list(model.settings.vocab)}, max_seq_len {model.settings.max_seq_len}"
    )
    return 0


def _read_program(path: Path):
    from metamodels.rasp import text

    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    try:
        return text.parse_program(source)
    except text.ProgramSyntaxError as e:
        raise ValueError(f"{path}: {e}") from None


def _dataset(args: argparse.Namespace) -> int:
    from metamodels.dataset import build, examples, stats

    if args.dataset_command == "stats":
        print(stats.report(args.directory, args.plot or args.directory / "stats.png"))
        return 0
    config = examples.BuildConfig(
        n=args.n, seed=args.seed, min_ops=args.ops[0], max_ops=args.ops[1], vocab_size=args.vocab_size,
        max_seq_len=args.max_seq_len, shard_size=args.shard_size, max_params=args.max_params,
        max_tokens=args.max_tokens, max_layers=args.max_layers, dense_fidelity=args.dense, open_vocab=args.open_vocab,
    )  # fmt: skip
    report = build.build_dataset(args.out, config, workers=args.workers, ray_address=args.ray, progress=True)
    rate = (report.rows / report.seconds) if report.seconds else 0.0
    print(
        f"{args.out}: {report.rows} examples in {report.shards} shards ({report.seconds:.0f} s this run, {rate:.1f} examples/s)"
    )
    _table("dropped (all runs)", {k: report.drops.get(k, 0) for k in examples.DROPS})
    return 0


def _verify(args: argparse.Namespace) -> int:
    import json

    from metamodels import modelfile, verification

    program, model = _read_program(args.program), modelfile.load(args.model)
    report = verification.verify(program, model, max_inputs=args.inputs, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, default=str))
        return 1 if report.verdict == "refuted" else 0
    how = "all" if report.exhaustive else "random"
    print(
        f"verdict: {report.verdict} ({report.n_inputs} inputs, {how}; {report.outside_domain} outside the program's domain)"
    )
    print(
        f"positions: {report.compared_positions} compared, {report.disagreeing_positions} disagree, {report.undefined_positions} undefined in the program"
    )
    print("agreement by position: " + " ".join(f"{a:.3f}" for a in report.agreement_by_position))
    for c in report.counterexamples:
        print(f"  counterexample {list(c.input)}: model {list(c.model_output)}, program {list(c.program_output)}")
    if report.weights is not None:
        print(
            f"weights: {'match' if report.weights.match else 'no match' if report.weights.match is False else 'not checked'} ({report.weights.reason})"
        )
    return 1 if report.verdict == "refuted" else 0


def _densify(args: argparse.Namespace) -> int:
    from metamodels import densification, modelfile

    if not 0.0 < args.fidelity <= 1.0:
        raise ValueError(f"--fidelity must be in (0, 1], got {args.fidelity}")
    result = densification.densify(
        modelfile.load(args.model), target_fidelity=args.fidelity, d_model=args.d_model, seed=args.seed
    )
    modelfile.save(result.model, args.out)
    held = result.model.densified["heldout_inputs"]
    print(
        f"{args.out}: d_model {result.original_d_model} -> {result.d_model}, fidelity {result.fidelity:.4f} on {held} held-out inputs"
    )
    return 0


def _decompile(args: argparse.Namespace) -> int:
    import json

    from metamodels import decompilation, modelfile

    if args.beam < 1:
        raise ValueError(f"--beam must be at least 1, got {args.beam}")
    result = decompilation.decompile(
        modelfile.load(args.model),
        checkpoint=args.checkpoint,
        beam=args.beam,
        verify=args.verify,
        max_inputs=args.inputs,
        repair=args.repair,
        read_tables=not args.no_readout,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=1, default=str))
        return 0
    if result.text is None:
        raise ValueError("the meta-model produced no complete program within its length limit")
    print(result.text)
    if args.checkpoint is None and result.checkpoint == str(decompilation.DENSE_CHECKPOINT):
        print("# read by the dense-weights meta-model (the model's residual stream is not in Tracr's basis)")
    if result.status == "verified":
        r = result.report
        weights = {
            True: "weights match after recompiling",
            False: "weights differ after recompiling",
            None: "weights not compared",
        }
        chosen = result.candidates[result.chosen]
        source = (
            "a one-substitution repair of the decoded candidates"
            if result.repaired
            else f"beam candidate {chosen.rank + 1}"
            + (", functions and predicates read from the weights" if chosen.read_out else "")
        )
        print(f"# verified: {r.verdict} on {r.n_inputs} inputs ({'all' if r.exhaustive else 'random'}); "  # type: ignore[union-attr]
              f"{weights[r.weights.match]}; {source}")  # type: ignore[union-attr]  # fmt: skip
    elif result.status == "unverified":
        print(
            f"# UNVERIFIED: none of the {len(result.candidates)} decoded candidates"
            + (f" nor up to {args.repair} one-substitution repairs" if args.repair else "")
            + " holds on the model; best candidate shown"
        )
        for c in (result.report.counterexamples if result.report else ())[:3]:  # type: ignore[attr-defined]
            print(f"#   counterexample {list(c.input)}: model {list(c.model_output)}, program {list(c.program_output)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from metamodels import training

    cfg = training.TrainConfig(
        data=tuple(str(d) for d in args.data) if len(args.data) > 1 else str(args.data[0]), out=str(args.out), preset=args.preset, encoding=args.encoding, batch_size=args.batch_size,
        lr=args.lr, steps=args.steps, minutes=None if args.steps else args.minutes, eval_every=args.eval_every,
        seed=args.seed, limit=args.limit, threads=args.threads, augment=args.augment, cache_dir=str(args.cache) if args.cache else None,
        init=str(args.init) if args.init else None, basis=args.basis, dense_data=tuple(str(d) for d in args.dense_data),
        dense_fidelity=args.dense_fidelity, dense_limit=args.dense_limit,
    )  # fmt: skip
    checkpoint = training.train(cfg)
    print(f"best checkpoint: {checkpoint}; log {args.out / training.LOG}; curves {args.out / 'curves.png'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from metamodels import batching, decompilation, evaluation

    if args.data is None and args.split not in ("lib", "written"):
        raise ValueError("--data is required (except for --split lib and --split written)")
    meta = decompilation.load_metamodel(args.checkpoint)
    report = evaluation.evaluate(
        meta, args.data, args.split, limit=args.limit, verify_k=args.verify_k, verify_limit=args.verify_limit,
        permute_residual=args.permute_residual,
        dense=batching.Dense(args.dense, args.dense_seed, heldout=20_000) if args.dense is not None else None,
    )  # fmt: skip
    if args.split in ("lib", "written") or args.programs:
        for r in report["examples"]:
            verdict = "exact" if r["exact"] else "functional" if r["functional"] else "WRONG"
            if not r["functional"] and r["functional_readout"]:
                verdict = "functional after readout"
            print(f"== {r['id']} ({verdict})")
            print(f"-- truth\n{r['truth']}-- decoded\n{r.get('decoded') or '(none)'}")
    print(evaluation.format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.plot:
        evaluation.plot(report, args.plot)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from metamodels import battery, compiler, forward, sampling
    from metamodels.rasp import text

    sampled = sampling.sample(sampling.SamplerConfig(min_ops=args.ops[0], max_ops=args.ops[1]), args.seed, 0).program
    for title, program in (
        ("paper 000, Figure 2: sort", _read_program(EXAMPLES / "sort.rasp")),
        (f"sampled (seed {args.seed}, index 0)", sampled),
    ):
        model = compiler.compile_program(program)
        inputs = [
            xs
            for xs in battery.make_battery(model.settings.vocab, model.settings.max_seq_len)
            if len(set(xs)) == len(xs)
        ]
        agree = sum(
            forward.outputs_match(out, program.evaluate(xs)) for xs, out in zip(inputs, forward.run(model, inputs))
        )
        xs = inputs[-1]
        print(f"== {title}\n{text.format_program(program)}")
        print(f"compiled: {model.n_layers} layers, d_model {model.d_model}, {model.n_params} weights")
        print(f"model({' '.join(map(str, xs))}) = {' '.join(_show(v) for v in forward.run(model, [xs])[0])}")
        print(f"agrees with RASP evaluation on {agree}/{len(inputs)} inputs with distinct tokens\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    from metamodels import forward, modelfile
    from metamodels.rasp import text

    model = modelfile.load(args.model)
    by_text = {str(v): v for v in model.settings.vocab}
    unknown = [t for t in args.tokens if t not in by_text]
    if unknown:
        raise ValueError(f"token(s) {unknown} not in the model's vocabulary {list(model.settings.vocab)}")
    xs = [by_text[t] for t in args.tokens]
    print(" ".join(_show(v) for v in forward.run(model, [xs])[0]))
    if args.program and model.program_text:
        print(" ".join(_show(v) for v in text.parse_program(model.program_text).evaluate(xs)), "(RASP evaluation)")
    return 0


def _show(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
