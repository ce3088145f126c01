"""Decompile trained transformers wider than the mapping zoo's: every model of a zoo built with larger vocabularies
and longer inputs (the shipped checkpoints were trained on 3-6 values and lengths 4-8), as a user would, with
``metamodels decompile``'s defaults (the shipped checkpoint, its prior, beam 8, 256 probes), measured in one run.

    metamodels zoo build zoos/wide --language rasp --n 40 --seed 1 --ops 1-3 --vocab-size 16-64 \\
        --max-seq-len 16-48 --causal-share 1 --shard-size 40 --workers 1
    python benchmarks/mapping_wide.py zoos/wide [--limit N] [--json wide.json]

One model per program (its first view). Per model: whether the decompiled program is functionally the true one (on the model's held-out inputs, as
``mapping evaluate`` scores it: ``training.score``), whether it agrees with the model (as ``decompile`` reports it:
rate and balanced rate at their bars on fresh probes), whether the true program is among the checkpoint's prior programs (then the
search could pick it without reading anything new), and the seconds taken. Summaries by vocabulary size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from metamodels.mapping import data, decompile, training
from metamodels.zoo import build, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="at most this many models (default all)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="mapping checkpoint (default: the shipped one)")
    parser.add_argument("--json", type=Path, default=None, help="write every model's record here")
    args = parser.parse_args()
    rows = [r for r in build.read_zoo(args.zoo) if r["view"] == 0][: args.limit]  # one model per program
    language = rows[0]["language"]
    checkpoint = args.checkpoint or decompile.default_checkpoint(language)
    _, vocab, meta = training.load(checkpoint)
    prior = set(meta.get("prior", []))  # train programs' texts, as the zoo writes them
    records = []
    for i, row in enumerate(rows):
        model = stats.model_from_row(row)
        start = time.perf_counter()
        result = decompile.decompile(model, checkpoint, language)
        seconds = time.perf_counter() - start
        functional = result.text is not None and _functional(vocab, row, data.parse_program(language, result.text))
        records.append({"id": row["id"], "program": row["program"], "size": row["size"],
                        "vocab": len(json.loads(row["input_vocab"])), "max_seq_len": row["max_seq_len"],
                        "params": model.n_params, "norm": model.config.norm, "activation": model.config.activation,
                        "decompiled": result.text, "origin": result.origin, "functional": functional,
                        "agrees": result.to_json()["agrees"], "in_prior": row["program"] in prior,
                        "seconds": round(seconds, 2)})  # fmt: skip
        r = records[-1]
        print(f"{i + 1}/{len(rows)} {r['id']} vocab {r['vocab']} length {r['max_seq_len']}: functional "
              f"{r['functional']}, agrees {r['agrees']}, in prior {r['in_prior']}, {seconds:.1f} s", flush=True)  # fmt: skip
    _summary(records)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))


def _functional(vocab: data.Vocabulary, row: dict, program) -> bool:
    target = [vocab.ids[t] for t in data.target_strings(row["language"], row["program"])]
    return training.score(vocab, [vocab.ids[t] for t in data.program_strings(program)], row, target)["functional"]


def _summary(records: list[dict]) -> None:
    def line(name: str, rs: list[dict]) -> str:
        n = len(rs)
        rate = lambda k: sum(r[k] for r in rs) / n  # noqa: E731
        seconds = sorted(r["seconds"] for r in rs)[n // 2]
        return (f"{name:<16} {n:>4} models  functional {rate('functional'):.3f}  agrees {rate('agrees'):.3f}  "
                f"truth in prior {rate('in_prior'):.3f}  median {seconds:.1f} s")  # fmt: skip

    print(line("all", records))
    for lo, hi in ((1, 15), (16, 31), (32, 63), (64, 150)):
        part = [r for r in records if lo <= r["vocab"] <= hi]
        if part:
            print(line(f"vocab {lo}-{hi}", part))
    for size in sorted({r["size"] for r in records}):
        print(line(f"size {size}", [r for r in records if r["size"] == size]))


if __name__ == "__main__":
    main()
