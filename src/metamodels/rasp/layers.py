"""Where Tracr places each operation: a pure-Python twin of its layer allocation.

Tracr (``craft_graph_to_model._allocate_modules_to_layers``) gives every
operation a depth (longest path from the inputs counting sequence operations),
condenses an all-attention depth followed by an all-MLP depth into one, then
lays depths out as [attention, MLP] pairs. Aggregates are attention,
Map/SequenceMap/LinearSequenceMap are MLPs, SelectorWidth is an attention+MLP
block placed at its attention sublayer. The test suite checks this twin against
the allocation the compiler reports.
"""

from __future__ import annotations

import functools

from metamodels.rasp.program import INPUTS, Program

_ATTN, _MLP, _BLOCK = "attn", "mlp", "block"


def _module(kind: str) -> str:
    return {"Aggregate": _ATTN, "SelectorWidth": _BLOCK}.get(kind, _MLP)


def depths(program: Program) -> dict[str, int]:
    """Computational depth of every sequence operation (inputs are depth 0)."""

    @functools.cache
    def depth(name: str) -> int:
        if name in INPUTS:
            return 0
        op = program.by_name[name]
        # Selects are not sequence operations: look through them to their keys and queries.
        parents = [p for arg in op.args for p in (program.by_name[arg].args if _is_select(program, arg) else (arg,))]
        return 1 + max(depth(p) for p in parents)

    return {op.name: depth(op.name) for op in program.ops if op.is_sop}


def _is_select(program: Program, name: str) -> bool:
    return name in program.by_name and not program.by_name[name].is_sop


def assign_sublayers(program: Program) -> dict[str, int]:
    """Sublayer index of every live sequence operation: 0 attn, 1 MLP, 2 attn, 3 MLP, ..."""
    program = program.without_dead_code()  # Tracr only sees what the output depends on
    depth_of = depths(program)
    module_of = {op.name: _module(op.kind) for op in program.ops if op.is_sop}
    by_depth: dict[int, list[str]] = {}
    for name, d in depth_of.items():
        by_depth.setdefault(d, []).append(name)
    if not by_depth:
        return {}
    d, max_depth = min(by_depth), max(by_depth)
    while d < max_depth:
        here, there = by_depth.get(d, []), by_depth.get(d + 1, [])
        if all(module_of[n] == _ATTN for n in here) and all(module_of[n] == _MLP for n in there):
            for update in range(d + 1, max_depth + 1):
                for name in by_depth.get(update, []):
                    depth_of[name] = update - 1
                by_depth.setdefault(update - 1, []).extend(by_depth.get(update, []))
                by_depth[update] = []
            max_depth -= 1
        d += 1
    # Tracr walks depths upwards from 1, two sublayers per depth.
    return {name: 2 * (d - 1) + (module_of[name] == _MLP) for name, d in depth_of.items()}


def n_layers(program: Program) -> int:
    """Number of transformer layers (attention + MLP pairs) Tracr builds for ``program``."""
    sublayers = assign_sublayers(program)
    return max(sublayers.values()) // 2 + 1 if sublayers else 0
