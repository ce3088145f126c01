"""Python programs as tokens: Python's own ``tokenize`` tokens, a fixed vocabulary, a parser and a grammar.

:func:`tokenize` gives a program text's tokens as Python's ``tokenize`` module reads them (names,
operators and numbers as written; ``<NEWLINE>``, ``<INDENT>``, ``<DEDENT>`` for the layout tokens;
comments, blank lines, the encoding and end markers dropped). :func:`parse` reads a token sequence
back into a :class:`~metamodels.python.program.PyProgram` by recursive descent over the language's
grammar; the same parser, run on a prefix, is the grammar for constrained decoding
(:func:`allowed_next`: the tokens that keep a prefix a prefix of some program).
"""

from __future__ import annotations

import dataclasses
import io
import tokenize as std_tokenize
from collections.abc import Sequence

from metamodels.errors import MetamodelsError
from metamodels.python.program import (
    Assign,
    Bound,
    Condition,
    Expr,
    If,
    Index,
    Loop,
    PyProgram,
    PythonProgramError,
    Statement,
    format_program,
)

NEWLINE, INDENT, DEDENT, EOS = "<NEWLINE>", "<INDENT>", "<DEDENT>", "<EOS>"
MAX_NUMBER = 32
NAMES = ("def", "program", "arr", "n", "len", "out", "for", "i", "j", "in", "range", "if", "return")
OPS = ("(", ")", "[", "]", ":", ",", "=", "*", "+", "-", "%", "==", "!=", ">", "<")
VOCAB: tuple[str, ...] = (EOS, NEWLINE, INDENT, DEDENT, *NAMES, *OPS, *(str(k) for k in range(MAX_NUMBER + 1)))
ID = {t: k for k, t in enumerate(VOCAB)}
_LAYOUT = {std_tokenize.NEWLINE: NEWLINE, std_tokenize.INDENT: INDENT, std_tokenize.DEDENT: DEDENT}
_SKIP = {std_tokenize.ENCODING, std_tokenize.ENDMARKER, std_tokenize.NL, std_tokenize.COMMENT}


def tokenize(text: str) -> list[str]:
    """The tokens of a program text (PythonProgramError if Python cannot tokenize it)."""
    out = []
    try:
        for tok in std_tokenize.tokenize(io.BytesIO(text.encode()).readline):
            if tok.type in _SKIP:
                continue
            out.append(_LAYOUT.get(tok.type, tok.string))
    except (std_tokenize.TokenError, IndentationError, SyntaxError) as e:
        raise PythonProgramError(f"cannot tokenize the program: {e}") from None
    return out


def token_ids(tokens: Sequence[str]) -> list[int]:
    """Vocabulary ids of tokens, ``<EOS>`` appended."""
    unknown = [t for t in tokens if t not in ID]
    if unknown:
        raise PythonProgramError(f"tokens outside the vocabulary: {unknown[:5]}")
    return [ID[t] for t in tokens] + [ID[EOS]]


class _Incomplete(Exception):
    """The tokens ended where the grammar needs more."""


class _Reader:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens, self.at = list(tokens), 0

    def peek(self) -> str:
        if self.at >= len(self.tokens):
            raise _Incomplete
        return self.tokens[self.at]

    def take(self, *expected: str) -> str:
        t = self.peek()
        if t not in expected:
            raise PythonProgramError(f"token {self.at} is {t!r}, expected one of {list(expected)}")
        self.at += 1
        return t

    def expect(self, text: str) -> None:
        for t in text.split():
            self.take(t)

    def number(self) -> int:
        t = self.peek()
        if not t.isdigit() or int(t) > MAX_NUMBER:
            raise PythonProgramError(f"token {self.at} is {t!r}, expected a number 0..{MAX_NUMBER}")
        self.at += 1
        return int(t)


def parse(tokens: Sequence[str]) -> PyProgram:
    """The program a complete token sequence spells (a trailing ``<EOS>`` is allowed); PythonProgramError if none."""
    r = _Reader(tokens)
    try:
        program = _program(r)
        if r.at < len(r.tokens) and r.tokens[r.at] == EOS:
            r.at += 1
        if r.at != len(r.tokens):
            raise PythonProgramError(f"tokens after the end of the program, from token {r.at}")
    except _Incomplete:
        raise PythonProgramError("the program is incomplete") from None
    return program


def parse_text(text: str) -> PyProgram:
    """The program of a text (as :func:`~metamodels.python.program.format_program` writes it, or Python-equivalent)."""
    return parse(tokenize(text))


def viable(tokens: Sequence[str]) -> bool:
    """Whether ``tokens`` is a prefix of some program's tokens (``<EOS>`` only right after a whole program)."""
    r = _Reader(tokens)
    try:
        _program(r)
    except _Incomplete:
        return True
    except PythonProgramError:
        return False
    rest = r.tokens[r.at :]
    return rest in ([], [EOS])


def allowed_next(prefix: Sequence[str]) -> list[str]:
    """The vocabulary tokens that keep ``prefix`` viable (the grammar mask of constrained decoding)."""
    return [t for t in VOCAB if viable([*prefix, t])]


def _program(r: _Reader) -> PyProgram:
    r.expect(f"def program ( arr ) : {NEWLINE} {INDENT} n = len ( arr ) {NEWLINE} out = [ 0 ] * n {NEWLINE}")
    loops = [_loop(r, "i", 0)]
    while r.peek() == "for":
        loops.append(_loop(r, "i", 0))
    r.expect(f"return out {NEWLINE} {DEDENT}")
    return PyProgram(tuple(loops))


def _loop(r: _Reader, var: str, depth: int) -> Loop:
    r.expect(f"for {var} in range (")
    start = _bound(r)
    r.take(",")
    stop = _bound(r)
    r.expect(f") : {NEWLINE} {INDENT}")
    body: list[Statement] = [_statement(r, depth)]
    while r.peek() != DEDENT:
        body.append(_statement(r, depth))
    r.take(DEDENT)
    return Loop(var, start, stop, tuple(body))  # type: ignore[arg-type]


def _statement(r: _Reader, depth: int) -> Statement:
    t = r.take("out", "if", *(("for",) if depth == 0 else ()))
    r.at -= 1
    if t == "out":
        return _assign(r, depth)
    if t == "for":
        return _loop(r, "j", depth + 1)
    r.take("if")
    condition = _condition(r, depth)
    r.expect(f": {NEWLINE} {INDENT}")
    body = [_assign(r, depth)]
    while r.peek() != DEDENT:
        body.append(_assign(r, depth))
    r.take(DEDENT)
    return If(condition, tuple(body))


def _bound(r: _Reader) -> Bound:
    if r.peek() == "n":
        r.take("n")
        if r.peek() == "-":
            r.take("-")
            return Bound(r.number(), from_n=True)
        return Bound(0, from_n=True)
    return Bound(r.number())


def _index(r: _Reader, depth: int) -> Index:
    r.take("(")
    var = r.take("i", *(("j",) if depth > 0 else ()))
    offset = 0
    if r.peek() in ("+", "-"):
        sign = 1 if r.take("+", "-") == "+" else -1
        offset = sign * r.number()
    r.take(")")
    return Index(var, offset)  # type: ignore[arg-type]


def _read(r: _Reader, name: str, depth: int) -> Index:
    """``name[(v + c) % len(name)]``."""
    r.expect(f"{name} [")
    index = _index(r, depth)
    r.expect(f"% len ( {name} ) ]")
    return index


def _assign(r: _Reader, depth: int) -> Assign:
    target = _read(r, "out", depth)
    r.take("=")
    t = r.take("arr", "-", "out")
    r.at -= 1
    if t == "-":
        r.take("-")
        expr = Expr("neg", _read(r, "arr", depth))
    elif t == "out":
        out_index = _read(r, "out", depth)
        r.take("+")
        expr = Expr("acc", _read(r, "arr", depth), out_index)
    else:
        a = _read(r, "arr", depth)
        constant = 0
        if r.peek() in ("+", "-"):
            sign = 1 if r.take("+", "-") == "+" else -1
            constant = sign * r.number()
            if constant == 0:
                raise PythonProgramError("a zero constant is not written")
        expr = Expr("arr", a, constant=constant)
    r.take(NEWLINE)
    return Assign(target, expr)


def _condition(r: _Reader, depth: int) -> Condition:
    r.expect("arr [")
    index = _index(r, depth)
    r.take("]")
    if r.peek() == "%":
        r.take("%")
        modulus = r.number()
        if modulus < 2:
            raise PythonProgramError("a condition's modulus must be at least 2")
        op = r.take("==", "!=")
        return Condition(index, op, r.number(), modulus)  # type: ignore[arg-type]
    op = r.take(">", "<")
    return Condition(index, op, r.number())  # type: ignore[arg-type]


COMPARISONS = ("==", "!=", ">", "<")


def neighbours(program: PyProgram) -> list[PyProgram]:
    """Programs of the language differing from ``program`` in one integer (an offset, bound, constant or modulus, by
    one) or one comparison; distinct (by text), ``program`` itself excluded."""
    out: dict[str, PyProgram] = {}
    for p in _variants(program):
        if not isinstance(p, PyProgram) or p == program:
            continue
        try:
            shown = format_program(p)
            if parse_text(shown) == p:
                out.setdefault(shown, p)
        except (MetamodelsError, ValueError, IndexError, SyntaxError):
            continue  # not a program of the language (e.g. a negative loop start)
    return list(out.values())


def _variants(node: object) -> list:
    """``node`` (a frozen dataclass) with one field changed, recursing into nested nodes and tuples of them."""
    out = []
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        options: list = []
        if isinstance(value, bool) or isinstance(value, str) and f.name != "op":
            continue
        if isinstance(value, int):
            options = [value - 1, value + 1]
        elif f.name == "op":
            options = [c for c in COMPARISONS if c != value]
        elif dataclasses.is_dataclass(value):
            options = _variants(value)
        elif isinstance(value, tuple):
            options = [value[:i] + (v,) + value[i + 1 :] for i, item in enumerate(value) for v in _variants(item)]
        for option in options:
            try:
                out.append(dataclasses.replace(node, **{f.name: option}))  # type: ignore[type-var]
            except (ValueError, MetamodelsError):
                continue  # a value the node refuses (e.g. a negative modulus)
    return out
