"""The ``metamodels`` command line: one subcommand per user-facing path.

Thin by design: options come from the config dataclasses (:mod:`metamodels.options`, each default declared
once, in its config); each command parses, calls one stage or orchestrator and prints. A user mistake
(:class:`~metamodels.errors.MetamodelsError`, an unreadable file, a bad option) prints one ``error:`` line and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from metamodels import options
from metamodels.errors import MetamodelsError

if TYPE_CHECKING:  # the CLI imports its commands' modules only when they run
    from metamodels.transformer.compiled import CompiledModel
    from metamodels.transformer.trained import TrainedModel


def _config(where: str, only: tuple[str, ...] | None = None) -> options.Argument:
    """The options of config class ``module:Class`` (imported only when its command is chosen)."""
    module, _, name = where.rpartition(":")
    return lambda p: options.add_options(p, getattr(importlib.import_module(f"metamodels.{module}"), name), only)


# fmt: off
MODEL = options.arg("model", type=Path, help="model file (.safetensors), e.g. src/metamodels/examples/sort.safetensors, "
                    "or a directory `metamodels import` reads (a Hugging Face GPT-2 checkpoint: token ids as values)")
PROGRAM = options.arg("program", type=Path, help="program file in readable form (see src/metamodels/examples/)")
OUT = options.arg("-o", "--out", type=Path, required=True, help="output model file (.safetensors)")
JSON = options.arg("--json", action="store_true", help="print the result as JSON")
CHECKPOINT = options.arg("--checkpoint", type=Path, help="meta-model checkpoint directory (default: the shipped one; for "
                  "decompile, the one for the model's weights: Tracr's basis, or dense without residual labels)")

SPLIT = options.arg("--split", default="test", choices=("train", "val", "test"), help="zoo split (default test)")
HPARAMS_JSON = options.arg("--json", type=Path, help="also write the summary to this JSON file")


def _device(what: str = "the meta-model runs", zoo: bool = False) -> Callable[[argparse.ArgumentParser], None]:
    """The --device argument (built lazily: it imports torch): where ``what``; default ZOO_DEVICE if ``zoo``."""

    def add(p: argparse.ArgumentParser) -> None:
        from typing import get_args

        from metamodels import devices

        default = devices.ZOO_DEVICE if zoo else devices.DEVICE
        p.add_argument("--device", choices=get_args(devices.Device), default=default,
                       help=devices.DEVICE_HELP.replace("the meta-model runs", what) + f" (default {default})")  # fmt: skip

    return add


DEVICE = _device()
BASE_DEVICE = _device("the zoo's models train (float32; recorded in each row's provenance; a CPU build is "
                      "bit-for-bit reproducible, a GPU one need not be)", zoo=True)

# command: (help line, description or None, its arguments). Only the chosen command's arguments are built, so a
# command imports only its stages: torch and JAX load slowly.
COMMANDS: dict[str, options.Command] = {
    "sample": ("sample random, valid, non-trivial, deduplicated RASP or Python programs", None, [
        options.arg("--n", type=int, default=5, help="number of programs (default 5)"),
        options.arg("--language", choices=("rasp", "python"), default="rasp", help="rasp (rasp-gen; the default) or "
             "python (paper 002's loops; --vocab gives its integer inputs, --max-seq-len, --loops; --ops is ignored)"),
        _config("python.generate:GeneratorConfig", only=("min_loops",)),
        options.arg("--seed", type=int, default=0, help="random seed; program i of seed s is always the same (default 0)"),
        _config("dataset.sampling:SamplerConfig"),
        options.arg("--stats", action="store_true", help="print realised histograms and rejection counts instead"),
        options.arg("-o", "--out", type=Path, help="write each program to OUT/program_<index>.rasp instead of printing"),
        options.arg("--config", type=Path, help='JSON file of SamplerConfig fields, e.g. {"op_weights": {"Map": 1, '
             '"Aggregate": 2}, "numerical": {"Map": 0.5}, "predicate_weights": {"EQ": 1}}')]),
    "compile": ("compile a RASP program file with Tracr into a safetensors model file", None, [
        PROGRAM, OUT, _config("dataset.sampling:SamplerConfig", only=("vocab", "max_seq_len")),
        options.arg("--causal", action="store_true", help="compile a causally masked model"),
        options.arg("--mlp-exactness", type=int, help="Tracr's MLP approximation parameter (default: by length)"),
        options.arg("--with-source", action="store_true", help="also store the program text in the model file "
             "(provenance; by default a model file does not carry its program)")]),
    "run": ("run a model file on one input sequence and print the decoded output", None, [
        MODEL, options.arg("tokens", nargs="+", help="input tokens, e.g. 3 1 2"),
        options.arg("--program", action="store_true", help="also print the RASP evaluation of the program stored in the "
             "model file (compile --with-source)")]),
    "demo": ("compile paper 000's sort program and a sampled one, run both, check them against RASP", None, [
        options.arg("--seed", type=int, default=0, help="seed of the sampled program (default 0)"),
        options.arg("--ops", type=options.parse_range, default=(4, 6), help="ops of the sampled program (default 4-6)")]),
    "dataset": ("build and inspect (program, weights) datasets in sharded Parquet", None, [options.subcommands("dataset_command", {
        "build": ("build (or resume) a dataset", "Sample, compile, check and store N deduplicated examples as Parquet "
                  "shards. Run the same command again to resume.", [
            options.arg("out", type=Path, help="output directory"), _config("dataset.examples:BuildConfig"),
            options.arg("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (default: all cores)"),
            options.arg("--ray", metavar="ADDRESS", help="run on an existing Ray cluster (e.g. 'auto' or 'ray://host:10001')")]),
        "stats": ("tables and plots of a dataset (paper 000, Figures 6-7)", None, [
            options.arg("directory", type=Path, help="dataset directory"),
            options.arg("--plot", type=Path, help="PNG file for the plots (default DIRECTORY/stats.png)")])})]),
    "zoo": ("build and inspect zoos of transformers trained by gradient descent on programs", None, [options.subcommands("zoo_command", {
        "build": ("build (or resume) a zoo", "Sample N distinct programs (RASP or Python), train a small transformer on "
                  "each one's input/output behaviour until its held-out token accuracy reaches the bar, and store every "
                  "view (checkpoint) as Parquet shards. With --kind cnn: train N small CNNs with recorded "
                  "hyperparameters (--family, --epochs; --n, --seed and --shard-size mean runs) and store their "
                  "checkpoints. Run the same command again to resume.", [
            options.arg("out", type=Path, help="output directory"),
            options.arg("--kind", choices=("transformer", "cnn"), default="transformer",
                        help="transformer: base models trained on programs (the default); cnn: paper 000 App. A's CNNs"),
            _config("zoo.build:ZooConfig"), _config("zoo.cnn_zoo:CnnZooConfig", only=("family", "epochs")),
            _config("zoo.trainer:TrainerConfig"), _config("zoo.tasks:DataConfig"),
            options.arg("--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (default: all cores)"),
            options.arg("--ray", metavar="ADDRESS", help="run on an existing Ray cluster (e.g. 'auto' or 'ray://host:10001')"),
            BASE_DEVICE]),
        "stats": ("tables and plots of a zoo", None, [
            options.arg("directory", type=Path, help="zoo directory"),
            options.arg("--plot", type=Path, help="PNG file for the plots (default DIRECTORY/stats.png)")]),
        "check": ("re-check every stored model against its program", "Run every stored model on its held-out inputs "
                  "and score it against its program's own evaluation (parsed back from the stored text): the accuracy "
                  "must equal the stored one and reach the zoo's bar. Exit status 0 only if every model does.", [
            options.arg("directory", type=Path, help="zoo directory")]),
        "export": ("write one model of a zoo as a model file (no program text inside)", None, [
            options.arg("directory", type=Path, help="zoo directory"),
            options.arg("id", help="model id (a row's id, e.g. rasp-0-17/v0; a program id takes its view 0)"), OUT])})]),
    "mapping": ("model mapping (paper 002): meta-models that read trained transformers and write their programs", None, [
        options.subcommands("mapping_command", {
            "train": ("train a mapping meta-model on a zoo's train split", "Train (weights of a trained transformer -> "
                      "program tokens) on every view of every train-split model of a zoo; write one checkpoint "
                      "(safetensors + JSON).", [
                options.arg("zoo", type=Path, help="zoo directory (metamodels zoo build)"),
                options.arg("-o", "--out", type=Path, required=True, help="output checkpoint (.safetensors)"),
                _config("mapping.training:MappingConfig")]),
            "evaluate": ("token accuracy, exact, functional and agreement on a zoo split", "Greedy-decode every model "
                         "of a split (default test: program-disjoint from train) and score the programs, overall, by "
                         "program size and by base-model size.", [
                options.arg("checkpoint", type=Path, help="mapping checkpoint (.safetensors)"),
                options.arg("zoo", type=Path, help="zoo directory"),
                SPLIT,
                options.arg("--blind", action="store_true", help="zero every weight: what the decoder writes from its "
                            "prior alone (the random-weights baseline)"),
                options.arg("--limit", type=int, help="evaluate at most this many models"),
                options.arg("--beam", type=int, help="decode this many grammar-constrained candidates per model and "
                            "score the one agreeing most with the model on --probes random inputs, searched with the "
                            "--pool and one-substitution neighbours (0: the pool alone, no weights read; default: "
                            "paper 002's greedy, unconstrained decoding)"),
                options.arg("--probes", type=int, help="random inputs the choice by agreement runs (with --beam; "
                            "default: as decompile)"),
                options.arg("--pool", type=int, default=0, help="with --beam: also search this many train-split "
                            "programs (the black box's pool; default 0)"),
                options.arg("--rank", type=int, default=0, help="with --pool: search only the pool's N programs the "
                            "meta-model finds most likely for each model's weights (default 0: the whole pool)"),
                options.arg("--no-expand", dest="expand", action="store_false", help="with --beam: do not also try "
                            "the best candidates' one-substitution neighbours"),
                options.arg("--widen", type=int, default=None, help="with --beam: screen the best 8 x N again on "
                            "16 x N other inputs before keeping 8 (1: one screen, as before stop 38; default: as "
                            "decompile)"),
                options.arg("--json", type=Path, help="write the summary to this JSON file")]),
            "baseline": ("the black-box baseline: the pool program that best matches a model's behaviour", "For each "
                         "model of a split, run it on random probe inputs and answer the program of a seeded pool of "
                         "train-split programs that agrees with it most; scored like a decoded program.", [
                options.arg("zoo", type=Path, help="zoo directory"),
                SPLIT,
                options.arg("--pool", type=int, default=500, help="candidate programs (default 500)"),
                options.arg("--probes", type=int, default=16, help="probe inputs per model (default 16)"),
                options.arg("--seed", type=int, default=0, help="seed of the pool and the probes (default 0)"),
                options.arg("--limit", type=int, help="evaluate at most this many models"),
                options.arg("--json", type=Path, help="write the summary to this JSON file")]),
            "plot": ("plot evaluation summaries side by side, by program size and base-model size", None, [
                options.arg("summaries", type=Path, nargs="+", help="--json files of mapping evaluate / baseline"),
                options.arg("--labels", help="comma-separated curve labels (default: the file names)"),
                options.arg("-o", "--out", type=Path, required=True, help="output PNG")])})]),
    "hparams": ("hyperparameters from CNN weights (paper 000, App. A): train, evaluate, baseline, predict", None, [
        options.subcommands("hparams_command", {
            "train": ("train a hyperparameter meta-model on a CNN zoo's train split", "Read every checkpoint of the "
                      "train split (zoo build --kind cnn), predict each of the zoo family's labels (skb: activation, "
                      "init, optimizer; ejr: also dataset, batch size, augmentation) with one head each; keep the step "
                      "with the best mean validation accuracy in OUT.", [
                options.arg("zoo", type=Path, help="CNN zoo directory"),
                options.arg("-o", "--out", type=Path, required=True, help="output checkpoint (.safetensors)"),
                _config("hparams.training:HparamsConfig")]),
            "evaluate": ("accuracy per hyperparameter of a checkpoint on a CNN zoo split", None, [
                options.arg("checkpoint", type=Path, help="hparams checkpoint (.safetensors)"),
                options.arg("zoo", type=Path, help="CNN zoo directory"), SPLIT, HPARAMS_JSON, DEVICE]),
            "baseline": ("fit and score a classical baseline on a CNN zoo", "majority: the train split's most common "
                         "class; statnn: per-layer weight statistics into gradient boosting (scikit-learn); "
                         "ours+boost: an ours checkpoint's (--ours) class probabilities averaged with gradient "
                         "boosting's over ours' layer summaries, fitted on the same training runs.", [
                options.arg("zoo", type=Path, help="CNN zoo directory"),
                options.arg("--method", choices=("majority", "statnn", "ours+boost"), default="statnn",
                            help="default statnn"),
                options.arg("--ours", type=Path, help="ours+boost: the ours checkpoint (hparams train, same "
                            "--train-runs and --seed)"),
                options.arg("--train-runs", type=int, help="fit on this many training runs only (default all)"),
                options.arg("--seed", type=int, default=0, help="seed of the fit and the --train-runs subset (default 0)"),
                SPLIT, HPARAMS_JSON]),
            "predict": ("predict how one CNN was trained, with probabilities", None, [
                options.arg("checkpoint", type=Path, help="hparams checkpoint (.safetensors)"),
                options.arg("cnn", type=Path, help="CNN file (zoo export of a CNN zoo; weights named convs.<i>.weight/"
                            "bias, head.weight/bias)"), JSON, DEVICE])})]),
    "export": ("write a model file in another library's layout (TransformerLens)", "Write a compiled, densified or "
               "trained model file as a TransformerLens directory: model.safetensors (the HookedTransformer state dict) "
               "and config.json (the HookedTransformerConfig arguments and this model's vocabularies and settings). "
               "Load it with metamodels.transformer.lens.to_hooked_transformer or read it back with `metamodels import`.",
               [MODEL, options.arg("--to", choices=("transformer-lens",), default="transformer-lens",
                                   help="target layout (default transformer-lens)"),
                options.arg("-o", "--out", type=Path, required=True, help="output directory")]),
    "import": ("read a TransformerLens export or a Hugging Face GPT-2 checkpoint into a model file", "DIRECTORY is a "
               "directory written by `metamodels export` (identical tensors back) or a Hugging Face GPT-2 checkpoint "
               "(config.json + model.safetensors; causal, pre-LayerNorm, a next-token head over its vocabulary).", [
        options.arg("directory", type=Path, help="TransformerLens export or Hugging Face GPT-2 checkpoint directory"),
        OUT, options.arg("--vocab", type=Path, help="GPT-2 only: token list file, one token per line in id order "
                         "(numbers read as numbers; default: the token ids 0..V-1)")]),
    "verify": ("check a program against a model file", "Run the program (RASP evaluation) and the model on every input "
               "(or a large random set) and compare, then recompile the program and compare weights up to permutations. "
               "Exit status 0 only if the program verifies (the README states the rule), else 1. A trained transformer "
               "is only approximately a program: for one, the program (RASP, or Python starting with `def`) and the "
               "model run on 256 seeded random inputs and the agreement rate is reported; exit 0 only if it is at least "
               "0.95 (the zoo's training bar) and its balanced rate (the mean over the model's output values of the "
               "share matched) at least 0.9. That is a measurement, not a proof.",
               [PROGRAM, MODEL, _config("decompilation.verification:VerifyConfig"), JSON]),
    "densify": ("make a model file's weights dense (PCA compression + random rotation)", "Compress the residual stream by "
                "PCA to the smallest width keeping the decoded outputs unchanged on at least --fidelity of held-out "
                "inputs, then rotate randomly. The result is an ordinary model file.",
                [MODEL, OUT, _config("transformer.densification:DensifyConfig")]),
    "decompile": ("decompile a model file into a RASP program with the meta-model", "Read a model's weights with a "
                  "trained meta-model and print the program it implements: a beam of candidates (grammar-constrained), "
                  "checked against the model in order of score; the first that verifies is returned. --greedy: fast. "
                  "A trained transformer (a zoo model, an imported GPT-2) is read by the model-mapping meta-model "
                  "(--checkpoint: a mapping checkpoint file): a beam of --beam programs (default 8) and the programs the "
                  "meta-model was trained on, with their one-substitution neighbours, are searched by agreement with "
                  "the model, and the best one's agreement is measured on fresh inputs.",
                  [MODEL, CHECKPOINT, _config("decompilation.pipeline:DecompileConfig"), JSON, DEVICE,
                   options.arg("--verify", dest="verify", action="store_const", const=True,
                               help="verify candidates (the default since 0.6; kept for older scripts)"),
                   options.arg("--language", choices=("rasp", "python"), default="rasp", help="trained models only: "
                               "the language to write (default rasp); compiled models are always RASP"),
                   options.arg("--max-length", type=int, default=None, help="trained models only: probe inputs at "
                               "most this long (default: the model's context, at most 128; set it to the lengths the "
                               "model was trained on when its context is longer)")]),
    "train": ("train a meta-model on a dataset", "Train a meta-model (weights -> program tokens) on the train split with "
              "validation, early stopping, loss curves and the best checkpoint in OUT/checkpoint. Rerun to resume.",
              [_config("meta.training:TrainConfig")]),
    "evaluate": ("evaluate a meta-model checkpoint on a dataset split", "Greedy-decode every model of a split; report "
                 "exact, functional, teacher-forced and per-field accuracy by number of ops (optionally verified@k).", [
        CHECKPOINT, DEVICE,
        options.arg("--data", type=Path, help="dataset directory (not needed for --split lib or written)"),
        _config("evaluation.evaluate:EvaluateConfig"),
        options.arg("--programs", action="store_true", help="print every program, truth vs decoded"),
        options.arg("--json", type=Path, help="write the full report (every example) to this JSON file"),
        options.arg("--plot", type=Path, help="write accuracy by number of ops to this PNG")]),
}
# fmt: on


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = options.Parser(prog="metamodels", description="Sample RASP programs, compile them with Tracr, and decompile "
                     "transformers back into programs with a trained meta-model.")  # fmt: skip
    options.add_commands(parser, "command", COMMANDS, chosen=next((a for a in argv if not a.startswith("-")), ""))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.getLogger("absl").setLevel(logging.ERROR)  # Tracr warns once per SequenceMap(f, x, x) it builds
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    try:
        return globals()[f"_{args.command}"](args)
    except (MetamodelsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _sample(args: argparse.Namespace) -> int:
    from metamodels.dataset import sampling
    from metamodels.python import generate

    if args.language == "python":
        if args.config:
            raise MetamodelsError("--config holds RASP sampler fields; it does not apply to --language python")
        fields = {"values": args.vocab, "max_seq_len": args.max_seq_len}
        py = options.config_from(args, generate.GeneratorConfig, {k: v for k, v in fields.items() if v is not None})
        found, rejected = generate.sample_unique(py, args.n, args.seed, progress=sys.stderr.isatty() or args.n >= 50)
        return _print_samples(args, found, rejected, py, "py")
    config = options.config_from(args, sampling.SamplerConfig, sampling.read_config(args.config) if args.config else {})
    samples, rejected = sampling.sample_unique(config, args.n, args.seed, progress=sys.stderr.isatty() or args.n >= 50)
    return _print_samples(args, samples, rejected, config, "rasp")


def _print_samples(args: argparse.Namespace, samples: Sequence, rejected: dict, config: object, suffix: str) -> int:
    from metamodels.dataset import sampling
    from metamodels.python import generate

    if args.stats:
        describe = generate.describe_stats if suffix == "py" else sampling.describe_stats
        print(describe(samples, rejected, config, args.seed))  # type: ignore[arg-type]
    for s in samples if not args.stats else ():
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"program_{s.index}.{suffix}").write_text(s.describe())
        else:
            print(s.describe())
    return 0


def _compile(args: argparse.Namespace) -> int:
    from metamodels.dataset import sampling
    from metamodels.rasp import text
    from metamodels.transformer import compiler, modelfile

    s, program = options.config_from(args, sampling.SamplerConfig), text.read_program(args.program)
    model = compiler.compile_program(program, s.vocab, s.max_seq_len, causal=args.causal, mlp_exactness=args.mlp_exactness)  # fmt: skip
    modelfile.save(model, args.out, with_source=args.with_source)
    print(f"{args.out}: {model.describe()}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from metamodels.dataset import build, examples, stats

    if args.dataset_command == "stats":
        print(stats.report(args.directory, args.plot or args.directory / "stats.png"))
        return 0
    config = options.config_from(args, examples.BuildConfig)
    report = build.build_dataset(args.out, config, workers=args.workers, ray_address=args.ray, progress=True)
    print(report.describe(args.out))
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from metamodels.zoo import build, cnn_zoo, stats, tasks, trainer

    cnn = args.kind == "cnn" if args.zoo_command == "build" else cnn_zoo.is_cnn_zoo(args.directory)
    kind = cnn_zoo if cnn else stats  # both: report(directory, plot), check(directory) -> .describe(), .ok
    if args.zoo_command == "stats":
        print(kind.report(args.directory, args.plot or args.directory / "stats.png"))
        return 0
    if args.zoo_command == "check":
        checked = kind.check(args.directory, progress=True)
        print(checked.describe(args.directory))
        return 0 if checked.ok else 1
    if args.zoo_command == "export" and cnn:
        row = cnn_zoo.export(args.directory, args.id, args.out)
        print(f"{args.out}: a CNN of {row['n_params']} parameters ({row['id']}; its hyperparameters are not in the file)")
        return 0
    if args.zoo_command == "export":
        model = stats.export(args.directory, args.id, args.out)
        print(f"{args.out}: {model.config.n_params} parameters, trained on {model.metadata['program_id']}")
        return 0
    if cnn:
        shared = options.given(args, cnn_zoo.CnnZooConfig)
        mixed = [flag for cls in (build.ZooConfig, trainer.TrainerConfig, tasks.DataConfig)
                 for flag in options.given(args, cls) if flag not in shared]  # fmt: skip
        if mixed:
            raise MetamodelsError(f"{mixed[0]} is an option of transformer zoos, not of --kind cnn")
        report = cnn_zoo.build_cnn_zoo(args.out, options.config_from(args, cnn_zoo.CnnZooConfig),
                                       workers=args.workers, ray_address=args.ray, device=args.device,
                                       progress=True)  # fmt: skip
        print(report.describe(args.out))
        return 0
    if args.family or args.epochs:
        raise MetamodelsError("--family and --epochs are options of --kind cnn")
    config = options.config_from(args, build.ZooConfig, trainer=options.config_from(args, trainer.TrainerConfig),
                                 data=options.config_from(args, tasks.DataConfig))  # fmt: skip
    built = build.build_zoo(args.out, config, workers=args.workers, ray_address=args.ray, device=args.device,
                            progress=True)  # fmt: skip
    print(built.describe(args.out))
    return 0


def _hparams(args: argparse.Namespace) -> int:
    from metamodels.hparams import training

    if args.hparams_command == "predict":
        predicted = training.predict(args.checkpoint, args.cnn, args.device)
        if args.json:
            print(json.dumps(predicted, indent=1))
        else:
            for label, probs in predicted.items():
                print(f"{label:>13}: " + ", ".join(f"{c} {p:.2f}" for c, p in list(probs.items())[:3]))
        return 0
    if args.hparams_command == "train":
        record = training.train(args.zoo, args.out, options.config_from(args, training.HparamsConfig))
        print(f"{args.out}: {record['config']['model']} on {record['train_runs']} runs "
              f"({record['train_checkpoints']} checkpoints); best validation at step {record['val']['step']}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in record["val"].items() if k != "step"))  # fmt: skip
        return 0
    if args.hparams_command == "baseline":
        from metamodels.hparams import baselines

        summary = baselines.evaluate(args.zoo, args.method, args.split, args.train_runs, args.seed, args.ours)
    else:
        summary = training.evaluate(args.checkpoint, args.zoo, args.split, args.device)
    print(f"{summary['method']} ({summary['train_runs']} training runs) on {summary['split']}: "
          f"{summary['checkpoints']} checkpoints of {summary['runs']} runs; accuracy "
          + ", ".join(f"{k} {v:.3f}" for k, v in summary["accuracy"].items()))  # fmt: skip
    if args.json:
        from metamodels import artifacts

        artifacts.write_text(args.json, json.dumps(summary, indent=1))
    return 0


def _mapping(args: argparse.Namespace) -> int:
    from metamodels.mapping import training

    if args.mapping_command == "train":
        meta = training.train(args.zoo, args.out, options.config_from(args, training.MappingConfig))
        print(f"{args.out}: {meta['language']} mapping meta-model, trained on {meta['train_models']} models "
              f"({meta['train_programs']} programs), final loss {meta['log'][-1]['loss']}")  # fmt: skip
        return 0
    if args.mapping_command == "plot":
        from metamodels.mapping import report

        labels = args.labels.split(",") if args.labels else [p.stem for p in args.summaries]
        if len(labels) != len(args.summaries):
            raise MetamodelsError(f"--labels gives {len(labels)} labels for {len(args.summaries)} summaries")
        report.plot(args.summaries, labels, args.out)
        print(f"{args.out}: {', '.join(report.PLOTTED)} by program size and by base-model parameters")
        return 0
    if args.mapping_command == "baseline":
        from metamodels.mapping import blackbox

        summary = blackbox.evaluate(args.zoo, args.split, args.pool, args.probes, args.seed, args.limit)
    else:
        summary = training.evaluate(args.checkpoint, args.zoo, args.split, blind=args.blind, limit=args.limit,
                                    beam=args.beam, pool=args.pool, expand=args.expand, rank=args.rank,
                                    **({"probes": args.probes} if args.probes is not None else {}),
                                    **({"widen": args.widen} if args.widen is not None else {}))
    print(training.describe(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from metamodels.transformer import lens

    out = lens.export(_load_model(args.model), args.out)
    print(f"{out}: TransformerLens state dict ({lens.WEIGHTS}) and config ({lens.CONFIG})")
    return 0


def _read_directory(directory: Path, vocab: Path | None = None) -> CompiledModel | TrainedModel:
    """A Hugging Face GPT-2 checkpoint (``vocab``: its token list file) or a TransformerLens export directory."""
    from metamodels.transformer import huggingface, lens

    if huggingface.is_checkpoint(directory):
        return huggingface.load_gpt2(directory, huggingface.read_vocab(vocab) if vocab else None)
    if vocab:
        raise MetamodelsError("--vocab applies to Hugging Face GPT-2 checkpoints; a TransformerLens export has its own")
    if not (Path(directory) / lens.CONFIG).is_file():
        raise MetamodelsError(f"{directory}: a directory without {lens.CONFIG}, so neither a Hugging Face GPT-2 "
                              "checkpoint nor a TransformerLens export (or pass a model file)")  # fmt: skip
    return lens.read_export(directory)


def _load_model(path: Path) -> CompiledModel | TrainedModel:
    """A model file, or a directory `metamodels import` reads (read the same way, token ids as a GPT-2's values)."""
    from metamodels.transformer import modelfile

    return _read_directory(path) if Path(path).is_dir() else modelfile.load_any(path)


def _import(args: argparse.Namespace) -> int:
    from metamodels.transformer import modelfile

    model = _read_directory(args.directory, args.vocab)
    modelfile.save(model, args.out)
    print(f"{args.out}: {model.n_params} parameters from {args.directory}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from metamodels.decompilation import verification
    from metamodels.rasp import text
    from metamodels.transformer import trained

    model = _load_model(args.model)
    if isinstance(model, trained.TrainedModel):
        from metamodels.mapping import decompile as mapping

        measured = mapping.agreement(mapping.read_program(args.program), model)
        print(
            json.dumps(dataclasses.asdict(measured) | {"agrees": measured.agrees}) if args.json else measured.describe()
        )
        return 0 if measured.agrees else 1
    program = text.read_program(args.program)
    config = options.config_from(args, verification.VerifyConfig)
    report = verification.verify(program, model, **dataclasses.asdict(config), progress=sys.stderr.isatty())
    print(json.dumps(report.to_json(), indent=1, default=str) if args.json else report.describe())
    return 0 if report.holds() else 1


def _densify(args: argparse.Namespace) -> int:
    from metamodels.transformer import densification, modelfile

    c, model = options.config_from(args, densification.DensifyConfig), modelfile.load(args.model)
    result = densification.densify(model, target_fidelity=c.fidelity, d_model=c.d_model, seed=c.seed)
    modelfile.save(result.model, args.out)
    print(result.describe(args.out))
    return 0


def _decompile(args: argparse.Namespace) -> int:
    from metamodels.decompilation import pipeline
    from metamodels.transformer import trained

    model = _load_model(args.model)
    if isinstance(model, trained.TrainedModel):
        from metamodels.mapping import decoding
        from metamodels.mapping import decompile as mapping

        config = options.config_from(args, pipeline.DecompileConfig)
        beam = 1 if config.greedy else decoding.BEAM if args.beam is None else config.beam  # a trained model's default
        longest = decoding.PROBE_LENGTH if args.max_length is None else args.max_length
        if longest < 1:
            raise MetamodelsError(f"--max-length must be at least 1, got {longest}")
        mapped = mapping.decompile(model, args.checkpoint, args.language, beam=beam, longest=longest)
        print(json.dumps(mapped.to_json(), indent=1, default=str) if args.json else mapped.describe())
        return 0 if mapped.text is not None else 1
    if args.language != "rasp":
        raise MetamodelsError("a compiled model decompiles to RASP only; --language python applies to trained models")
    config = options.config_from(args, pipeline.DecompileConfig)
    result = pipeline.decompile(model, checkpoint=args.checkpoint, device=args.device, **config.arguments())
    if result.text is None and not args.json:
        raise MetamodelsError("the meta-model produced no complete program within its length limit")
    print(json.dumps(result.to_json(), indent=1, default=str) if args.json else
          result.describe(default_checkpoint=args.checkpoint is None, repair=config.repair))  # fmt: skip
    return 0


def _train(args: argparse.Namespace) -> int:
    from metamodels.meta import training

    data = args.data[0] if len(args.data) == 1 else tuple(args.data)
    cfg = options.config_from(args, training.TrainConfig, data=data, **({"minutes": None} if args.steps else {}))
    out = Path(cfg.out)
    checkpoint = training.train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, every rank runs this command
        print(f"best checkpoint: {checkpoint}; log {out / training.LOG}; curves {out / 'curves.png'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from metamodels.decompilation import pipeline
    from metamodels.evaluation import evaluate, reporting

    config = options.config_from(args, evaluate.EvaluateConfig)
    report = evaluate.evaluate(pipeline.load_metamodel(args.checkpoint, args.device), args.data, config)
    if config.split in ("lib", "written") or args.programs:
        print(reporting.format_programs(report))
    print(reporting.format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.plot:
        reporting.plot(report, args.plot)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from metamodels import demo

    print(demo.run(args.seed, args.ops))
    return 0


def _run(args: argparse.Namespace) -> int:
    from metamodels.rasp import text
    from metamodels.transformer import forward, trained

    model = _load_model(args.model)
    xs = forward.parse_tokens(model, args.tokens)
    print(" ".join(map(forward.show, forward.run(model, [xs])[0])))
    if args.program and isinstance(model, trained.TrainedModel) and "program_text" in model.metadata:
        print(model.metadata["program_text"], "(the program it was trained on)")
    elif args.program and not isinstance(model, trained.TrainedModel) and model.program_text:
        evaluated = text.read_program(args.model, model.program_text).evaluate(xs)
        print(" ".join(map(forward.show, evaluated)), "(RASP evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
