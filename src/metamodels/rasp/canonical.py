"""Canonical form of a program, for deduplication and tokenization.

Canonicalising: dead code is removed; a Select used by several operations is
copied so each Aggregate/SelectorWidth has its own; arguments of commutative
functions are ordered; operations are ordered by (Tracr sublayer, structure);
sequence variables are renamed ``sop_0, sop_1, ...`` in that order and each
Select ``sel_k`` after the operation ``sop_k`` that uses it. Two programs that
differ only in naming, definition order or the argument order of a commutative
operation have the same canonical form and hash.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

from metamodels.rasp import functions, layers, text
from metamodels.rasp.program import INPUTS, Op, Program
from metamodels.rasp.tables import Table


def structure_keys(program: Program) -> dict[str, str]:
    """A naming-independent digest of each variable's whole computation."""

    @functools.cache
    def key(name: str) -> str:
        if name in INPUTS:
            return name
        op = program.by_name[name]
        ordered, coeffs = _ordered_args(op, {a: key(a) for a in op.args})
        args = [key(a) for a in ordered]
        # Tables count as one function here, so op order (and so tokens) does not depend on their entries.
        fn, predicate = ("table" if isinstance(f, Table) else f for f in (op.fn, op.predicate))
        head = f"{op.kind}|{op.encoding}|{fn}|{predicate}|{coeffs}|{','.join(args)}"
        return hashlib.sha1(head.encode()).hexdigest()[:16]

    return {name: key(name) for name in (*INPUTS, *program.by_name)}


def canonicalize(program: Program) -> Program:
    """The canonical form of ``program`` (see module docstring); idempotent."""
    program = program.without_dead_code()
    keys = structure_keys(program)
    sublayer = layers.assign_sublayers(program)
    sops = sorted((op for op in program.ops if op.is_sop), key=lambda op: (sublayer[op.name], keys[op.name]))
    rename = {name: name for name in INPUTS} | {op.name: f"sop_{i}" for i, op in enumerate(sops)}
    ops: list[Op] = []
    for op in sops:
        args, coeffs = _ordered_args(op, keys)
        if op.kind in ("Aggregate", "SelectorWidth"):
            select = program.by_name[op.args[0]]
            args[0] = f"sel_{rename[op.name].removeprefix('sop_')}"
            rename[args[0]] = args[0]
            ops.append(dataclasses.replace(select, name=args[0], args=tuple(rename[a] for a in select.args)))
        ops.append(dataclasses.replace(op, name=rename[op.name], args=tuple(rename[a] for a in args), coeffs=coeffs))
    return Program(ops=tuple(ops), output=rename[program.output])


def _ordered_args(op: Op, keys: dict[str, str]) -> tuple[list[str], tuple[float, float] | None]:
    """Arguments (and LinearSequenceMap factors) in canonical order."""
    if isinstance(op.fn, str) and functions.by_name(op.fn).commutative:
        return sorted(op.args, key=keys.__getitem__), op.coeffs
    if op.kind == "LinearSequenceMap":
        pairs = sorted(zip(op.args, op.coeffs), key=lambda p: (keys[p[0]], p[1]))  # type: ignore[arg-type]
        return [a for a, _ in pairs], (pairs[0][1], pairs[1][1])
    return list(op.args), op.coeffs


def canonical_hash(program: Program) -> str:
    """Hex digest identifying a program up to naming, order and commutativity."""
    return hashlib.sha256(text.format_program(canonicalize(program)).encode()).hexdigest()
