"""Readable program text: the papers' form, printed and parsed back exactly.

    sel_1 = Select(tokens, tokens, LT)
    sop_1 = SelectorWidth(sel_1)
    sop_2 = numerical(Map(lambda x: x == 1, tokens))
    sop_3 = Map({'a': 1, 'b': 0}, tokens)          # a function as a value table
    sel_4 = Select(indices, indices, {(0, 0): False, (0, 1): True, (1, 0): False, (1, 1): False})
    return sop_1

The text is Python syntax; parsing goes through :mod:`ast`, so errors carry a
line and column. ``numerical(...)`` marks numerical encoding (categorical is the
default, ``categorical(...)`` is accepted); an ``input: tokens, indices`` header
and ``#`` comments are allowed.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

from metamodels.errors import MetamodelsError
from metamodels.rasp import functions
from metamodels.rasp.program import Op, Program
from metamodels.rasp.tables import Table

MAX_TEXT = 1_000_000  # characters of program text: far beyond any program, short of exhausting memory


class ProgramSyntaxError(MetamodelsError):
    """A program text that cannot be read; ``str()`` is one line with the position."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column = line, column


def format_program(program: Program) -> str:
    """The readable text of ``program``; ``parse_program`` reads it back equal."""
    lines = [f"{op.name} = {_format_op(op)}" + (f"  # {op.label}" if op.label else "") for op in program.ops]
    return "\n".join(lines + [f"return {program.output}"]) + "\n"


def _format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _format_op(op: Op) -> str:
    args = ", ".join(op.args)
    if op.kind in ("Map", "SequenceMap"):
        fn = op.fn.text if isinstance(op.fn, Table) else functions.by_name(op.fn).text  # type: ignore[arg-type]
        call = f"{op.kind}({fn}, {args})"
    elif op.kind == "LinearSequenceMap":
        call = f"{op.kind}({args}, {', '.join(_format_number(c) for c in op.coeffs)})"  # type: ignore[union-attr]
    elif op.kind == "Select":
        call = f"Select({args}, {op.predicate})"  # a Table prints as its dict literal
    else:
        call = f"{op.kind}({args})"
    return f"numerical({call})" if op.encoding == "numerical" else call


_HEADER = re.compile(r"^\s*input\s*:.*$", re.MULTILINE)


def read_program(path: Path, source: str | None = None) -> Program:
    """The program in file ``path`` (or ``source``, text read from it); one-line MetamodelsError naming the file."""
    try:
        return parse_program(path.read_text() if source is None else source)
    except (OSError, UnicodeDecodeError) as e:
        raise MetamodelsError(f"{path}: cannot read ({e})") from None
    except ProgramSyntaxError as e:
        raise MetamodelsError(f"{path}: {e}") from None


def parse_program(text: str) -> Program:
    """Read a program from its readable text.

    Raises :class:`ProgramSyntaxError` (a ValueError) naming the line and column
    of the first problem: Python syntax, an unknown op/function/predicate, an
    undefined variable, a type error, or a missing ``return``.
    """
    text = _HEADER.sub("", text)
    if len(text) > MAX_TEXT:
        raise ProgramSyntaxError(f"the program text has {len(text)} characters (at most {MAX_TEXT})", 1, 1)
    try:
        module = ast.parse(text)
    except SyntaxError as e:
        raise ProgramSyntaxError(e.msg, e.lineno or 1, e.offset or 1) from None
    except (MemoryError, RecursionError):  # e.g. 100,000 nested unary minus signs
        raise ProgramSyntaxError("the program text is nested too deeply to parse", 1, 1) from None
    except (UnicodeEncodeError, ValueError) as e:  # a lone surrogate, a NUL byte
        raise ProgramSyntaxError(f"the program text is not valid source ({e})", 1, 1) from None
    ops: list[Op] = []
    output: str | None = None
    for stmt in module.body:
        if output is not None:
            raise _error(stmt, "statements after 'return'")
        if isinstance(stmt, ast.Return) and isinstance(stmt.value, ast.Name):
            output = stmt.value.id
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            op = _parse_op(stmt.targets[0].id, stmt.value)
            _check_against(ops, op, stmt)
            ops.append(op)
        else:
            raise _error(stmt, "expected 'NAME = Op(...)' or 'return NAME'")
    if output is None:
        raise ProgramSyntaxError("missing 'return NAME' at the end", len(text.splitlines()) or 1, 1)
    try:
        return Program(ops=tuple(ops), output=output)
    except ValueError as e:
        raise _error(module.body[-1], str(e)) from None


def _check_against(previous: list[Op], op: Op, stmt: ast.stmt) -> None:
    try:
        Program(ops=tuple(previous) + (op,), output=op.name if op.is_sop else "tokens")
    except ValueError as e:
        if op.is_sop or "output" not in str(e):
            # Point at the offending argument when the message names one.
            culprit = next((n for n in ast.walk(stmt) if isinstance(n, ast.Name) and f"'{n.id}'" in str(e)), stmt)
            raise _error(culprit, str(e)) from None


def _error(node: ast.AST, message: str) -> ProgramSyntaxError:
    return ProgramSyntaxError(message, getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1)


def _callee(call: ast.expr) -> str | None:
    if isinstance(call, ast.Call):
        if isinstance(call.func, ast.Name):
            return call.func.id
        if isinstance(call.func, ast.Attribute):
            return call.func.attr
    return None


def _parse_op(name: str, value: ast.expr) -> Op:
    encoding = "categorical"
    if _callee(value) in ("numerical", "categorical"):
        assert isinstance(value, ast.Call)
        if len(value.args) != 1 or value.keywords:
            raise _error(value, f"{_callee(value)}(...) takes exactly one operation")
        encoding, value = _callee(value), value.args[0]  # type: ignore[assignment]
    kind = _callee(value)
    if kind is None:
        raise _error(value, "expected an operation call such as Map(...), Select(...), Aggregate(...)")
    assert isinstance(value, ast.Call)
    args = list(value.args)
    keywords = {k.arg: k.value for k in value.keywords}
    try:
        if kind in ("Map", "SequenceMap"):
            if args and isinstance(args[0], ast.Dict):
                table = _table(args[0], 1 if kind == "Map" else 2)
                return Op(name, kind, _names(args[1:], value), encoding, fn=table)  # type: ignore[arg-type]
            if not args or not isinstance(args[0], ast.Lambda):
                raise _error(
                    value, f"{kind} needs a lambda or a value table {{input: output, ...}} as its first argument"
                )
            fn = functions.by_text(ast.unparse(args[0]))
            if fn is None:
                raise _error(
                    args[0],
                    f"function {ast.unparse(args[0])!r} is not in the library; write it as a table {{input: output, ...}}",
                )
            return Op(name, kind, _names(args[1:], value), encoding, fn=fn.name)  # type: ignore[arg-type]
        if kind == "LinearSequenceMap":
            if len(args) != 4:
                raise _error(value, "LinearSequenceMap takes (x, y, factor_x, factor_y)")
            coeffs = tuple(_number(a) for a in args[2:])
            return Op(name, kind, _names(args[:2], value), encoding, coeffs=coeffs)  # type: ignore[arg-type]
        if kind == "Select":
            if "predicate" in keywords:
                args.append(keywords.pop("predicate"))
            if len(args) != 3:
                raise _error(value, "Select takes (keys, queries, PREDICATE)")
            predicate = _table(args[2], 2) if isinstance(args[2], ast.Dict) else _predicate(args[2])
            return Op(name, kind, _names(args[:2], value), None, predicate=predicate)  # type: ignore[arg-type]
        if kind in ("Aggregate", "SelectorWidth"):
            default = keywords.pop("default", None)
            if default is not None and ast.literal_eval(default) != (0 if encoding == "numerical" else None):
                raise _error(default, "Tracr supports only default=None (categorical) or default=0 (numerical)")
            return Op(name, kind, _names(args, value), encoding)  # type: ignore[arg-type]
    except ValueError as e:
        if isinstance(e, ProgramSyntaxError):
            raise
        raise _error(value, str(e)) from None
    raise _error(
        value,
        f"unknown operation {kind!r}; expected Map, SequenceMap, LinearSequenceMap, Select, Aggregate or SelectorWidth",
    )


def _names(args: list[ast.expr], call: ast.expr) -> tuple[str, ...]:
    for a in args:
        if not isinstance(a, ast.Name):
            raise _error(a, "expected a variable name")
    return tuple(a.id for a in args)  # type: ignore[attr-defined]


def _table(node: ast.Dict, arity: int) -> Table:
    try:
        keys = [ast.literal_eval(k) for k in node.keys]  # type: ignore[arg-type]
        mapping = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _error(node, "a value table holds literal values only: {input: output, ...}") from None
    if len(mapping) != len(keys):  # Python's dict keeps the last of equal keys (1 and True are equal)
        seen: list = []
        twice = next(k for k in keys if k in seen or seen.append(k))  # type: ignore[func-returns-value]
        raise _error(node, f"the table gives the key {twice!r} twice (or keys that are equal, like 1 and True)")
    try:
        return Table(tuple(mapping.items()), arity)
    except ValueError as e:
        raise _error(node, str(e)) from None


def _number(node: ast.expr) -> float:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _error(node, "expected a finite number")
    return float(value)


def _predicate(node: ast.expr) -> str:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    if name not in functions.PREDICATES:
        raise _error(
            node, f"unknown predicate {ast.unparse(node)!r}; expected one of {', '.join(functions.PREDICATES)}"
        )
    return name  # type: ignore[return-value]
