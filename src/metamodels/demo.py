"""``metamodels demo``: paper 000's sort program and a sampled one, compiled, run and checked against RASP."""

from __future__ import annotations

from metamodels.artifacts import EXAMPLES
from metamodels.dataset import sampling
from metamodels.rasp import text
from metamodels.transformer import battery, compiler, forward


def run(seed: int, ops: tuple[int, int]) -> str:
    """The demo's report: each program, its compiled model, one run, and agreement with RASP evaluation on every
    battery input with distinct tokens (sort's domain)."""
    sampled = sampling.sample(sampling.SamplerConfig(min_ops=ops[0], max_ops=ops[1]), seed, 0).program
    sort = text.parse_program((EXAMPLES / "sort.rasp").read_text())
    lines = []
    for title, program in (("paper 000, Figure 2: sort", sort), (f"sampled (seed {seed}, index 0)", sampled)):
        model = compiler.compile_program(program)
        vocab, n = model.settings.vocab, model.settings.max_seq_len
        inputs = [xs for xs in battery.make_battery(vocab, n) if len(set(xs)) == len(xs)]
        outputs = forward.run(model, inputs)
        agree = sum(forward.outputs_match(out, program.evaluate(xs)) for xs, out in zip(inputs, outputs))  # type: ignore[arg-type]
        lines += [f"== {title}", text.format_program(program), f"compiled: {model.describe()}",
                  f"model({' '.join(map(str, inputs[-1]))}) = {' '.join(map(forward.show, outputs[-1]))}",
                  f"agrees with RASP evaluation on {agree}/{len(inputs)} inputs with distinct tokens", ""]  # fmt: skip
    return "\n".join(lines)
