"""train / evaluate / predict / baseline: hyperparameters from CNN weights, on a CNN zoo (``zoo build --kind cnn``).

train: read the zoo's train split -> encode each checkpoint for the chosen meta-model -> train all heads jointly
(summed cross-entropy; channel permutations as augmentation for ours) -> keep the step with the best mean validation
accuracy -> one safetensors file (weights, config, label classes, provenance). Every checkpoint of a training run
is a sample; the zoo's splits are by run, so no run is on both sides.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from metamodels import artifacts, devices, options
from metamodels.errors import MetamodelsError
from metamodels.hparams import encoding, models
from metamodels.zoo import cnn_zoo

Method = Literal["ours", "paper", "mlp", "ejr"]
LABELS = {"skb": ("activation", "init", "optimizer"),
          "ejr": ("dataset", "batch_size", "optimizer", "activation", "init", "augmentation")}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class HparamsConfig:
    """A hyperparameter meta-model and how it is trained."""

    model: Method = options.option("ours", help="ours (neuron tokens), paper (flat chunks, paper 000 App. A), mlp "
                                   "(flat weights), ejr (1-D CNN on a random weight slice)")  # fmt: skip
    steps: int = options.option(1500, help="optimizer steps")
    batch_size: int = options.option(64, help="checkpoints per step")
    lr: float = options.option(1e-3, help="AdamW learning rate")
    seed: int = options.option(0, help="seed of initialisation, batches, augmentation and --train-runs subset")
    train_runs: int | None = options.option(None, help="train on this many training runs only (default all)")
    eval_every: int = options.option(250, help="steps between validations")
    device: devices.Device = options.option(devices.DEVICE, help=devices.DEVICE_HELP + " (training; CUDA trains in "
                                            "bfloat16 autocast; the checkpoint loads anywhere)")  # fmt: skip
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    wide: bool = True  # ours: the layer summaries also set [CLS] directly (models.NeuronTransformer)
    dropout: float = 0.0  # ours: the encoder's dropout
    n_chunks: int = 64  # paper's input: n_chunks x chunk flat weights (paper 000: 256 x 3,125)
    chunk: int = 128
    slice_size: int = 5000  # EJR's slice

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.train_runs is not None and self.train_runs < 1:
            raise MetamodelsError(f"--train-runs must be at least 1, got {self.train_runs}")


@dataclasses.dataclass(frozen=True)
class Split:
    """One zoo split: ``weights[i]`` (checkpoint i's weights), ``y [n, n_labels]`` class indices, ``runs[i]``."""

    weights: list[dict[str, np.ndarray]]
    y: np.ndarray
    runs: list[str]


def family(zoo: Path) -> str:
    if not cnn_zoo.is_cnn_zoo(zoo):
        raise MetamodelsError(f"{zoo}: not a CNN zoo (build one with `metamodels zoo build OUT --kind cnn`)")
    from metamodels.dataset import store

    return store.read_manifest(zoo)["config"]["family"]  # type: ignore[index]


def classes_of(zoo: Path) -> dict[str, list[str]]:
    """Each label's classes (as text, sorted), from the zoo's train split."""
    seen: dict[str, set[str]] = {label: set() for label in LABELS[family(zoo)]}
    for row in cnn_zoo.read(zoo, "train", columns=list(seen)):
        for label in seen:
            seen[label].add(str(row[label]))
    if not any(seen.values()):
        raise MetamodelsError(f"{zoo}: its train split is empty")
    return {label: sorted(values) for label, values in seen.items()}


def load_split(zoo: Path, split: str, classes: dict[str, list[str]], runs: int | None = None, seed: int = 0) -> Split:
    """A split's checkpoints with their labels; ``runs``: a random subset of that many training runs."""
    rows = list(cnn_zoo.read(zoo, split, columns=["run", "weights", *classes]))
    if runs is not None:
        names = sorted({r["run"] for r in rows})
        keep = set(np.random.default_rng(seed).permutation(names)[:runs].tolist())
        rows = [r for r in rows if r["run"] in keep]
    if not rows:
        raise MetamodelsError(f"{zoo}: no checkpoints in its {split} split")
    index = {label: {c: i for i, c in enumerate(cs)} for label, cs in classes.items()}
    y = np.array([[index[label].get(str(r[label]), -100) for label in classes] for r in rows], np.int64)
    return Split([r["weights"] for r in rows], y, [r["run"] for r in rows])


def build_model(cfg: HparamsConfig, classes: dict[str, list[str]]) -> torch.nn.Module:
    sizes = {label: len(cs) for label, cs in classes.items()}
    if cfg.model == "ours":
        return models.NeuronTransformer(sizes, cfg.d_model, cfg.layers, cfg.heads, cfg.dropout, cfg.wide)
    if cfg.model == "paper":
        return models.ChunkTransformer(sizes, cfg.n_chunks, cfg.chunk, cfg.d_model, cfg.layers, cfg.heads)
    if cfg.model == "mlp":
        return models.FlatMLP(sizes, cfg.n_chunks * cfg.chunk)
    return models.SliceCNN(sizes)


def inputs(cfg: HparamsConfig, batch: Sequence[dict[str, np.ndarray]], rng: np.random.Generator | None) -> tuple:
    """The model's input tensors for a batch of CNNs (``rng``: augmentation and EJR's slice offsets; None: none)."""
    if cfg.model == "ours":
        seen = [w if rng is None else encoding.permute_channels(w, rng) for w in batch]
        return (*_padded([encoding.neuron_tokens(w) for w in seen]), *_padded([encoding.summary_tokens(w) for w in seen]))
    if cfg.model == "paper":
        return (torch.from_numpy(np.stack([encoding.chunks(w, cfg.n_chunks, cfg.chunk) for w in batch])),)
    if cfg.model == "mlp":
        return (torch.from_numpy(np.stack([encoding.flat(w, cfg.n_chunks * cfg.chunk) for w in batch])),)
    return (torch.from_numpy(np.stack([encoding.random_slice(w, cfg.slice_size, rng) for w in batch])),)


def _padded(encoded: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n_i, f], tags [n_i]) per CNN -> tokens ``[batch, max n_i, f]``, tags ``[batch, max n_i]`` (-1: pad)."""
    n, f = max(len(tags) for _, tags in encoded), encoded[0][0].shape[1]
    tokens, tags = np.zeros((len(encoded), n, f), np.float32), np.full((len(encoded), n), -1, np.int64)
    for i, (t, g) in enumerate(encoded):
        tokens[i, : len(g)], tags[i, : len(g)] = t, g
    return torch.from_numpy(tokens), torch.from_numpy(tags)


def _on(dev: torch.device, tensors: tuple) -> tuple:
    return tuple(t.to(dev) for t in tensors)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_split(model: torch.nn.Module, cfg: HparamsConfig, data: Split, batch: int = 256) -> np.ndarray:
    """Predicted class indices ``[n, n_labels]`` (labels in the heads' order), on the model's device."""
    return np.stack([p.argmax(1) for p in probabilities_split(model, cfg, data, batch)], 1)


def probabilities_split(model: torch.nn.Module, cfg: HparamsConfig, data: Split, batch: int = 256) -> list[np.ndarray]:
    """Per label (the heads' order), the predicted class probabilities ``[n, classes of the label]``."""
    model.eval()
    dev, out = _device_of(model), []
    with torch.no_grad():
        for start in range(0, len(data.weights), batch):
            logits = model(*_on(dev, inputs(cfg, data.weights[start : start + batch], None)))
            out.append([torch.softmax(v.float(), -1).cpu().numpy() for v in logits.values()])
    return [np.concatenate([o[j] for o in out]) for j in range(len(out[0]))]


def accuracies(predicted: np.ndarray, data: Split, labels: Sequence[str]) -> dict[str, float]:
    """Accuracy per label and their mean."""
    acc = {label: float((predicted[:, j] == data.y[:, j]).mean()) for j, label in enumerate(labels)}
    return {**acc, "mean": float(np.mean(list(acc.values())))}


def train(zoo: Path, out: Path, cfg: HparamsConfig, progress: bool = True) -> dict:
    """Train ``cfg.model`` on ``zoo``'s train split; writes ``out`` (.safetensors); returns its record."""
    classes = classes_of(zoo)
    train_set = load_split(zoo, "train", classes, cfg.train_runs, cfg.seed)
    val_set = load_split(zoo, "val", classes)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 3])
    dev = devices.device(cfg.device)
    model = build_model(cfg, classes).to(dev)
    if isinstance(model, models.NeuronTransformer):
        sample = rng.permutation(len(train_set.weights))[:512]
        model.fit_inputs(*_on(dev, inputs(cfg, [train_set.weights[i] for i in sample], None)))
    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=0.01)
    scaler = devices.grad_scaler(dev)  # float16 autocast only (CUDA without bfloat16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    best: dict = {"mean": -1.0}
    for step in tqdm(range(1, cfg.steps + 1), desc=f"training {cfg.model}", disable=not progress):
        model.train()
        pick = rng.integers(len(train_set.weights), size=cfg.batch_size)
        x = _on(dev, inputs(cfg, [train_set.weights[i] for i in pick], rng))
        y = torch.from_numpy(train_set.y[pick]).to(dev)
        with devices.autocast(dev):
            logits = model(*x)
            loss = sum(torch.nn.functional.cross_entropy(v.float(), y[:, j]) for j, v in enumerate(logits.values()))
        opt.zero_grad()
        scaler.scale(loss).backward()  # type: ignore[arg-type]
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val = accuracies(predict_split(model, cfg, val_set), val_set, list(classes))
            if val["mean"] > best["mean"]:
                best = {**val, "step": step}
                record = {"config": dataclasses.asdict(cfg), "classes": classes, "family": family(zoo), "val": best,
                          "train_runs": len(set(train_set.runs)), "train_checkpoints": len(train_set.runs),
                          "device": str(dev), "autocast": str(devices.precision(dev)),
                          "provenance": artifacts.provenance()}  # fmt: skip
                _save(out, model, record)
    return record


def _save(out: Path, model: torch.nn.Module, record: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    artifacts.atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata={"record": json.dumps(record)}))


def load(checkpoint: Path, device: str = "cpu") -> tuple[torch.nn.Module, HparamsConfig, dict]:
    """A trained hyperparameter meta-model (on ``device``), its config and its record."""
    dev = devices.device(device)
    try:
        with safe_open(str(checkpoint), "pt") as f:
            record = json.loads((f.metadata() or {})["record"])
        state = load_file(str(checkpoint))
        cfg = HparamsConfig(**record["config"])
        model = build_model(cfg, record["classes"])
        model.load_state_dict(state)
        model.to(dev)
    except (OSError, KeyError, TypeError, RuntimeError, SafetensorError, json.JSONDecodeError) as e:
        raise MetamodelsError(f"{checkpoint}: not a hyperparameter meta-model checkpoint ({e})") from None
    return model, cfg, record


def evaluate(checkpoint: Path, zoo: Path, split: str = "test", device: str = devices.DEVICE) -> dict:
    """Accuracy per label (and the mean) of a checkpoint on a zoo split, with the split's size."""
    model, cfg, record = load(checkpoint, device)
    if family(zoo) != record["family"]:
        raise MetamodelsError(f"{checkpoint} reads {record['family']} zoos; {zoo} is a {family(zoo)} zoo")
    data = load_split(zoo, split, record["classes"])
    acc = accuracies(predict_split(model, cfg, data), data, list(record["classes"]))
    return {"method": cfg.model, "split": split, "checkpoints": len(data.runs), "runs": len(set(data.runs)),
            "train_runs": record["train_runs"], "accuracy": acc}  # fmt: skip


def predict(checkpoint: Path, cnn_file: Path, device: str = devices.DEVICE) -> dict[str, dict[str, float]]:
    """For one CNN file: each label's classes with their predicted probabilities, most likely first."""
    model, cfg, record = load(checkpoint, device)
    weights = cnn_zoo.load_cnn_file(cnn_file)
    model.eval()
    with torch.no_grad():
        logits = model(*_on(_device_of(model), inputs(cfg, [weights], None)))
    out = {}
    for label, v in logits.items():
        p = torch.softmax(v[0].float(), -1).tolist()
        out[label] = dict(sorted(zip(record["classes"][label], p), key=lambda kv: -kv[1]))
    return out
