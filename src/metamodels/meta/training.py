"""Train a meta-model on a dataset directory: the visible loop (nanoGPT style).

``train(TrainConfig(...))`` encodes the train and validation splits, then runs
batch -> forward -> loss -> backward -> clip -> AdamW step, with linear warmup and
cosine decay. Every ``eval_every`` steps it measures teacher-forced loss and
accuracy on validation examples, logs a JSON line, redraws the curves (PNG),
saves the best checkpoint (by validation loss) and the resumable training state,
and stops early after ``patience`` evaluations without improvement. A run killed
at any point resumes from its last saved state with the same command.

With a time budget (``minutes``), the schedule's length is fixed after timing
the first steps, so warmup and decay fit the budget; it is saved in the state,
so a resumed run keeps the same schedule.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from metamodels import artifacts, devices, options
from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.meta import batching, metamodel, parallel, weight_encoding
from metamodels.rasp import tokens as tokens_mod
from metamodels.transformer import densification

STATE = "train_state.safetensors"  # model and optimizer tensors; loop state and config as JSON metadata
LEGACY_STATE = "train_state.pt"  # a pickle (metamodels < 0.5): never loaded
LOG = "log.jsonl"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: str | tuple[str, ...] = options.option(
        help="dataset directory (from `metamodels dataset build`); repeat to train on several (splits concatenated)",
        repeat=True,
    )
    out: str = options.option(help="run directory (checkpoint, log.jsonl, curves.png, state)")
    preset: str = options.option("small", help="model size: tiny, small (2 CPU cores) or paper")
    encoding: Literal["rows", "flat"] = options.option(
        "rows", help="weight encoding: rows (structure-aware) or flat (paper)"
    )
    batch_size: int = options.option(32, help="examples per step")
    lr: float = options.option(1e-3, help="peak learning rate")
    weight_decay: float = 1e-4
    warmup: int = 200
    steps: int | None = options.option(None, help="number of steps (overrides the time-fitted schedule)")
    minutes: float | None = options.option(60.0, help="time budget in minutes")
    clip: float = 1.0
    eval_every: int = options.option(250, help="steps between validations")
    eval_examples: int = 512
    patience: int = 8
    seed: int = options.option(0, help="seed of initialisation and data order")
    limit: int | None = options.option(None, help="use only the first N training examples (of each dataset)")
    augment: bool = options.option(False, help="relabel residual directions randomly per example (rows)")
    threads: int | None = options.option(None, help="torch CPU threads (default: torch's choice)")
    cache_dir: str | None = options.option(
        None, flag="--cache", help="where encoded examples are cached (default OUT/cache)"
    )
    init: str | None = options.option(
        None, help="fine-tune: start from this checkpoint's weights, architecture and encoding (--preset and "
        "--encoding are then ignored); tokens added to the vocabulary since it was trained are learned",
    )  # fmt: skip
    basis: Literal["stored", "canonical"] | None = options.option(
        None, help="rows encoding: read weights in their stored residual basis (Tracr's; default) or in the "
        "canonical basis read off the weights, which any rotation leaves unchanged (for dense models; also with --init)",
    )  # fmt: skip
    dense_data: tuple[str, ...] = options.option(
        (), repeat=True,
        help="also train on this dataset's models made dense (PCA to --dense-fidelity, random rotation, hidden units "
        "and heads permuted; seeded per example by --seed); repeatable",
    )  # fmt: skip
    dense_fidelity: float = options.option(densification.FIDELITY, help="fidelity bar of --dense-data")
    dense_limit: int | None = options.option(
        None, help="use only the first N training examples of each --dense-data (default --limit)"
    )
    device: devices.Device = options.option(devices.DEVICE, help=devices.DEVICE_HELP + " (CUDA trains in "
                                             "bfloat16/float16 autocast; checkpoints load anywhere)")  # fmt: skip
    ray: str | None = options.option(
        None, metavar="ADDRESS", help="train data-parallel on a Ray cluster (Ray Train; 'local' starts one here) "
        "with --workers processes; OUT must be on storage every node sees",
    )  # fmt: skip
    workers: int = options.option(2, help="--ray: data-parallel training processes (one GPU each with --device cuda)")

    def __post_init__(self) -> None:
        if (self.basis is not None or self.dense_data) and self.encoding != "rows":
            raise MetamodelsError("--basis and --dense-data need the rows encoding")
        if self.augment and self.encoding != "rows":
            raise MetamodelsError("--augment relabels residual directions and needs the rows encoding")
        if self.preset not in metamodel.PRESETS:
            raise MetamodelsError(f"unknown preset {self.preset!r}; expected one of {sorted(metamodel.PRESETS)}")
        if self.steps is None and self.minutes is None:
            raise MetamodelsError("give a number of steps or a time budget in minutes")
        for name in ("batch_size", "eval_every", "steps", "limit", "dense_limit", "threads", "eval_examples", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.minutes is not None and not self.minutes > 0:
            raise MetamodelsError(f"--minutes must be positive, got {self.minutes}")
        if not self.lr > 0 or not 0.0 < self.dense_fidelity <= 1.0:
            raise MetamodelsError(
                f"--lr must be positive and --dense-fidelity in (0, 1], got {self.lr}, {self.dense_fidelity}"
            )


def _dirs(cfg: TrainConfig) -> list[str]:
    return [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)


def encoding_config(name: str, basis: str | None = None) -> weight_encoding.EncodingConfig:
    """Default sizes of each encoding: rows (32 values per token), flat (65,536 weights in 128 chunks of 512).

    The rows encoding in the canonical basis skips rows under 1% of their matrix's
    largest entry (PCA-compressed weights leak a little into every direction).
    """
    if name == "flat":
        return weight_encoding.EncodingConfig("flat", width=512, flat_size=65536, max_tokens=128)
    if basis == "canonical":
        return weight_encoding.EncodingConfig("rows", basis="canonical", min_row=CANONICAL_MIN_ROW)
    return weight_encoding.EncodingConfig(name)  # type: ignore[arg-type]


CANONICAL_MIN_ROW = 0.01
DENSE_HELDOUT = 300  # held-out inputs on which training examples' densification meets its fidelity bar


def program_loss(model: torch.nn.Module, batch: batching.Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over real next tokens, hits [B, T-1], real [B, T-1]; see batching.teacher_forced).

    ``model``: a MetaModel or its DistributedDataParallel wrapper; the batch may be on the CPU.
    """
    logits, hits, real = batching.teacher_forced(model, batch.values, batch.tags, batch.weight_mask, batch.program)
    target = batch.program[:, 1:].to(logits.device)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=0)
    return loss, hits, real


@torch.no_grad()
def teacher_forced(model: metamodel.MetaModel, data: batching.EncodedSet, batch_size: int = 64) -> dict:
    """Validation loss, per-token accuracy and whole-program accuracy under teacher forcing."""
    model.eval()
    losses, correct, total, programs_ok = [], 0, 0, 0
    for index in batching.in_order(data, batch_size):
        batch = batching.collate(data, index)
        loss, hits, real = program_loss(model, batch)
        hit = hits | ~real
        losses.append(float(loss) * int(real.sum()))
        correct += int((hit & real).sum())
        total += int(real.sum())
        programs_ok += int(hit.all(dim=1).sum())
    model.train()
    return {
        "loss": sum(losses) / max(1, total),
        "token_acc": correct / max(1, total),
        "program_acc": programs_ok / max(1, len(data)),
    }


def provenance(cfg: TrainConfig, extra: dict) -> dict:
    manifests = [json.loads((Path(d) / "manifest.json").read_text()) for d in _dirs(cfg)]
    return {
        "train_config": dataclasses.asdict(cfg),
        "datasets": [{"path": d, "config": m.get("config")} for d, m in zip(_dirs(cfg), manifests)],
        "package_version": artifacts.VERSION,
        "git_commit": artifacts.git_commit(),
        "torch_version": torch.__version__,
        "program_vocab_version": tokens_mod.VOCAB.version,
        **extra,
    }


def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Run (or resume) training; returns the checkpoint directory (``out/checkpoint``).

    Under ``torchrun`` (or Ray Train) every rank runs this: each reads its own shards of the train split
    (``batching.load_split``'s ``part``), gradients are averaged by DistributedDataParallel, and rank 0
    alone validates and writes the checkpoint, log and state. The effective batch is ranks x
    ``batch_size``; the learning rate is used as given (scale it yourself, e.g. linearly, for more ranks).
    """
    if cfg.ray is not None:
        return train_on_ray(cfg, progress=progress)
    with parallel.join(cfg.device) as (world, dev):
        return _train(cfg, world, dev, progress=progress and world.main)


def _train(cfg: TrainConfig, world: parallel.World, dev: torch.device, *, progress: bool) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if (out / LEGACY_STATE).exists():  # refused before any work is done
        raise MetamodelsError(f"{out / LEGACY_STATE}: a pickled training state is never loaded (it can run code); "
                              "delete it to start again, or train into another --out")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    start = metamodel.load_checkpoint(cfg.init)[0].train() if cfg.init else None
    if start is not None:
        start.token_bias.zero_()  # tokens newer than the checkpoint's vocabulary are learned here
    encoding = encoding_config(cfg.encoding, cfg.basis)
    if start is None:
        mcfg = metamodel.MetaModelConfig(**metamodel.PRESETS[cfg.preset], encoding=encoding)
    elif cfg.basis is not None:  # fine-tune to read weights in another residual basis
        mcfg = dataclasses.replace(
            start.cfg, encoding=dataclasses.replace(start.cfg.encoding, basis=encoding.basis, min_row=encoding.min_row)
        )
        start.cfg = mcfg
    else:
        mcfg = start.cfg
    cache = cfg.cache_dir or str(out / "cache")
    dense = densification.Dense(cfg.dense_fidelity, cfg.seed, heldout=DENSE_HELDOUT)
    sources = [(d, None) for d in _dirs(cfg)] + [(d, dense) for d in cfg.dense_data]
    load = lambda split, limit, dense_limit, part: batching.concat([  # noqa: E731
        batching.load_split(d, split, mcfg.encoding, max_program_tokens=mcfg.max_program_tokens, limit=dense_limit if how else limit, cache_dir=cache, dense=how, part=part)
        for d, how in sources
    ])  # fmt: skip
    train_set = load("train", cfg.limit, cfg.dense_limit or cfg.limit, (world.rank, world.size))
    val_set = load("val", cfg.eval_examples, cfg.eval_examples, (0, 1)) if world.main else None
    if not len(train_set) or (val_set is not None and not len(val_set)):
        raise MetamodelsError(f"{cfg.data}: no usable train/val examples (skipped: {train_set.skipped})")
    torch.manual_seed(cfg.seed)
    model = (start if start is not None else metamodel.MetaModel(mcfg)).to(dev)
    net: torch.nn.Module = model
    if world.size > 1:  # averages gradients over ranks; rank 0's initial weights are broadcast
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scaler = devices.grad_scaler(dev)
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch": 0,
        "elapsed": 0.0,
        "total": cfg.steps,
        "best": float("inf"),
        "bad_evals": 0,
    }
    if (out / STATE).is_file():  # resume (on any number of ranks: the data order is a function of the step)
        state = load_state(out / STATE, cfg, model, opt)
    info = {"n_params": model.n_params(), "train_examples": world.total(len(train_set)), "skipped": train_set.skipped,
            "ranks": world.size, "device": str(dev), "autocast": str(devices.precision(dev))}  # fmt: skip
    if world.main:
        (out / "run.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), **info}, indent=1))

    per_epoch = len(batching.epoch_batches(train_set, cfg.batch_size, cfg.seed, 0))
    epoch, batches = -1, []
    bar = tqdm(total=state["total"], initial=state["step"], disable=not progress, desc="train", unit="step")
    started, start_elapsed, running = time.time(), state["elapsed"], []
    net.train()
    while state["total"] is None or state["step"] < state["total"]:
        state["epoch"], state["batch"] = divmod(state["step"], per_epoch)
        if state["epoch"] != epoch:
            epoch, batches = state["epoch"], batching.epoch_batches(train_set, cfg.batch_size, cfg.seed, state["epoch"])
        rng = np.random.default_rng([cfg.seed, state["step"], *([world.rank] if world.rank else [])]) if cfg.augment else None
        batch = batching.collate(train_set, batches[state["batch"]], rng)
        lr = lr_at(state["step"], state["total"] or 10**9, cfg.lr, cfg.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        with devices.autocast(dev):
            loss, _, _ = program_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        scaler.step(opt)
        scaler.update()
        state["step"] += 1
        state["elapsed"] = start_elapsed + time.time() - started
        running.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}", lr=f"{lr:.1e}")
        if state["total"] is None and state["step"] == 30:  # fit the schedule to the time budget (rank 0's timing)
            minutes = cfg.minutes or 0.0  # not None here: the schedule is fitted only to a time budget
            total = max(state["step"] + 1, int(minutes * 60 / (state["elapsed"] / state["step"])))
            state["total"] = bar.total = world.broadcast(total)
        over_time = world.agree(cfg.minutes is not None and state["elapsed"] > cfg.minutes * 60)
        last = over_time or (state["total"] is not None and state["step"] >= state["total"])
        if state["step"] % cfg.eval_every == 0 or last:
            if world.main:
                assert val_set is not None  # loaded on rank 0
                _validate(cfg, model, opt, val_set, state, info, float(np.mean(running[-cfg.eval_every:])), lr, bar)
            if world.agree(world.main and state["bad_evals"] >= cfg.patience):
                bar.write(f"early stop: no validation improvement in {cfg.patience} evaluations")
                break
        if over_time:
            break
    bar.close()
    return out / "checkpoint"


def _validate(cfg: TrainConfig, model: metamodel.MetaModel, opt: torch.optim.Optimizer, val_set: batching.EncodedSet,
              state: dict, info: dict, train_loss: float, lr: float, bar: tqdm) -> None:  # fmt: skip
    """Rank 0's evaluation: log a JSON line, keep the best checkpoint, save the state, redraw the curves."""
    out = Path(cfg.out)
    metrics = teacher_forced(model, val_set)
    record = {"step": state["step"], "epoch": state["epoch"], "seconds": round(state["elapsed"], 1), "lr": lr,
              "train_loss": float(train_loss), **{f"val_{k}": v for k, v in metrics.items()}}  # fmt: skip
    with open(out / LOG, "a") as f:
        f.write(json.dumps(record) + "\n")
    bar.write(json.dumps(record))
    if metrics["loss"] < state["best"]:
        state["best"], state["bad_evals"] = metrics["loss"], 0
        metamodel.save_checkpoint(model, out / "checkpoint", provenance(cfg, {**info, "at": record}))
    else:
        state["bad_evals"] += 1
    _save_state(out, model, opt, state, cfg)
    plot_curves(out / LOG, out / "curves.png")


def train_on_ray(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """``train`` on ``cfg.workers`` Ray Train workers (a TorchTrainer; gloo on CPUs, NCCL with --device cuda)."""
    try:
        import ray
        import ray.train
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise MetamodelsError("--ray needs Ray Train: pip install 'metamodels[ray]'") from None
    for d in [*_dirs(cfg), *cfg.dense_data]:  # a mistake is reported here, not after the cluster has started
        store.shard_paths(Path(d))
    started = not ray.is_initialized()  # a Ray this call started is shut down again; a caller's is left running
    try:
        ray.init(address=None if cfg.ray == "local" else cfg.ray, num_cpus=cfg.workers if cfg.ray == "local" else None,
                 include_dashboard=False, log_to_driver=progress, ignore_reinit_error=True)  # fmt: skip
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise MetamodelsError(f"--ray {cfg.ray}: cannot join that Ray cluster ({e})") from None
    gpu = cfg.device == "cuda" or (cfg.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
    absolute = lambda path: str(Path(path).resolve())  # noqa: E731 (workers run in other directories)
    worker_cfg = dataclasses.replace(
        cfg, ray=None, device="cuda" if gpu else "cpu", out=absolute(cfg.out),
        data=tuple(map(absolute, _dirs(cfg))), dense_data=tuple(map(absolute, cfg.dense_data)),
        init=cfg.init and absolute(cfg.init), cache_dir=cfg.cache_dir and absolute(cfg.cache_dir),
    )  # fmt: skip
    def worker() -> None:  # every Ray Train worker: one rank of train() inside the group Ray set up
        train(worker_cfg, progress=False)

    trainer = TorchTrainer(
        worker,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=gpu),
        run_config=ray.train.RunConfig(name="metamodels-train", storage_path=absolute(Path(cfg.out) / "ray"),
                                       failure_config=ray.train.FailureConfig(max_failures=0)),  # fmt: skip
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps the workers' error; a user mistake (e.g. a bad --data) must read as one
        cause: BaseException = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise MetamodelsError(f"Ray Train failed: {str(cause).strip().splitlines()[-1]}") from None
    finally:
        if started:
            ray.shutdown()
    return Path(cfg.out) / "checkpoint"


# What must match for a run to resume: the model's shape and the data it reads.
RESUME_KEYS = ("data", "preset", "encoding", "basis", "init", "dense_data", "seed")


def _save_state(
    out: Path, model: metamodel.MetaModel, opt: torch.optim.Optimizer, state: dict, cfg: TrainConfig
) -> None:
    """Model and optimizer tensors in safetensors; the loop state, optimizer settings and config as JSON."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    saved = opt.state_dict()
    scalars: dict[str, dict] = {}
    for index, per_param in saved["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {
        "state": json.dumps(state),
        "param_groups": json.dumps(saved["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "config": json.dumps({k: _jsonable(getattr(cfg, k)) for k in RESUME_KEYS}),
    }
    artifacts.atomic_write(out / STATE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def load_state(path: Path, cfg: TrainConfig, model: metamodel.MetaModel, opt: torch.optim.Optimizer) -> dict:
    """Restore ``model`` and ``opt`` from a saved training state; returns the loop state. No pickle is involved."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state, groups = json.loads(meta["state"]), json.loads(meta["param_groups"])
        scalars, saved_cfg = json.loads(meta["optimizer_scalars"]), json.loads(meta["config"])
    except (OSError, SafetensorError, KeyError, ValueError) as e:
        raise MetamodelsError(f"{path}: not a readable training state ({e}); delete it to start again") from None
    ours = {k: _jsonable(getattr(cfg, k)) for k in RESUME_KEYS}
    changed = sorted(k for k in RESUME_KEYS if saved_cfg.get(k) != ours[k])
    if changed:
        raise MetamodelsError(f"{path.parent}: this run was started with other {', '.join(changed)} "
                              f"({', '.join(f'{k}={saved_cfg.get(k)!r}' for k in changed)}); rerun that command to "
                              "resume, or train into another --out")  # fmt: skip
    per_param: dict[int, dict] = {int(i): dict(v) for i, v in scalars.items()}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            per_param.setdefault(int(index), {})[name] = value
    try:
        model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
        opt.load_state_dict({"state": per_param, "param_groups": groups})
    except (RuntimeError, ValueError, KeyError) as e:
        raise MetamodelsError(f"{path}: does not fit this model ({e}); delete it to start again") from None
    return state


def plot_curves(log: Path, png: Path) -> None:
    """Training/validation loss and validation accuracies against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(steps, [r["train_loss"] for r in records], label="train")
    a.plot(steps, [r["val_loss"] for r in records], label="validation")
    a.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="loss")
    a.legend()
    b.plot(steps, [r["val_token_acc"] for r in records], label="token (teacher-forced)")
    b.plot(steps, [r["val_program_acc"] for r in records], label="whole program (teacher-forced)")
    b.set(xlabel="step", ylabel="accuracy", ylim=(0, 1), title="validation accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak``, cosine decay to 10% of it at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
