"""Python programs with loops (paper 002, App. B.2): the structure, its readable text, and an interpreter.

A program maps a list ``arr`` of integers to a list ``out`` of the same length::

    def program(arr):
        n = len(arr)
        out = [0] * n
        for i in range(0, n):
            if arr[(i)] % 2 == 0:
                out[(i + 1) % len(out)] = -arr[(i) % len(arr)]
            for j in range(1, n):
                out[(j) % len(out)] = out[(j - 1) % len(out)] + arr[(i) % len(arr)]
        return out

``out = [0] * n``, then 1-3 outer ``for i`` loops; a loop's body holds assignments, conditionals
(whose body holds assignments) and at most one level of nested ``for j`` loops; ``return out``.
Writes and reads of ``out`` and reads of ``arr`` in assignments are taken modulo the length; a
condition reads ``arr[(v + c)]`` unmodded, so it can index out of range (Python's own semantics,
negative indices included). :func:`format_program` is the canonical text: equal programs have equal
text, and :func:`canonical_hash` is its digest. :func:`execute` interprets the structure; running
the text itself with ``exec`` is the independent oracle the tests compare it with.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Literal

from metamodels.errors import MetamodelsError

Var = Literal["i", "j"]


@dataclasses.dataclass(frozen=True)
class Index:
    """``(var + offset)``."""

    var: Var
    offset: int = 0

    def text(self) -> str:
        sign = "+" if self.offset > 0 else "-"
        return f"({self.var})" if self.offset == 0 else f"({self.var} {sign} {abs(self.offset)})"


@dataclasses.dataclass(frozen=True)
class Bound:
    """A range bound: the constant ``value``, or ``n - value`` when ``from_n``."""

    value: int
    from_n: bool = False

    def text(self) -> str:
        if not self.from_n:
            return str(self.value)
        return "n" if self.value == 0 else f"n - {self.value}"

    def of(self, n: int) -> int:
        return n - self.value if self.from_n else self.value


@dataclasses.dataclass(frozen=True)
class Expr:
    """The value assigned: ``[-]arr[(v+c) % len(arr)]``, plus ``constant``; ``accumulate`` adds ``out[...]``.

    kind ``arr``: ``arr[a] + constant`` (constant 0 is not written), ``neg``: ``-arr[a]``,
    ``acc``: ``out[o] + arr[a]``.
    """

    kind: Literal["arr", "neg", "acc"]
    arr_index: Index
    out_index: Index | None = None
    constant: int = 0

    def text(self) -> str:
        a = f"arr[{self.arr_index.text()} % len(arr)]"
        if self.kind == "neg":
            return "-" + a
        if self.kind == "acc":
            assert self.out_index is not None
            return f"out[{self.out_index.text()} % len(out)] + {a}"
        if self.constant == 0:
            return a
        return f"{a} {'+' if self.constant > 0 else '-'} {abs(self.constant)}"


@dataclasses.dataclass(frozen=True)
class Assign:
    """``out[(v+c) % len(out)] = expr``."""

    target: Index
    expr: Expr


@dataclasses.dataclass(frozen=True)
class Condition:
    """``arr[(v+c)] % modulus == rest`` (or ``!=``), or ``arr[(v+c)] > / < constant`` (modulus 0)."""

    index: Index
    op: Literal["==", "!=", ">", "<"]
    constant: int
    modulus: int = 0

    def text(self) -> str:
        read = f"arr[{self.index.text()}]"
        return (
            f"{read} % {self.modulus} {self.op} {self.constant}"
            if self.modulus
            else f"{read} {self.op} {self.constant}"
        )


@dataclasses.dataclass(frozen=True)
class If:
    condition: Condition
    body: tuple[Assign, ...]


@dataclasses.dataclass(frozen=True)
class Loop:
    """``for var in range(start, stop):`` and its body."""

    var: Var
    start: Bound
    stop: Bound
    body: tuple[Statement, ...]


Statement = Assign | If | Loop


@dataclasses.dataclass(frozen=True)
class PyProgram:
    loops: tuple[Loop, ...]

    @property
    def n_statements(self) -> int:
        """Statements in the loops (assignments, conditionals and loops, nested ones included)."""
        return sum(1 + _count(loop.body) for loop in self.loops)


def _count(body: Sequence[Statement]) -> int:
    return sum(1 + (_count(s.body) if isinstance(s, (If, Loop)) else 0) for s in body)


class PythonProgramError(MetamodelsError):
    """A Python program text outside the generated language; says where."""


INDENT = "    "


def format_program(program: PyProgram) -> str:
    """The program's canonical text (a valid Python function named ``program``)."""
    lines = ["def program(arr):", INDENT + "n = len(arr)", INDENT + "out = [0] * n"]
    for loop in program.loops:
        _format(loop, 1, lines)
    lines.append(INDENT + "return out")
    return "\n".join(lines) + "\n"


def _format(s: Statement, depth: int, lines: list[str]) -> None:
    pad = INDENT * depth
    if isinstance(s, Assign):
        lines.append(f"{pad}out[{s.target.text()} % len(out)] = {s.expr.text()}")
    elif isinstance(s, If):
        lines.append(f"{pad}if {s.condition.text()}:")
        for a in s.body:
            _format(a, depth + 1, lines)
    else:
        lines.append(f"{pad}for {s.var} in range({s.start.text()}, {s.stop.text()}):")
        for b in s.body:
            _format(b, depth + 1, lines)


def canonical_hash(program: PyProgram) -> str:
    return hashlib.sha256(format_program(program).encode()).hexdigest()


Path = tuple[int, ...]  # a statement's position: loop index, then body indices


def execute(program: PyProgram, arr: Sequence[int], skip: Path | None = None) -> list[int]:
    """``program(arr)``; ``skip`` leaves out the statement at that path. IndexError as Python raises it."""
    out = [0] * len(arr)
    for k, loop in enumerate(program.loops):
        if (k,) != skip:
            _run(loop, (k,), list(arr), out, {}, skip)
    return out


def _run(s: Statement, path: Path, arr: list[int], out: list[int], env: dict[str, int], skip: Path | None) -> None:
    if isinstance(s, Assign):
        out[_at(s.target, env) % len(out)] = _value(s.expr, arr, out, env)
        return
    if isinstance(s, If):
        c = s.condition
        x = arr[_checked(_at(c.index, env), len(arr))]
        left = x % c.modulus if c.modulus else x
        holds = {"==": left == c.constant, "!=": left != c.constant, ">": left > c.constant, "<": left < c.constant}
        if holds[c.op]:
            _block(s.body, path, arr, out, env, skip)
        return
    n = len(arr)
    for v in range(s.start.of(n), s.stop.of(n)):
        _block(s.body, path, arr, out, {**env, s.var: v}, skip)


def _block(body, path: Path, arr: list[int], out: list[int], env: dict[str, int], skip: Path | None) -> None:
    for b, inner in enumerate(body):
        if path + (b,) != skip:
            _run(inner, path + (b,), arr, out, env, skip)


def _at(index: Index, env: dict[str, int]) -> int:
    return env[index.var] + index.offset


def _checked(i: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError("list index out of range")
    return i


def _value(e: Expr, arr: list[int], out: list[int], env: dict[str, int]) -> int:
    a = arr[_at(e.arr_index, env) % len(arr)]
    if e.kind == "neg":
        return -a
    if e.kind == "acc":
        assert e.out_index is not None
        return out[_at(e.out_index, env) % len(out)] + a
    return a + e.constant


def paths(program: PyProgram) -> list[Path]:
    """Every statement's path, outer loops first, in text order."""
    out: list[Path] = []

    def walk(body: Sequence[Statement], path: Path) -> None:
        for b, s in enumerate(body):
            out.append(path + (b,))
            if isinstance(s, (If, Loop)):
                walk(s.body, path + (b,))

    walk(program.loops, ())
    return out
