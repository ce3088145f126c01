"""The ``metamodels`` command line: one subcommand per user-facing path.

Thin by design: options come from the config dataclasses (:mod:`metamodels.options`, each default declared
once, in its config); each command parses, calls one stage or orchestrator and prints. A user mistake
(:class:`~metamodels.errors.MetamodelsError`, an unreadable file, a bad option) prints one ``error:`` line and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from metamodels import options
from metamodels.errors import MetamodelsError

EXAMPLES = Path(__file__).parent / "examples"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other user mistake
        self.exit(2, f"error: {self.prog}: {message}\n")


# fmt: off
# One entry per command: its help line and, where that is not enough, a description. Only the chosen command's
# options are built (by ``_<command>_options``), so a command imports only its stages: torch and JAX load slowly.
COMMANDS = {
    "sample": ("sample random, valid, non-trivial, deduplicated RASP programs (rasp-gen)", None),
    "compile": ("compile a RASP program file with Tracr into a safetensors model file", None),
    "run": ("run a model file on one input sequence and print the decoded output", None),
    "demo": ("compile paper 000's sort program and a sampled one, run both, check them against RASP", None),
    "dataset": ("build and inspect (program, weights) datasets in sharded Parquet", None),
    "verify": ("check a program against a model file", "Run the program (RASP evaluation) and the model on every input "
               "(or a large random set) and compare, then recompile the program and compare weights up to permutations. "
               "Exit status 0 only if the program verifies (the README states the rule), else 1."),
    "densify": ("make a model file's weights dense (PCA compression + random rotation)", "Compress the residual stream by "
                "PCA to the smallest width keeping the decoded outputs unchanged on at least --fidelity of held-out "
                "inputs, then rotate randomly. The result is an ordinary model file."),
    "decompile": ("decompile a model file into a RASP program with the meta-model", "Read a model's weights with a "
                  "trained meta-model and print the program it implements (grammar-constrained greedy or beam decoding). "
                  "With --verify, candidates are checked in order of score; the first that verifies is returned."),
    "train": ("train a meta-model on a dataset", "Train a meta-model (weights -> program tokens) on the train split with "
              "validation, early stopping, loss curves and the best checkpoint in OUT/checkpoint. Rerun to resume."),
    "evaluate": ("evaluate a meta-model checkpoint on a dataset split", "Greedy-decode every model of a split; report "
                 "exact, functional, teacher-forced and per-field accuracy by number of ops (optionally verified@k)."),
}


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="metamodels", description="Sample RASP programs, compile them with Tracr, and decompile "
                     "transformers back into programs with a trained meta-model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help, description) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=description or help)
        if name == chosen:
            globals()[f"_{name}_options"](p)
    return parser


def _sample_options(p: argparse.ArgumentParser) -> None:
    from metamodels.dataset import sampling

    p.add_argument("--n", type=int, default=5, help="number of programs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed; program i of seed s is always the same (default 0)")
    options.add_options(p, sampling.SamplerConfig)
    p.add_argument("--stats", action="store_true", help="print realised histograms and rejection counts instead")
    p.add_argument("-o", "--out", type=Path, help="write each program to OUT/program_<index>.rasp instead of printing")
    p.add_argument("--config", type=Path, help='JSON file of SamplerConfig fields, e.g. {"op_weights": {"Map": 1, '
                   '"Aggregate": 2}, "numerical": {"Map": 0.5}, "predicate_weights": {"EQ": 1}}')


def _compile_options(p: argparse.ArgumentParser) -> None:
    from metamodels.dataset import sampling

    p.add_argument("program", type=Path, help="program file in readable form (see examples/)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model file (.safetensors)")
    options.add_options(p, sampling.SamplerConfig, only=("vocab", "max_seq_len"))
    p.add_argument("--causal", action="store_true", help="compile a causally masked model")
    p.add_argument("--mlp-exactness", type=int, help="Tracr's MLP approximation parameter (default: by length)")
    p.add_argument("--with-source", action="store_true", help="also store the program text in the model file "
                   "(provenance; by default a model file does not carry its program)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("tokens", nargs="+", help="input tokens, e.g. 3 1 2")
    p.add_argument("--program", action="store_true", help="also print the RASP evaluation of the program stored in the "
                   "model file (compile --with-source)")


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled program (default 0)")
    p.add_argument("--ops", type=options.parse_range, default=(4, 6), help="ops of the sampled program (default 4-6)")


def _dataset_options(p: argparse.ArgumentParser) -> None:
    from metamodels.dataset import examples

    dsub = p.add_subparsers(dest="dataset_command", required=True, parser_class=_Parser)
    b = dsub.add_parser("build", help="build (or resume) a dataset", description="Sample, compile, check and store N "
                        "deduplicated examples as Parquet shards. Run the same command again to resume.")
    b.add_argument("out", type=Path, help="output directory")
    options.add_options(b, examples.BuildConfig)
    b.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (default: all cores)")
    b.add_argument("--ray", metavar="ADDRESS", help="run on an existing Ray cluster (e.g. 'auto' or 'ray://host:10001')")
    st = dsub.add_parser("stats", help="tables and plots of a dataset (paper 000, Figures 6-7)")
    st.add_argument("directory", type=Path, help="dataset directory")
    st.add_argument("--plot", type=Path, help="PNG file for the plots (default DIRECTORY/stats.png)")


def _verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", type=Path, help="program file in readable form")
    _model_inputs_json(p, "print the report as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--seconds", type=float, help="stop comparing after this long (then inconclusive unless every "
                   "length already has its evidence)")


def _model_inputs_json(p: argparse.ArgumentParser, json_help: str) -> None:
    from metamodels.transformer import battery

    p.add_argument("model", type=Path, help="model file (.safetensors), e.g. src/metamodels/examples/sort.safetensors")
    p.add_argument("--inputs", type=int, default=battery.MAX_EXHAUSTIVE, help="verification: every input when there are "
                   f"at most this many, else this many random ones (default {battery.MAX_EXHAUSTIVE})")
    p.add_argument("--json", action="store_true", help=json_help)


def _densify_options(p: argparse.ArgumentParser) -> None:
    from metamodels.transformer import densification

    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output model file")
    options.add_options(p, densification.DensifyConfig)


def _decompile_options(p: argparse.ArgumentParser) -> None:
    from metamodels.decompilation import pipeline

    _model_inputs_json(p, "print the result as JSON")
    p.add_argument("--checkpoint", type=Path, help="meta-model checkpoint directory (default: the shipped one for the "
                   "model's weights: Tracr's basis, or dense when the model has no residual labels)")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy (default 1)")
    p.add_argument("--verify", action="store_true", help="verify candidates, return the first that holds")
    p.add_argument("--repair", type=int, default=pipeline.REPAIR, help="with --verify, if no candidate verifies, check up "
                   f"to this many one-substitution repairs of the best candidates (0: off; default {pipeline.REPAIR})")
    p.add_argument("--no-readout", action="store_true", help="keep the meta-model's library functions instead of also "
                   "reading each candidate's functions and predicates from the weights (tried first)")


def _train_options(p: argparse.ArgumentParser) -> None:
    from metamodels.meta import training

    options.add_options(p, training.TrainConfig)


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    from metamodels.evaluation import evaluate

    p.add_argument("--checkpoint", type=Path, help="meta-model checkpoint directory (default: the shipped one)")
    p.add_argument("--data", type=Path, help="dataset directory (not needed for --split lib or written)")
    options.add_options(p, evaluate.EvaluateConfig)
    p.add_argument("--programs", action="store_true", help="print every program, truth vs decoded")
    p.add_argument("--json", type=Path, help="write the full report (every example) to this JSON file")
    p.add_argument("--plot", type=Path, help="write accuracy by number of ops to this PNG")
def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("absl").setLevel(logging.ERROR)  # Tracr warns once per SequenceMap(f, x, x) it builds
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    try:
        for name in ("n", "inputs", "beam", "workers"):  # counts that must be positive, wherever they appear
            if getattr(args, name, 1) < 1:
                raise MetamodelsError(f"--{name} must be at least 1, got {getattr(args, name)}")
        return globals()[f"_{args.command}"](args)
    except (MetamodelsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _read_program(path: Path, source: str | None = None):
    from metamodels.rasp import text

    try:
        return text.parse_program(path.read_text() if source is None else source)
    except (OSError, UnicodeDecodeError) as e:
        raise MetamodelsError(f"{path}: cannot read ({e})") from None
    except text.ProgramSyntaxError as e:
        raise MetamodelsError(f"{path}: {e}") from None


def _sample(args: argparse.Namespace) -> int:
    from metamodels.dataset import sampling
    from metamodels.rasp import text

    config = options.config_from(args, sampling.SamplerConfig, sampling.read_config(args.config) if args.config else {})
    samples, rejected = sampling.sample_unique(config, args.n, args.seed, progress=sys.stderr.isatty() or args.n >= 50)
    if args.stats:
        print(sampling.describe_stats(samples, rejected, config, args.seed))
    for s in samples if not args.stats else ():
        body = f"# seed {s.seed}, index {s.index}, {s.program.n_ops} ops\n{text.format_program(s.program)}"
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"program_{s.index}.rasp").write_text(body)
        else:
            print(body)
    return 0


def _compile(args: argparse.Namespace) -> int:
    from metamodels.dataset import sampling
    from metamodels.transformer import compiler, modelfile

    s, program = options.config_from(args, sampling.SamplerConfig), _read_program(args.program)
    model = compiler.compile_program(program, s.vocab, s.max_seq_len, causal=args.causal, mlp_exactness=args.mlp_exactness)
    modelfile.save(model, args.out, with_source=args.with_source)
    print(f"{args.out}: {model.describe()}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from metamodels.dataset import build, examples, stats

    if args.dataset_command == "stats":
        print(stats.report(args.directory, args.plot or args.directory / "stats.png"))
        return 0
    config = options.config_from(args, examples.BuildConfig)
    print(build.build_dataset(args.out, config, workers=args.workers, ray_address=args.ray, progress=True).describe(args.out))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from metamodels.decompilation import verification
    from metamodels.transformer import modelfile

    program, model = _read_program(args.program), modelfile.load(args.model)
    if args.seconds is not None and not args.seconds > 0:
        raise MetamodelsError(f"--seconds must be positive, got {args.seconds}")
    report = verification.verify(program, model, max_inputs=args.inputs, seed=args.seed, seconds=args.seconds,
                                 progress=sys.stderr.isatty())  # fmt: skip
    print(json.dumps(report.to_json(), indent=1, default=str) if args.json else report.describe())
    return 0 if report.holds() else 1


def _densify(args: argparse.Namespace) -> int:
    from metamodels.transformer import densification, modelfile

    c = options.config_from(args, densification.DensifyConfig)
    result = densification.densify(modelfile.load(args.model), target_fidelity=c.fidelity, d_model=c.d_model, seed=c.seed)
    modelfile.save(result.model, args.out)
    print(result.describe(args.out))
    return 0


def _decompile(args: argparse.Namespace) -> int:
    from metamodels.decompilation import pipeline
    from metamodels.transformer import modelfile

    result = pipeline.decompile(modelfile.load(args.model), checkpoint=args.checkpoint, beam=args.beam, verify=args.verify,
                                max_inputs=args.inputs, repair=args.repair, read_tables=not args.no_readout)  # fmt: skip
    if result.text is None and not args.json:
        raise MetamodelsError("the meta-model produced no complete program within its length limit")
    print(json.dumps(result.to_json(), indent=1, default=str) if args.json else
          result.describe(default_checkpoint=args.checkpoint is None, repair=args.repair))  # fmt: skip
    return 0


def _train(args: argparse.Namespace) -> int:
    from metamodels.meta import training

    fixed = {"data": args.data[0] if len(args.data) == 1 else tuple(args.data), **({"minutes": None} if args.steps else {})}
    cfg = options.config_from(args, training.TrainConfig, **fixed)
    print(f"best checkpoint: {training.train(cfg)}; log {Path(cfg.out) / training.LOG}; curves {Path(cfg.out) / 'curves.png'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from metamodels.decompilation import pipeline
    from metamodels.evaluation import evaluate, reporting

    config = options.config_from(args, evaluate.EvaluateConfig)
    report = evaluate.evaluate(pipeline.load_metamodel(args.checkpoint), args.data, config)
    if config.split in ("lib", "written") or args.programs:
        print(reporting.format_programs(report))
    print(reporting.format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.plot:
        reporting.plot(report, args.plot)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from metamodels.dataset import sampling
    from metamodels.rasp import text
    from metamodels.transformer import battery, compiler, forward

    sampled = sampling.sample(sampling.SamplerConfig(min_ops=args.ops[0], max_ops=args.ops[1]), args.seed, 0).program
    sort = _read_program(EXAMPLES / "sort.rasp")
    for title, program in (("paper 000, Figure 2: sort", sort), (f"sampled (seed {args.seed}, index 0)", sampled)):
        model = compiler.compile_program(program)
        inputs = [xs for xs in battery.make_battery(model.settings.vocab, model.settings.max_seq_len) if len(set(xs)) == len(xs)]
        outputs = forward.run(model, inputs)
        agree = sum(forward.outputs_match(out, program.evaluate(xs)) for xs, out in zip(inputs, outputs))  # type: ignore[arg-type]
        print(f"== {title}\n{text.format_program(program)}\ncompiled: {model.describe()}")
        print(f"model({' '.join(map(str, inputs[-1]))}) = {' '.join(map(forward.show, outputs[-1]))}")
        print(f"agrees with RASP evaluation on {agree}/{len(inputs)} inputs with distinct tokens\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    from metamodels.transformer import forward, modelfile

    model = modelfile.load(args.model)
    by_text = {str(v): v for v in model.settings.vocab}
    if unknown := [t for t in args.tokens if t not in by_text]:
        raise MetamodelsError(f"token(s) {unknown} not in the model's vocabulary {list(model.settings.vocab)}")
    xs = [by_text[t] for t in args.tokens]
    print(" ".join(map(forward.show, forward.run(model, [xs])[0])))
    if args.program and model.program_text:
        print(" ".join(map(forward.show, _read_program(args.model, model.program_text).evaluate(xs))), "(RASP evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
