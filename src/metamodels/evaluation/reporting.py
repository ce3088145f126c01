"""An evaluation report as plain-text tables and a plot."""

from __future__ import annotations

from pathlib import Path

from metamodels.evaluation import metrics


def format_programs(report: dict) -> str:
    """Every example of the report: its verdict, the true program and the decoded one."""
    lines = []
    for r in report["examples"]:
        verdict = "exact" if r["exact"] else "functional" if r["functional"] else "WRONG"
        if not r["functional"] and r["functional_readout"]:
            verdict = "functional after readout"
        lines.append(f"== {r['id']} ({verdict})\n-- truth\n{r['truth']}-- decoded\n{r.get('decoded') or '(none)'}")
    return "\n".join(lines)


def plot(report: dict, png: str | Path) -> None:
    """Accuracy against number of ops (paper 000, Figure 3 right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted(int(k) for k in report["by_n_ops"])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, label in [
        ("teacher_forced_token", "token accuracy (teacher-forced)"),
        ("functional_readout", "functional accuracy (greedy + readout)"),
        ("functional", "functional accuracy (greedy)"),
        ("exact", "exact program (greedy)"),
    ]:
        ax.plot(ops, [report["by_n_ops"][k][key] for k in ops], marker="o", label=label)
    ax.set(
        xlabel="number of ops",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title=f"{report['split']} split, n={report['n_examples']}",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def format_table(report: dict) -> str:
    """The report's rates as plain-text tables: by op count (and vocabulary kind, causal) plus the total."""
    lines = [f"{report['split']} split of {report['data']}"]
    if report.get("densified"):
        d = report["densified"]
        lines.append(
            f"densified (fidelity bar {report['dense']['fidelity']}): width {d['width_ratio_mean']:.2f} of the "
            f"original on average, {d['compressed']:.0%} compressed, held-out fidelity mean {d['fidelity_mean']:.3f}, "
            f"min {d['fidelity_min']:.3f}"
        )
    for group, title in (("n_ops", "ops"), ("vocab_kind", "vocab"), ("causal", "causal")):
        if f"by_{group}" not in report:
            continue
        lines.append(f"{title:>8} {'n':>5} {'exact':>7} {'funct.':>7} {'+readout':>8} {'tf tok':>7} {'tf prog':>7} "
                     f"{'guided':>7}")  # fmt: skip
        for k, r in [*report[f"by_{group}"].items(), ("all", report["overall"])]:
            lines.append(
                f"{k!s:>8} {r['n']:>5} {r['exact']:>7.3f} {r['functional']:>7.3f} {r['functional_readout']:>8.3f} "
                f"{r['teacher_forced_token']:>7.3f} {r['teacher_forced_program']:>7.3f} {r.get('guided', 0.0):>7.3f}"
            )
    lines.append(
        "fields (teacher-forced): " + ", ".join(f"{f} {a:.3f}" for f, a in report["overall"]["fields"].items())
    )
    if report["overall"]["unsupported"]:
        lines.append(f"unsupported by the encoder (counted wrong): {report['overall']['unsupported']}")
    if "verification" in report:
        v = report["verification"]
        lines.append(f"verification (beam {v['beam']}): {_verified_line(v)}")
        for group in metrics.GROUPS:
            for k, r in v.get(f"by_{group}", {}).items():
                lines.append(f"  {group} {k}: {_verified_line(r)}")
    return "\n".join(lines)


def _verified_line(v: dict) -> str:
    rates = ", ".join(f"{k} {v[k]:.3f}" for k in v if k.startswith("verified@"))
    wired = f", read whole from the weights {v['wired']:.3f}" if v.get("wired") else ""
    return f"{rates}{wired}, false verification {v['false_verification']:.3f} (n={v['n']})"
