"""Command-line options derived from config dataclasses, so that each default is declared once: in its config.

A config field becomes an option when it is declared with :func:`option` (help text and, where the field's
name or type does not say it, the flag, a parser or a paired field). The option's argparse default is None
("not given"): :func:`config_from` passes only the options that were given, so the dataclass default applies
otherwise, and a value read from a file can sit underneath the command line.

The command table of :mod:`metamodels.cli` is built from :func:`arg`, :func:`add_options` and
:func:`subcommands`; :func:`add_commands` builds only the chosen command's arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from metamodels.errors import MetamodelsError

_MISSING: Any = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    upper: str | None = None,
    show: Callable[[Any], str] | None = None,
    metavar: str | None = None,
    repeat: bool = False,
) -> Any:
    """A dataclass field that is also a command-line option.

    ``flag``: the option's name (default ``--field-name``; a name without dashes is positional). ``parse``:
    text -> value (default: from the field's type). ``upper``: this field and the named one are set together
    from one ``A-B`` range option (the upper field is declared without :func:`option`). ``show``: how the
    default is printed in the help. ``repeat``: the option may be given several times (a tuple of values).
    """
    cli = {
        "help": help,
        "flag": flag,
        "parse": parse,
        "upper": upper,
        "show": show,
        "metavar": metavar,
        "repeat": repeat,
    }
    return dataclasses.field(default=default, metadata={"cli": cli})


def parse_range(text: str) -> tuple[int, int]:
    """'3' -> (3, 3); '2-5' -> (2, 5); 1 <= A <= B."""
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or A-B, got {text!r}") from None
    if not 1 <= a <= b:
        raise argparse.ArgumentTypeError(f"expected 1 <= A <= B, got {text!r}")
    return a, b


def parse_ints(text: str) -> tuple[int, ...]:
    """'1,4,8' -> (1, 4, 8)."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def parse_value(text: str) -> int | float | str:
    """'3' -> 3, '0.5' -> 0.5, anything else stays text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_vocab(text: str) -> tuple:
    """'1,2,3' -> (1, 2, 3); 'a,b' -> ('a', 'b'); '1-5' -> (1, ..., 5)."""
    if "," not in text and "-" in text.strip("-") and not text.startswith("-"):
        lo, _, hi = text.partition("-")
        if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi)):
            raise argparse.ArgumentTypeError(
                f"expected A-B with 0 <= A <= B, or values separated by commas; got {text!r}"
            )
        return tuple(range(int(lo), int(hi) + 1))
    values = tuple(parse_value(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError("the vocabulary is empty")
    return values


def show_vocab(vocab: tuple) -> str:
    return ",".join(map(str, vocab))


def _show_range(value: tuple[int, int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"


def _cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]


def _base_type(hint: Any) -> Any:
    """``int | None`` -> int; other hints unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def add_options(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """Add an option for each :func:`option` field of ``cls`` (or those named in ``only``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for f in _cli_fields(cls):
        if only is not None and f.name not in only:
            continue
        cli, hint = f.metadata["cli"], _base_type(hints[f.name])
        flag = cli["flag"] or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"help": cli["help"], "metavar": cli["metavar"]}
        default = f.default
        if cli["upper"] or hint == tuple[int, int]:  # an A-B range: one field, or this one and its upper
            if cli["upper"]:
                default = (f.default, fields[cli["upper"]].default)  # type: ignore[assignment]
            kwargs["type"], show = cli["parse"] or parse_range, cli["show"] or _show_range
            kwargs["metavar"] = cli["metavar"] or "A-B"
        elif hint is bool:  # a flag: giving it flips the default (e.g. --no-readout sets read_tables=False)
            kwargs = {"help": cli["help"], "action": "store_const", "const": default is not True}
            show = None
        elif typing.get_origin(hint) is typing.Literal:
            kwargs["choices"], show = typing.get_args(hint), cli["show"] or str
        elif cli["repeat"]:
            kwargs.update(action="append", type=cli["parse"] or str)  # the option once for each value
            show = None
        else:
            kwargs["type"], show = cli["parse"] or hint, cli["show"] or str
        if show is not None and default not in (_MISSING, None):
            kwargs["help"] += f" (default {show(default)})"  # type: ignore[arg-type]
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if flag.isidentifier():  # positional
            parser.add_argument(f.name, **kwargs)
        else:
            parser.add_argument(flag, dest=f.name, default=None, required=default is _MISSING, **kwargs)


def config_from(args: argparse.Namespace, cls: type, base: dict | None = None, /, **fixed: Any) -> Any:
    """``cls`` from the options that were given, over ``base`` (e.g. read from a file), with ``fixed`` last."""
    values = dict(base or {})
    for f in _cli_fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.metadata["cli"]["upper"]:
            values[f.name], values[f.metadata["cli"]["upper"]] = value
        else:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**{**values, **fixed})
    except TypeError as e:  # a required field not given, or a file's field of the wrong kind
        raise MetamodelsError(f"{cls.__name__}: {e}") from None


def given(args: argparse.Namespace, cls: type) -> list[str]:
    """The flags of ``cls``'s options that were given on the command line."""
    return [f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")
            for f in _cli_fields(cls) if getattr(args, f.name, None) is not None]  # fmt: skip


class Parser(argparse.ArgumentParser):
    """An argument parser that reports a bad command line as one ``error:`` line (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


Argument = Callable[[argparse.ArgumentParser], object]  # adds one argument (or a group of them) to a parser
Command = tuple[str, "str | None", list[Argument]]  # help line, description (None: the help line), arguments


def arg(*flags: str, **kwargs: Any) -> Argument:
    """One ``add_argument`` call, made when the command it belongs to is chosen."""
    return lambda p: p.add_argument(*flags, **kwargs)


def add_commands(
    p: argparse.ArgumentParser, dest: str, commands: dict[str, Command], chosen: str | None = None
) -> None:
    """A subcommand per entry; only the ``chosen`` one's arguments are built (all of them when None)."""
    sub = p.add_subparsers(dest=dest, required=True, parser_class=Parser)
    for name, (help, description, arguments) in commands.items():
        q = sub.add_parser(name, help=help, description=description or help)
        for add in arguments if chosen in (None, name) else ():
            add(q)


def subcommands(dest: str, commands: dict[str, Command]) -> Argument:
    """Nested subcommands (e.g. ``dataset build``), as one argument of their parent command."""
    return lambda p: add_commands(p, dest, commands)
