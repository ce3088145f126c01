"""Train and evaluate a model-mapping meta-model on a zoo; checkpoints are safetensors (float16 weights, loaded into
float32) with the config, vocabulary, training log and provenance as JSON metadata.

Training reads the zoo's ``train`` split (every view of a program: the paper's augmentation), evaluation its
``test`` split (program- and behaviour-disjoint from train: the zoo splits by behaviour fingerprint, never by view).
Decoding is greedy and unconstrained, as in the paper, or (``beam``) grammar-constrained candidates chosen by their
agreement with the model (:mod:`metamodels.mapping.decoding`). Metrics per model:

- **token accuracy** (paper 002 §4.1): the fraction of target positions (after BOS, EOS included) whose token the
  decoded sequence has at the same position;
- **exact**: the decoded tokens equal the target;
- **parses**: the decoded tokens are a program of the language;
- **functional**: the decoded program's outputs equal the true program's on the model's held-out inputs;
- **agreement**: the fraction of (input, position) where the decoded program is defined and its output equals the
  trained model's (for the true program this is the model's stored held-out accuracy).

``blind=True`` zeroes every encoder input (weights, circuits): what the decoder writes from its prior alone (the random-weights baseline).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm import tqdm

from metamodels import artifacts, devices, options
from metamodels.dataset import store
from metamodels.errors import MetamodelsError
from metamodels.mapping import circuits, data, decoding, graph_t5
from metamodels.transformer import trained
from metamodels.zoo import build, programs, stats

FORMAT = "metamodels.mapping-checkpoint"
ARCHS = ("graph-t5", "circuits")


@dataclasses.dataclass(frozen=True)
class MappingConfig:
    arch: str = options.option("graph-t5", help="meta-model architecture: graph-t5 (paper 002's) or circuits (ours)")
    steps: int = options.option(3000, help="optimizer steps")
    batch_size: int = options.option(32, help="models per step")
    lr: float = options.option(1e-3, help="peak learning rate (AdamW; linear warm-up over 5%%, cosine decay)")
    features: int = options.option(data.FEATURES, help="graph-t5: parameters per layer vertex (padded or truncated)")
    seed: int = options.option(0, help="seed of initialisation, batch order and dropout")
    limit: int | None = options.option(None, help="train on at most this many zoo models (default: all)")
    device: devices.Device = options.option(devices.DEVICE, help=devices.DEVICE_HELP + " (training; checkpoints "
                                             "load anywhere)")  # fmt: skip

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise MetamodelsError(f"unknown --arch {self.arch!r} (one of {', '.join(ARCHS)})")
        for name in ("steps", "batch_size", "features"):
            if getattr(self, name) < 1:
                raise MetamodelsError(f"--{name.replace('_', '-')} must be at least 1")

    def featurize(self, model: trained.TrainedModel) -> dict[str, np.ndarray]:
        """The encoder's input arrays for one trained model."""
        if self.arch == "circuits":
            return circuits.features(model)
        return data.graph_features(model, self.features)


def collate(config: MappingConfig, examples: Sequence[data.Example], blind: bool = False):
    """The encoder's batched inputs (see each architecture's ``collate``) and targets ``[B, T]`` (PAD 0)."""
    batch = [e.features for e in examples]
    inputs = circuits.collate(batch, blind) if config.arch == "circuits" else graph_t5.collate(batch, blind)
    target = np.zeros((len(examples), max(len(e.target) for e in examples)), np.int64)
    for b, e in enumerate(examples):
        target[b, : len(e.target)] = e.target
    return inputs, torch.from_numpy(target)


def make_model(config: MappingConfig, vocab: data.Vocabulary, max_len: int) -> graph_t5.GraphT5:
    c = graph_t5.GraphT5Config(features=config.features, vocab_size=len(vocab), max_len=max_len)
    return circuits.Circuits(c) if config.arch == "circuits" else graph_t5.GraphT5(c)


def lm_loss(model: graph_t5.GraphT5, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    logits = model(inputs, target[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target[:, 1:].reshape(-1), ignore_index=0)


def train(zoo: Path, out: Path, config: MappingConfig, progress: bool = True) -> dict:
    """Train on the zoo's train split; write the checkpoint to ``out``; returns its metadata."""
    vocab, examples = data.load(zoo, "train", config.featurize, config.limit, progress)
    if not examples:
        raise MetamodelsError(f"{zoo}: no models in the train split")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    max_len = max(len(e.target) for e in examples) + 32
    dev = devices.device(config.device)
    model = make_model(config, vocab, max_len).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    scaler = devices.grad_scaler(dev)  # float16 autocast only (CUDA without bfloat16)
    warmup = max(1, config.steps // 20)
    log, start = [], time.perf_counter()
    order = rng.permutation(len(examples))
    at = 0
    model.train()
    with tqdm(total=config.steps, desc="training", unit="step", disable=not progress) as bar:
        for step in range(config.steps):
            if at + config.batch_size > len(order):
                order, at = rng.permutation(len(examples)), 0
            batch = [examples[i] for i in order[at : at + config.batch_size]]
            at += config.batch_size
            scale = (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, config.steps - warmup)))
            )
            for group in opt.param_groups:
                group["lr"] = config.lr * scale
            inputs, target = collate(config, batch)
            with devices.autocast(dev):
                loss = lm_loss(model, {k: v.to(dev) for k, v in inputs.items()}, target.to(dev))
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            if step % 50 == 0 or step == config.steps - 1:
                log.append(
                    {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - start, 1)}
                )
                bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
    meta = {"format": FORMAT, "language": vocab.language, "vocab": list(vocab.tokens), "max_len": max_len,
            "config": dataclasses.asdict(config), "zoo": str(zoo), "train_models": len(examples),
            "train_programs": len({e.program_id for e in examples}), "log": log,
            "prior": sorted({e.program for e in examples}),
            "provenance": artifacts.provenance()}  # fmt: skip
    state = {k: (v.detach().half() if v.is_floating_point() else v).cpu().contiguous()
             for k, v in model.state_dict().items()}  # fmt: skip
    artifacts.atomic_write(out, lambda p: save_file(state, str(p), metadata={"metamodels": json.dumps(meta)}))
    return meta


def load(path: Path) -> tuple[graph_t5.GraphT5, data.Vocabulary, dict]:
    """A mapping checkpoint: the model (eval mode), its target vocabulary and its metadata."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("metamodels", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (OSError, SafetensorError, json.JSONDecodeError) as e:
        raise MetamodelsError(f"{path}: cannot read a mapping checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise MetamodelsError(f"{path}: not a mapping checkpoint (format {meta.get('format')!r})")
    config = MappingConfig(**meta["config"])
    vocab = data.Vocabulary(meta["language"], tuple(meta["vocab"]))
    model = make_model(config, vocab, meta["max_len"])
    model.load_state_dict(state)
    return model.eval(), vocab, meta


@torch.no_grad()
def greedy(model: graph_t5.GraphT5, inputs: dict[str, torch.Tensor], max_len: int) -> list[list[int]]:
    """Greedy decoding (BOS = 1 first, stop at EOS = 2): token ids per model, BOS and EOS included."""
    memory, mask = model.encode(inputs)
    seq = torch.ones(memory.shape[0], 1, dtype=torch.long)
    done = torch.zeros(memory.shape[0], dtype=torch.bool)
    for _ in range(max_len - 1):
        nxt = model.decode(memory, mask, seq)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.zeros_like(nxt), nxt)
        seq = torch.cat([seq, nxt[:, None]], 1)
        done |= nxt == 2
        if bool(done.all()):
            break
    return [[int(i) for i in row if i != 0] for row in seq]


def _outputs(candidate: programs.Candidate, inputs: list[tuple]) -> list | None:
    try:
        return [list(candidate.evaluate(xs)) for xs in inputs]
    except Exception:  # noqa: BLE001 - a decoded program may fail on an input (a table it never read, an index)
        return None


def score(vocab: data.Vocabulary, decoded: list[int], row: dict, target: Sequence[int]) -> dict:
    """One model's metrics (see the module docstring)."""
    right = sum(1 for k in range(1, len(target)) if k < len(decoded) and decoded[k] == target[k])
    strings = data.decode_strings(vocab, decoded)
    out = {"token_accuracy": right / (len(target) - 1), "exact": list(decoded) == list(target), "parses": False,
           "functional": False, "agreement": 0.0}  # fmt: skip
    program = data.parse_decoded(vocab, strings)
    if program is None:
        return out
    out["parses"] = True
    inputs = data.heldout_inputs(row)
    vocab_in = json.loads(row["input_vocab"])
    truth = programs.from_text(row["language"], row["program"], vocab_in, row["max_seq_len"], row["causal"])
    guess = programs.from_program(program, vocab_in, row["max_seq_len"], row["causal"])
    got = _outputs(guess, inputs)
    if got is None:
        return out
    out["functional"] = got == [list(truth.evaluate(xs)) for xs in inputs]
    model_out = trained.run(stats.model_from_row(row), inputs)
    pairs = [(g, m) for gs, ms in zip(got, model_out) for g, m in zip(gs, ms) if g is not None]
    out["agreement"] = sum(g == m for g, m in pairs) / max(1, len(pairs))
    return out


def evaluate(checkpoint: Path, zoo: Path, split: str = "test", blind: bool = False, limit: int | None = None,
             batch_size: int = 64, progress: bool = True, beam: int | None = None, probes: int = decoding.PROBES,
             pool: int = 0, expand: bool = True, rank: int = 0, widen: int = decoding.WIDEN) -> dict:  # fmt: skip
    """Metrics of a checkpoint on a zoo split: overall, by program size and by base-model size (log10 params).

    ``beam=None``: paper 002's greedy, unconstrained decoding. ``beam=k``: k grammar-constrained candidates, with
    ``pool`` programs of the zoo's train split as a prior (seed 0, as the black box draws them), searched by agreement
    with the model (:func:`metamodels.mapping.decoding.search`; ``expand``: with one-substitution neighbours), the
    first scored, with more metrics: ``agrees`` (its agreement on fresh probes, as ``decompile`` measures it, reaches
    the bar), ``agrees_wrong`` (it does, yet the program is not functional: the check's false acceptances),
    ``any_functional`` (some kept candidate is: the ceiling of choosing) and ``from_beam`` / ``from_prior`` /
    ``from_neighbour`` (where the first came from). ``rank=k``: of the pool, only the k programs the meta-model finds
    most likely for each model's weights are searched (:func:`metamodels.mapping.decoding.most_likely`; 0: the whole
    pool). ``widen``: the search's second screen (:func:`metamodels.mapping.decoding.search`; 1: none).
    """
    if beam is not None and (beam < 0 or probes < 1 or beam == 0 and pool < 1) or rank < 0 or widen < 1:
        raise MetamodelsError(f"--beam must be at least 0 (0 with a --pool), --probes at least 1; got --beam {beam}, "
                              f"--probes {probes}, --pool {pool}; --rank at least 0, got {rank}; --widen at least "
                              f"1, got {widen}")  # fmt: skip
    model, vocab, meta = load(checkpoint)
    config = MappingConfig(**meta["config"])
    manifest = store.read_manifest(Path(zoo))
    if manifest is None:
        raise store.StoreError(f"{zoo}: no {store.MANIFEST}; not a zoo directory")
    if manifest["config"]["language"] != vocab.language:
        raise MetamodelsError(
            f"{checkpoint} maps to {vocab.language}, but {zoo} is a {manifest['config']['language']} zoo"
        )
    rows: list[dict] = []
    results: list[dict] = []
    ids = vocab.ids
    prior = data.prior(zoo, pool) if beam is not None and pool else []

    def flush() -> None:
        examples = [data.Example(r["id"], r["program_id"], r["program"], r["split"], r["size"], r["n_params"],
                                 config.featurize(stats.model_from_row(r)),
                                 tuple(ids[t] for t in data.target_strings(r["language"], r["program"])))
                    for r in rows]  # fmt: skip
        inputs, _ = collate(config, examples, blind)
        if beam is None:
            for r, e, decoded in zip(rows, examples, greedy(model, inputs, meta["max_len"])):
                results.append(
                    {"id": r["id"], "size": r["size"], "n_params": r["n_params"], **score(vocab, decoded, r, e.target)}
                )
        else:
            for b, (r, e) in enumerate(zip(rows, examples)):
                one = {k: v[b : b + 1] for k, v in inputs.items()}
                found = decoding.beam_search(model, one, vocab, meta["max_len"], beam) if beam else []
                own = decoding.most_likely(model, one, vocab, prior, rank) if rank else prior
                results.append({"id": r["id"], "size": r["size"], "n_params": r["n_params"],
                                **_chosen(vocab, found, own, r, e.target, probes, expand, widen)})  # fmt: skip
        rows.clear()

    with tqdm(desc=f"evaluating {split}", unit="model", disable=not progress) as bar:
        for row in build.read_zoo(zoo, split=split):
            rows.append(row)
            if len(rows) == batch_size:
                flush()
                bar.update(batch_size)
            if limit is not None and len(results) + len(rows) >= limit:
                break
        if rows:
            bar.update(len(rows))
            flush()
    if not results:
        raise MetamodelsError(f"{zoo}: no models in the {split} split")
    return summarize(results) | {"checkpoint": str(checkpoint), "zoo": str(zoo), "split": split, "blind": blind,
                                 "beam": beam, "probes": None if beam is None else probes, "pool": len(prior),
                                 "rank": rank or None, "expand": None if beam is None else expand,
                                 "widen": None if beam is None else widen}  # fmt: skip


def _chosen(vocab: data.Vocabulary, found: list[decoding.Decoded], prior: list, row: dict, target: Sequence[int],
            probes: int, expand: bool, widen: int) -> dict:  # fmt: skip
    """The metrics of the program :func:`decoding.search` puts first, and the search metrics."""
    model = stats.model_from_row(row)
    kept = decoding.search(found, prior, model, probes, expand=expand, widen=widen)
    if not kept:
        return score(vocab, [1], row, target) | dict.fromkeys(SEARCH_METRICS, False)
    ids = [vocab.ids[t] for t in data.program_strings(kept[0].program)]
    out = score(vocab, ids, row, target)
    fresh = decoding.tally(kept[0].program, model, decoding.probe(model, probes, seed=1))  # not the probes it won on
    agrees = fresh.agrees()
    any_functional = out["functional"] or any(
        score(vocab, [vocab.ids[t] for t in data.program_strings(k.program)], row, target)["functional"]
        for k in kept[1:]
    )
    return out | {"agrees": agrees, "agrees_wrong": agrees and not out["functional"], "any_functional": any_functional,
                  **{f"from_{o}": kept[0].origin == o for o in decoding.ORIGINS}}  # fmt: skip


METRICS = ("token_accuracy", "exact", "parses", "functional", "agreement")
SEARCH_METRICS = ("agrees", "agrees_wrong", "any_functional", *(f"from_{o}" for o in decoding.ORIGINS))


def summarize(results: list[dict]) -> dict:
    metrics = [m for m in (*METRICS, *SEARCH_METRICS) if m in results[0]]

    def mean(rs: list[dict]) -> dict:
        return {"models": len(rs), **{m: round(float(np.mean([r[m] for r in rs])), 4) for m in metrics}}

    by_size: dict = collections.defaultdict(list)
    by_params: dict = collections.defaultdict(list)
    for r in results:
        by_size[r["size"]].append(r)
        by_params[f"1e{int(np.log10(max(1, r['n_params'])))}"].append(r)
    return {"overall": mean(results), "by_size": {k: mean(v) for k, v in sorted(by_size.items())},
            "by_params": {k: mean(v) for k, v in sorted(by_params.items())}}  # fmt: skip


def describe(summary: dict) -> str:
    metrics = [m for m in (*METRICS, *SEARCH_METRICS) if m in summary["overall"]]
    head = f"{'':>12} {'models':>7} " + " ".join(f"{m:>15}" for m in metrics)
    how = f", beam {summary['beam']} and pool {summary['pool']} searched" if summary.get("beam") is not None else ""
    lines = [f"{summary['zoo']} ({summary['split']} split{', blind' if summary['blind'] else ''}{how})", head]

    def line(name: str, s: dict) -> str:
        return f"{name:>12} {s['models']:>7} " + " ".join(f"{s[m]:>15.3f}" for m in metrics)

    lines.append(line("overall", summary["overall"]))
    lines += [line(f"size {k}", v) for k, v in summary["by_size"].items()]
    lines += [line(f"params {k}", v) for k, v in summary["by_params"].items()]
    return "\n".join(lines)
