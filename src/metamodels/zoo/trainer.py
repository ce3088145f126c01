"""Many small transformers trained at once: stacked parameters over a model dimension, batched matmuls.

One call of :func:`train_many` trains a queue of :class:`Task` s (a program's input/output data and
its own seed and learning rate) in ``slots`` parallel models sharing one :class:`Architecture`. Every
tensor carries the slot dimension first (``[M, ...]``); each slot's loss is its own mean token
cross-entropy and the slots' losses are summed, so a slot's gradient is exactly its own. Adam runs
per slot (own step count and learning rate). Every ``eval_every`` steps each slot is scored on its
held-out inputs (never trained on); at the bar it stores view 0, keeps training and stores a view at
each of ``view_steps`` later steps (if still at the bar), then takes the next task. A task that does
not reach the bar within ``max_steps`` is reported as such, never dropped silently.

Slots pad their vocabularies to the batch's largest: unused input rows are never read, unused
output columns are masked out of the softmax, so slicing them off (:func:`_slot_params`) gives a
:class:`~metamodels.transformer.trained.TrainedModel` computing exactly what the slot computed.
With one torch thread the result is a deterministic function of the tasks, architecture and config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from metamodels import devices, options
from metamodels.errors import MetamodelsError
from metamodels.transformer.trained import Architecture, GPTConfig, TrainedModel

NEG = -1e9  # masked logits and attention scores (finite: a fully masked row stays finite)


@dataclasses.dataclass(frozen=True)
class Task:
    """One program's training data. Arrays: ids ``[N, 1 + T]`` (BOS first, 0-padded), targets ``[N, T]``.

    ``targets`` are output-vocabulary indices, -1 where the program is undefined or past the input's end.
    """

    key: str
    input_vocab: tuple
    output_vocab: tuple
    max_seq_len: int
    causal: bool
    train_ids: np.ndarray
    train_targets: np.ndarray
    heldout_ids: np.ndarray
    heldout_targets: np.ndarray
    seed: int
    lr: float


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """How each slot is trained and when it counts as converged."""

    slots: int = options.option(64, help="models trained at once in one process")
    batch_size: int = options.option(16, help="training sequences per model per step")
    max_steps: int = options.option(3000, help="a model not at the bar after this many steps is reported as failed")
    eval_every: int = 50
    bar: float = options.option(0.95, help="held-out token accuracy a model must reach (paper 002: 0.95)")
    view_steps: tuple[int, ...] = (100, 200)  # further views this many steps after convergence
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("slots", "batch_size", "max_steps", "eval_every"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.bar <= 1.0:
            raise MetamodelsError(f"--bar must be in (0, 1], got {self.bar}")
        if any(s % self.eval_every for s in self.view_steps):
            raise MetamodelsError(f"view_steps {self.view_steps} must be multiples of eval_every {self.eval_every}")


@dataclasses.dataclass(frozen=True)
class View:
    """One stored checkpoint of a converged model."""

    index: int
    step: int
    heldout_accuracy: float
    train_accuracy: float
    model: TrainedModel


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one task: converged (with its views) or not (``failure`` names why)."""

    key: str
    steps: int
    heldout_accuracy: float
    views: tuple[View, ...]
    failure: str | None


def _config(arch: Architecture, input_vocab: tuple, output_vocab: tuple, max_seq_len: int, causal: bool) -> GPTConfig:
    return GPTConfig(input_vocab=input_vocab, output_vocab=output_vocab, max_seq_len=max_seq_len, causal=causal,
                     **dataclasses.asdict(arch))  # fmt: skip


def _init(name: str, shape: tuple[int, ...], n_layers: int, gen: torch.Generator) -> torch.Tensor:
    """GPT-2-style init: biases and LayerNorm shifts 0, gains 1, weights N(0, 1/fan_in), outputs scaled by depth."""
    if name.endswith((".b", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U")):
        return torch.zeros(shape)
    if name.endswith(".w"):
        return torch.ones(shape)
    fan_in = shape[-1] if name.startswith(("embed", "pos_embed")) else (shape[-2] * (shape[0] if "W_O" in name else 1))
    std = 1.0 / math.sqrt(fan_in) if not name.startswith(("embed", "pos_embed")) else 0.5
    if name.endswith(("W_O", "W_out")):
        std /= math.sqrt(2 * n_layers)
    return torch.randn(shape, generator=gen) * std


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x ``[M, B, T, D]``, w and b ``[M, D]``."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-5) * w[:, None, None] + b[:, None, None]


def forward(
    p: dict[str, torch.Tensor], arch: Architecture, ids: torch.Tensor, keep: torch.Tensor, causal: torch.Tensor
) -> torch.Tensor:
    """Logits ``[M, B, T, V_out]`` of ids ``[M, B, T]`` (``keep`` ``[M, B, T]``: real tokens; ``causal`` ``[M]``)."""
    m, _, t = ids.shape
    x = p["embed.W_E"][torch.arange(m, device=ids.device)[:, None, None], ids] + p["pos_embed.W_pos"][:, None, :t]  # [M, B, T, D]
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=ids.device))
    allowed = keep[:, :, None, None, :] & (lower | ~causal[:, None, None, None, None])  # [M, B, 1, T, T]
    act = (lambda z: F.gelu(z, approximate="tanh")) if arch.activation == "gelu" else F.relu
    for layer in range(arch.n_layers):
        b = f"blocks.{layer}."
        h = _layer_norm(x, p[b + "ln1.w"], p[b + "ln1.b"]) if arch.norm == "layernorm" else x
        q, k, v = (torch.einsum("mbtd,mhdk->mbhtk", h, p[b + f"attn.W_{n}"]) + p[b + f"attn.b_{n}"][:, None, :, None]
                   for n in "QKV")  # fmt: skip
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        z = torch.softmax(scores.masked_fill(~allowed, NEG), dim=-1) @ v  # [M, B, H, T, K]
        x = x + torch.einsum("mbhtk,mhkd->mbtd", z, p[b + "attn.W_O"]) + p[b + "attn.b_O"][:, None, None]
        h = _layer_norm(x, p[b + "ln2.w"], p[b + "ln2.b"]) if arch.norm == "layernorm" else x
        hidden = act(torch.einsum("mbtd,mdf->mbtf", h, p[b + "mlp.W_in"]) + p[b + "mlp.b_in"][:, None, None])
        x = x + torch.einsum("mbtf,mfd->mbtd", hidden, p[b + "mlp.W_out"]) + p[b + "mlp.b_out"][:, None, None]
    if arch.norm == "layernorm":
        x = _layer_norm(x, p["ln_final.w"], p["ln_final.b"])
    return torch.einsum("mbtd,mdv->mbtv", x, p["unembed.W_U"]) + p["unembed.b_U"][:, None, None]


class _Slots:
    """The stacked state: parameters and Adam moments ``[M, ...]``, and which task each slot holds."""

    def __init__(self, arch: Architecture, tasks: Sequence[Task], config: TrainerConfig, dev: torch.device) -> None:
        self.arch, self.config, self.dev = arch, config, dev
        self.m = min(config.slots, len(tasks))
        self.v_in = 1 + max(len(t.input_vocab) for t in tasks)
        self.v_out = max(len(t.output_vocab) for t in tasks)
        self.t = 1 + max(t.max_seq_len for t in tasks)
        self.shapes = _config(arch, tuple(range(self.v_in - 1)), tuple(range(self.v_out)), self.t - 1, False).shapes()
        self.p = {n: torch.zeros((self.m, *s), device=dev, requires_grad=True) for n, s in self.shapes.items()}
        self.mom = {n: torch.zeros((self.m, *s), device=dev) for n, s in self.shapes.items()}
        self.sq = {n: torch.zeros((self.m, *s), device=dev) for n, s in self.shapes.items()}
        self.task: list[Task | None] = [None] * self.m
        self.step = np.zeros(self.m, dtype=np.int64)
        self.lr = torch.zeros(self.m, device=dev)
        self.out_mask = torch.zeros(self.m, self.v_out, dtype=torch.bool, device=dev)  # real output columns
        self.causal = torch.zeros(self.m, dtype=torch.bool, device=dev)

    def load(self, slot: int, task: Task) -> None:
        """Fresh parameters (from the task's seed, drawn on the CPU: the same on every device) and optimiser
        state in ``slot``."""
        gen = torch.Generator().manual_seed(task.seed)
        with torch.no_grad():
            for name, shape in self.shapes.items():
                self.p[name][slot] = _init(name, shape, self.arch.n_layers, gen).to(self.dev)
                self.mom[name][slot] = 0.0
                self.sq[name][slot] = 0.0
        self.task[slot], self.step[slot], self.lr[slot] = task, 0, task.lr
        self.out_mask[slot] = torch.arange(self.v_out, device=self.dev) < len(task.output_vocab)
        self.causal[slot] = task.causal

    def compact(self, keep: list[int]) -> None:
        """Keep only the slots ``keep`` (in order): the tail of a queue trains only the models still running."""
        index = torch.tensor(keep, dtype=torch.long, device=self.dev)
        with torch.no_grad():
            self.p = {n: p[index].clone().requires_grad_(True) for n, p in self.p.items()}
        self.mom = {n: v[index] for n, v in self.mom.items()}
        self.sq = {n: v[index] for n, v in self.sq.items()}
        self.task = [self.task[i] for i in keep]
        self.step, self.lr = self.step[keep], self.lr[index]
        self.out_mask, self.causal, self.m = self.out_mask[index], self.causal[index], len(keep)

    def adam(self, active: torch.Tensor) -> None:
        """One Adam step per active slot (its own step count and learning rate)."""
        b1, b2 = self.config.betas
        t = torch.as_tensor(self.step, dtype=torch.float32, device=self.dev)
        scale = torch.where(active, self.lr * torch.sqrt(1 - b2**t) / (1 - b1**t), torch.zeros((), device=self.dev))
        with torch.no_grad():
            for name, p in self.p.items():
                g = p.grad
                assert g is not None
                shape = (self.m,) + (1,) * (p.dim() - 1)
                self.mom[name].mul_(b1).add_(g, alpha=1 - b1)
                self.sq[name].mul_(b2).addcmul_(g, g, value=1 - b2)
                p -= scale.view(shape) * self.mom[name] / (self.sq[name].sqrt() + self.config.eps)
                p.grad = None


def _pad(ids: np.ndarray, targets: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a task's arrays to the batch's length ``t`` (ids to ``t``, targets to ``t - 1``)."""
    out_ids = np.zeros((len(ids), t), dtype=np.int64)
    out_ids[:, : ids.shape[1]] = ids
    out_t = np.full((len(targets), t - 1), -1, dtype=np.int64)
    out_t[:, : targets.shape[1]] = targets
    return out_ids, out_t


def train_many(
    tasks: Sequence[Task],
    arch: Architecture,
    config: TrainerConfig,
    seed: int | Sequence[int],
    device: str = devices.ZOO_DEVICE,
) -> Iterator[Outcome]:
    """Train every task (in slots, refilled as tasks finish); yields one Outcome per task as it finishes.

    ``seed`` drives the training batches; each task's initialisation comes from its own seed. Once the
    queue is empty and at most half the slots still train, the idle slots are dropped from the stack.
    ``device``: where the stack trains (:func:`metamodels.devices.device`), in float32 on every device.
    """
    if not tasks:
        return
    s = _Slots(arch, tasks, config, devices.device(device))
    rng = np.random.default_rng(seed)
    padded = {id(t): (_pad(t.train_ids, t.train_targets, s.t), _pad(t.heldout_ids, t.heldout_targets, s.t))
              for t in tasks}  # fmt: skip
    queue = list(tasks)
    views: list[list[View]] = [[] for _ in range(s.m)]
    for slot in range(s.m):
        s.load(slot, queue.pop(0))
    while any(task is not None for task in s.task):
        active = torch.tensor([task is not None for task in s.task])
        ids, targets = _train_batch(s, padded, rng, config.batch_size)
        active = active.to(s.dev)
        loss = _slot_losses(_output_logits(s.p, arch, ids, s.causal, s.out_mask), targets)
        (loss * active).sum().backward()
        s.step += active.cpu().numpy()
        s.adam(active)
        if (s.step % config.eval_every == 0).any():
            yield from _evaluate(s, padded, views, queue, loss.detach().cpu())
            running = [i for i, task in enumerate(s.task) if task is not None]
            if not queue and 0 < len(running) <= s.m // 2:
                s.compact(running)
                views = [views[i] for i in running]


def _output_logits(
    p: dict[str, torch.Tensor], arch: Architecture, ids: torch.Tensor, causal: torch.Tensor, out_mask: torch.Tensor
) -> torch.Tensor:
    """Logits ``[M, B, T - 1, V_out]`` at the input positions (BOS dropped), padding output columns masked.

    ids ``[M, B, T]`` (0 = BOS at position 0, padding elsewhere); ``out_mask`` ``[M, V_out]``: real columns.
    """
    keep = ids > 0
    keep[..., 0] = True  # BOS has id 0 like padding, but is a real token
    return forward(p, arch, ids, keep, causal).masked_fill(~out_mask[:, None, None], NEG)[:, :, 1:]


def _train_batch(s: _Slots, padded: dict, rng: np.random.Generator, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids ``[M, B, T]`` and targets ``[M, B, T - 1]``, a random batch of each slot's training data."""
    ids = np.zeros((s.m, b, s.t), dtype=np.int64)
    targets = np.full((s.m, b, s.t - 1), -1, dtype=np.int64)
    for slot, task in enumerate(s.task):
        if task is not None:
            (tr_ids, tr_t), _ = padded[id(task)]
            pick = rng.integers(0, len(tr_ids), size=b)
            ids[slot], targets[slot] = tr_ids[pick], tr_t[pick]
    return torch.from_numpy(ids).to(s.dev), torch.from_numpy(targets).to(s.dev)


def _slot_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per slot ``[M]`` over defined target positions (logits ``[M, B, T, V]``)."""
    per = F.cross_entropy(logits.flatten(0, 2), targets.flatten().clamp(min=0), reduction="none").view(targets.shape)
    defined = targets >= 0
    return (per * defined).sum((1, 2)) / defined.sum((1, 2)).clamp(min=1)


def _accuracy(s: _Slots, slots: list[int], ids: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Token accuracy of each of ``slots`` over defined positions; ids ``[S, N, T]``, targets ``[S, N, T - 1]``."""
    index = torch.tensor(slots, dtype=torch.long, device=s.dev)
    ids, targets = ids.to(s.dev), targets.to(s.dev)
    with torch.no_grad():
        p = {n: v[index] for n, v in s.p.items()}
        guess = _output_logits(p, s.arch, ids, s.causal[index], s.out_mask[index]).argmax(-1)
    defined = targets >= 0
    right = ((guess == targets) & defined).sum((1, 2)).float()
    return (right / defined.sum((1, 2)).clamp(min=1)).cpu().numpy()


def _heldout(s: _Slots, padded: dict, slots: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out arrays of ``slots``, padded to the largest count (padding rows are all -1)."""
    arrays = [padded[id(s.task[slot])][1] for slot in slots]
    n = max(len(a[0]) for a in arrays)
    ids = np.zeros((len(slots), n, s.t), dtype=np.int64)
    targets = np.full((len(slots), n, s.t - 1), -1, dtype=np.int64)
    for row, a in enumerate(arrays):
        ids[row, : len(a[0])], targets[row, : len(a[1])] = a
    return torch.from_numpy(ids), torch.from_numpy(targets)


def _evaluate(s: _Slots, padded: dict, views: list[list[View]], queue: list[Task], loss: torch.Tensor):
    """Score the slots due for evaluation (only those: slots run out of phase); store views, finish tasks,
    refill slots. Yields finished Outcomes."""
    cfg = s.config
    due = [slot for slot, task in enumerate(s.task) if task is not None and s.step[slot] % cfg.eval_every == 0]
    if not due:
        return
    heldout = dict(zip(due, _accuracy(s, due, *_heldout(s, padded, due))))
    for slot in due:
        task, step = s.task[slot], int(s.step[slot])
        assert task is not None
        done: Outcome | None = None
        first = views[slot][0].step if views[slot] else None
        if first is None and heldout[slot] >= cfg.bar:
            views[slot].append(_view(s, slot, 0, heldout[slot], padded))
        elif first is not None and step - first in cfg.view_steps:
            if heldout[slot] >= cfg.bar:
                views[slot].append(_view(s, slot, len(views[slot]), heldout[slot], padded))
            if step - first == max(cfg.view_steps):
                done = Outcome(task.key, step, float(views[slot][0].heldout_accuracy), tuple(views[slot]), None)
        if views[slot] and not cfg.view_steps:
            done = Outcome(task.key, step, float(heldout[slot]), tuple(views[slot]), None)
        if done is None and not views[slot] and step >= cfg.max_steps:
            done = Outcome(task.key, step, float(heldout[slot]), (), "not_converged")
        if done is None and not math.isfinite(float(loss[slot])):
            done = Outcome(task.key, step, float(heldout[slot]), tuple(views[slot]), "diverged")
        if done is not None:
            yield done
            views[slot] = []
            if queue:
                s.load(slot, queue.pop(0))
            else:
                s.task[slot] = None


def _view(s: _Slots, slot: int, index: int, heldout: float, padded: dict) -> View:
    task = s.task[slot]
    assert task is not None
    (train_ids, train_targets), _ = padded[id(task)]
    ids, targets = torch.from_numpy(train_ids[None, :512]), torch.from_numpy(train_targets[None, :512])
    train_accuracy = float(_accuracy(s, [slot], ids, targets)[0])
    config = _config(s.arch, task.input_vocab, task.output_vocab, task.max_seq_len, task.causal)
    # padding sits at the end of the vocabulary and position axes: each parameter's leading block is the slot's own
    params = {n: s.p[n][slot].detach().cpu().numpy()[tuple(map(slice, shape))].copy() for n, shape in config.shapes().items()}
    return View(index, int(s.step[slot]), float(heldout), train_accuracy, TrainedModel(config, params))
