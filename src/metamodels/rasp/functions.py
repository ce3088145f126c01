"""The library of named elementwise functions and selector predicates.

Every function is a named, printable lambda. Its text is the canonical
readable form (``ast.unparse`` of the lambda), so the printer writes it and the
parser recognises it whatever the user's whitespace or parentheses.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from metamodels.errors import MetamodelsError

Value = object
Arity = Literal[1, 2]


@dataclasses.dataclass(frozen=True)
class Function:
    """A named elementwise function of one (Map) or two (SequenceMap) values.

    Invariant: ``fn`` is exactly ``eval(text)``; ``commutative`` is only set for
    two-argument functions with ``f(x, y) == f(y, x)`` for all values.
    """

    name: str
    text: str
    arity: Arity
    commutative: bool = False

    @property
    def fn(self) -> Callable[..., Value]:
        return _compiled(self.text)


_CACHE: dict[str, Callable[..., Value]] = {}


def _compiled(text: str) -> Callable[..., Value]:
    if text not in _CACHE:
        _CACHE[text] = eval(text, {"__builtins__": {"min": min, "max": max, "abs": abs}})  # noqa: S307 - library text only
    return _CACHE[text]


def normalise_lambda(text: str) -> str:
    """Canonical text of a lambda expression (raises SyntaxError if it is not one)."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Lambda):
        raise SyntaxError(f"not a lambda: {text!r}")
    return ast.unparse(node)


def _f(name: str, text: str, commutative: bool = False) -> Function:
    norm = normalise_lambda(text)
    arity = len(ast.parse(norm, mode="eval").body.args.args)  # type: ignore[attr-defined]
    return Function(name=name, text=norm, arity=arity, commutative=commutative)  # type: ignore[arg-type]


# One-argument functions (Map). The papers' examples are all here.
MAP_FUNCTIONS: tuple[Function, ...] = (
    _f("identity", "lambda x: x"),
    _f("inc", "lambda x: x + 1"),
    _f("add2", "lambda x: x + 2"),
    _f("add3", "lambda x: x + 3"),
    _f("add4", "lambda x: x + 4"),
    _f("dec", "lambda x: x - 1"),
    _f("sub2", "lambda x: x - 2"),
    _f("double", "lambda x: 2 * x"),
    _f("triple", "lambda x: 3 * x"),
    _f("square", "lambda x: x * x"),
    _f("half", "lambda x: x // 2"),
    _f("third", "lambda x: x // 3"),
    _f("negate", "lambda x: -x"),
    _f("abs", "lambda x: abs(x)"),
    _f("five_minus", "lambda x: 5 - x"),
    _f("mod2", "lambda x: x % 2"),
    _f("mod3", "lambda x: x % 3"),
    _f("mod4", "lambda x: x % 4"),
    _f("mod5", "lambda x: x % 5"),
    _f("min3", "lambda x: min(x, 3)"),
    _f("max2", "lambda x: max(x, 2)"),
    _f("is_zero", "lambda x: x == 0"),
    _f("is_one", "lambda x: x == 1"),
    _f("is_two", "lambda x: x == 2"),
    _f("not_one", "lambda x: x != 1"),
    _f("nonzero", "lambda x: x != 0"),
    _f("lt0", "lambda x: x < 0"),
    _f("lt2", "lambda x: x < 2"),
    _f("lt3", "lambda x: x < 3"),
    _f("gt0", "lambda x: x > 0"),
    _f("gt2", "lambda x: x > 2"),
    _f("gt3", "lambda x: x > 3"),
    _f("is_even", "lambda x: x % 2 == 0"),
)

# Two-argument functions (SequenceMap).
SEQUENCE_MAP_FUNCTIONS: tuple[Function, ...] = (
    _f("add", "lambda x, y: x + y", commutative=True),
    _f("sub", "lambda x, y: x - y"),
    _f("mul", "lambda x, y: x * y", commutative=True),
    _f("and", "lambda x, y: x and y"),
    _f("or", "lambda x, y: x or y"),
    _f("max", "lambda x, y: max(x, y)", commutative=True),
    _f("min", "lambda x, y: min(x, y)", commutative=True),
    _f("eq", "lambda x, y: x == y", commutative=True),
    _f("neq", "lambda x, y: x != y", commutative=True),
    _f("lt", "lambda x, y: x < y"),
    _f("gt", "lambda x, y: x > y"),
    _f("add_mod5", "lambda x, y: (x + y) % 5", commutative=True),
    _f("mul_mod5", "lambda x, y: x * y % 5", commutative=True),
    _f("x_times_y_plus_1_mod5", "lambda x, y: x * (y + 1) % 5"),
    _f("x_times_x_plus_y_mod5", "lambda x, y: x * (y + x) % 5"),
    _f("absdiff", "lambda x, y: abs(x - y)", commutative=True),
    _f("first", "lambda x, y: x"),
    _f("x_if_y", "lambda x, y: x if y else 0"),
)

FUNCTIONS: dict[str, Function] = {f.name: f for f in MAP_FUNCTIONS + SEQUENCE_MAP_FUNCTIONS}
_BY_TEXT: dict[str, Function] = {f.text: f for f in FUNCTIONS.values()}
assert len(FUNCTIONS) == len(_BY_TEXT) == len(MAP_FUNCTIONS) + len(SEQUENCE_MAP_FUNCTIONS)

# Selector predicates, as in Tracr's ``rasp.Comparison`` (``key <op> query``).
PREDICATES: tuple[str, ...] = ("EQ", "NEQ", "LT", "LEQ", "GT", "GEQ", "TRUE", "FALSE")
_PREDICATE_FNS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda key, query: key == query,
    "NEQ": lambda key, query: key != query,
    "LT": lambda key, query: key < query,
    "LEQ": lambda key, query: key <= query,
    "GT": lambda key, query: key > query,
    "GEQ": lambda key, query: key >= query,
    "TRUE": lambda key, query: True,
    "FALSE": lambda key, query: False,
}


def predicate_fn(name: str) -> Callable[[Value, Value], bool]:
    """``predicate(key, query)`` of a named comparison, as Tracr's ``rasp.Comparison`` computes it."""
    return _PREDICATE_FNS[name]


def by_name(name: str) -> Function:
    """The library function called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise MetamodelsError(f"unknown function {name!r}; expected one of {sorted(FUNCTIONS)}") from None


def by_text(text: str) -> Function | None:
    """The library function whose lambda reads ``text`` (after normalising), if any."""
    try:
        return _BY_TEXT.get(normalise_lambda(text))
    except SyntaxError:
        return None


def _code_key(fn: Callable[..., Value]) -> tuple | None:
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__closure__", None):
        return None
    return (code.co_argcount, code.co_code, code.co_consts, code.co_names, code.co_varnames)


_BY_CODE: dict[tuple, Function] = {_code_key(f.fn): f for f in FUNCTIONS.values()}  # type: ignore[misc]


def by_code(fn: Callable[..., Value]) -> Function | None:
    """The library function whose compiled lambda is ``fn``'s (same bytecode and constants), if any.

    Recognises a user's ``lambda x: x + 1`` whatever its source looks like, and never
    mistakes a closure (``lambda x: x + k``) for a library function.
    """
    key = _code_key(fn)
    return _BY_CODE.get(key) if key is not None else None
