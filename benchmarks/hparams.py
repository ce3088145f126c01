"""Hyperparameters from CNN weights (paper 000, App. A): every meta-model and baseline on one CNN zoo, trained on the
same runs and scored on the same test split, plus a data-efficiency curve (ours and StatNN on fewer training runs).

    python benchmarks/hparams.py ZOO --out docs/hparams/skb [--steps 1500] [--sizes 24,72,240] [--methods ...]

Each result is a JSON file in OUT (an existing one is kept, so a rerun resumes); then OUT/results.md (the table)
and OUT/efficiency.png (mean accuracy by training runs) are written from all of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from metamodels.hparams import baselines, training  # noqa: E402

NEURAL = ("ours", "paper", "mlp", "ejr")


def run(zoo: Path, out: Path, method: str, steps: int, train_runs: int | None, seed: int) -> dict:
    path = out / f"{method}-{train_runs or 'all'}.json"
    if path.exists():
        return json.loads(path.read_text())
    if method in NEURAL:
        summary = {**training.evaluate(_trained(zoo, out, method, steps, train_runs, seed), zoo, "test"), "steps": steps}
    elif method == "ours+boost":
        ours = _trained(zoo, out, "ours", steps, train_runs, seed)
        summary = {**baselines.evaluate(zoo, method, "test", train_runs, seed, ours), "steps": steps}
    else:
        summary = baselines.evaluate(zoo, method, "test", train_runs, seed)
    path.write_text(json.dumps(summary, indent=1))
    print(path.name, json.dumps(summary["accuracy"]))
    return summary


def _trained(zoo: Path, out: Path, method: str, steps: int, train_runs: int | None, seed: int) -> Path:
    """The checkpoint of ``method`` on ``train_runs`` runs, trained unless this run already has it (removed at the
    end: results are the artifact; the same command rebuilds the checkpoints)."""
    ckpt = out / f"{method}-{train_runs or 'all'}.safetensors"
    if not ckpt.exists():
        cfg = training.HparamsConfig(model=method, steps=steps, train_runs=train_runs, seed=seed)  # type: ignore[arg-type]
        training.train(zoo, ckpt, cfg)
    return ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=training.HparamsConfig.steps,
                        help="optimizer steps of each neural meta-model (default: hparams train's)")
    parser.add_argument("--sizes", default="24,72,240", help="training-run counts of the data-efficiency curve")
    parser.add_argument("--curve", default="statnn,ours,ours+boost", help="methods of the data-efficiency curve")
    parser.add_argument("--methods", default=",".join(("majority", "statnn", *NEURAL, "ours+boost")),
                        help="methods of the table (majority first: the plot's floor)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run(args.zoo, args.out, m, args.steps, None, args.seed) for m in args.methods.split(",")]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    curve = {m: [run(args.zoo, args.out, m, args.steps, n, args.seed) for n in sizes] for m in args.curve.split(",") if m}
    labels = [k for k in results[0]["accuracy"] if k != "mean"]
    lines = [f"Test split: {results[0]['checkpoints']} checkpoints of {results[0]['runs']} held-out runs; "
             f"training on {results[0]['train_runs']} runs (all their checkpoints). Accuracy per label:", "",
             "| method | " + " | ".join([*labels, "mean"]) + " |", "|---" * (len(labels) + 2) + "|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r['accuracy'][k]:.3f}" for k in [*labels, "mean"]) + " |")
    lines += ["", "Data efficiency (mean accuracy by training runs):", "",
              "| method | " + " | ".join(map(str, [*sizes, results[0]["train_runs"]])) + " |",
              "|---" * (len(sizes) + 2) + "|"]  # fmt: skip
    full = {r["method"]: r for r in results}
    for m, points in curve.items():
        lines.append(f"| {m} | " + " | ".join(f"{p['accuracy']['mean']:.3f}" for p in [*points, full[m]]) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m, points in curve.items():
        ps = [*points, full[m]]
        ax.plot([p["train_runs"] for p in ps], [p["accuracy"]["mean"] for p in ps], marker="o", label=m)
    ax.axhline(full["majority"]["accuracy"]["mean"], color="grey", ls=":", label="majority")
    ax.set(xscale="log", xlabel="training runs (CNNs, all their checkpoints)", ylabel="mean test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "efficiency.png", dpi=120)
    for ckpt in args.out.glob("*.safetensors"):
        ckpt.unlink()


if __name__ == "__main__":
    main()
