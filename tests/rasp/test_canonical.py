"""Canonical form: invariant to naming, order and commutativity; idempotent; distinguishes programs."""

from __future__ import annotations

import dataclasses

import numpy as np

from metamodels.rasp import canonical, text
from metamodels.rasp.program import INPUTS, Program
from tests import cases


def _rename(program: Program, rng: np.random.Generator) -> Program:
    names = [op.name for op in program.ops]
    new = dict(zip(names, (f"v{i}_{int(rng.integers(1000))}" for i in rng.permutation(len(names)))))
    new.update({n: n for n in INPUTS})
    ops = tuple(dataclasses.replace(op, name=new[op.name], args=tuple(new[a] for a in op.args)) for op in program.ops)
    return Program(ops=ops, output=new[program.output])


def _swap_commutative(program: Program) -> Program:
    from metamodels.rasp import functions

    ops = []
    for op in program.ops:
        if op.fn and functions.by_name(op.fn).commutative or op.kind == "LinearSequenceMap":
            op = dataclasses.replace(op, args=op.args[::-1], coeffs=op.coeffs[::-1] if op.coeffs else None)
        ops.append(op)
    return Program(ops=tuple(ops), output=program.output)


def test_hash_invariant_to_renaming_and_commutative_swaps():
    rng = np.random.default_rng(0)
    for s in cases.sampled(300, seed=0):
        h = canonical.canonical_hash(s.program)
        assert canonical.canonical_hash(_rename(s.program, rng)) == h
        assert canonical.canonical_hash(_swap_commutative(s.program)) == h
        assert canonical.canonicalize(s.program) == canonical.canonicalize(canonical.canonicalize(s.program))


def test_functionally_different_programs_get_different_hashes():
    programs = [s.program for s in cases.sampled(300, seed=0)]
    assert len({canonical.canonical_hash(p) for p in programs}) == len(programs)


def test_non_commutative_swap_changes_the_hash():
    a = text.parse_program("s = SequenceMap(lambda x, y: x - y, tokens, indices)\nreturn s\n")
    b = text.parse_program("s = SequenceMap(lambda x, y: x - y, indices, tokens)\nreturn s\n")
    c = text.parse_program("s = SequenceMap(lambda x, y: x + y, indices, tokens)\nreturn s\n")
    d = text.parse_program("s = SequenceMap(lambda x, y: x + y, tokens, indices)\nreturn s\n")
    assert canonical.canonical_hash(a) != canonical.canonical_hash(b)
    assert canonical.canonical_hash(c) == canonical.canonical_hash(d)


def test_dead_code_removed_and_shared_selects_copied():
    p = text.parse_program(
        "dead = Map(lambda x: x + 1, tokens)\ns = Select(tokens, tokens, LT)\nw = SelectorWidth(s)\n"
        "a = Aggregate(s, tokens)\nm = SequenceMap(lambda x, y: x + y, w, a)\nreturn m\n"
    )
    q = canonical.canonicalize(p)
    assert [op.kind for op in q.ops].count("Select") == 2
    assert all(op.name != "dead" for op in q.ops) and q.n_ops == 3
    for xs in ([1, 2, 3], [3, 1, 2, 5]):
        assert q.evaluate(xs) == p.evaluate(xs)


def test_canonical_form_computes_the_same_function():
    for s in cases.sampled(100, seed=0):
        q = canonical.canonicalize(_swap_commutative(s.program))
        for xs in ([1, 2, 3], [5, 4, 4, 1]):
            assert q.evaluate(xs) == s.program.evaluate(xs)
