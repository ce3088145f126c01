"""Options derived from config dataclasses: the default is the field's, shown in the help, applied when not given."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest

from metamodels import options
from metamodels.errors import MetamodelsError


@dataclasses.dataclass(frozen=True)
class Toy:
    name: str = options.option(help="a required name")
    size: int = options.option(3, help="how many")
    low: int = options.option(1, flag="--range", upper="high", help="a range")
    high: int = 4
    kind: Literal["a", "b"] = options.option("a", help="which kind")
    span: tuple[int, int] = options.option((2, 2), help="fixed or drawn")
    paths: tuple[str, ...] = options.option((), repeat=True, help="repeatable")
    flag: bool = options.option(False, help="a switch")
    keep: bool = options.option(True, flag="--no-keep", help="a switch that turns a default-on field off")
    hidden: float = 0.5  # not an option


def _parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    options.add_options(parser, Toy)
    return parser, parser.parse_args(argv)


def test_defaults_come_from_the_fields_and_only_given_options_override_them():
    _, args = _parse(["--name", "x"])
    assert options.config_from(args, Toy) == Toy(name="x")
    _, args = _parse(["--name", "x", "--size", "5", "--range", "2-7", "--kind", "b", "--span", "3-4",
                      "--paths", "p", "--paths", "q", "--flag", "--no-keep"])  # fmt: skip
    assert options.config_from(args, Toy) == Toy("x", 5, 2, 7, "b", (3, 4), ("p", "q"), True, False)
    _, args = _parse(["--name", "x"])
    assert options.config_from(args, Toy, {"size": 9}).size == 9  # a value from a file under the command line
    _, args = _parse(["--name", "x", "--size", "5"])
    assert options.config_from(args, Toy, {"size": 9}).size == 5


def test_help_shows_each_default_and_choices_and_ranges_are_checked(capsys):
    parser, _ = _parse(["--name", "x"])
    text = parser.format_help()
    assert "(default 3)" in text and "(default 1-4)" in text and "{a,b}" in text and "(default 2)" in text
    assert "hidden" not in text
    for bad in (["--name", "x", "--kind", "c"], ["--name", "x", "--range", "5-2"], ["--size", "1"]):
        with pytest.raises(SystemExit):
            _parse(bad)


def test_a_missing_required_field_is_a_user_error():
    args = argparse.Namespace(name=None, size=None, low=None, kind=None, span=None, paths=None, flag=None, keep=None)
    with pytest.raises(MetamodelsError, match="Toy"):
        options.config_from(args, Toy)


def test_vocabularies_parse_as_numbers_ranges_or_words():
    assert options.parse_vocab("1-5") == (1, 2, 3, 4, 5)
    assert options.parse_vocab("a,b") == ("a", "b") and options.parse_vocab("0.5,1") == (0.5, 1)
    with pytest.raises(argparse.ArgumentTypeError):
        options.parse_vocab(",")


def test_a_command_table_builds_only_the_chosen_commands_arguments():
    built: list[str] = []

    def record(name: str) -> options.Argument:
        return lambda p: built.append(name) or p.add_argument(f"--{name}", type=int)

    table = {"a": ("command a", None, [record("x")]), "b": ("command b", "B in full", [record("y")])}
    parser = options.Parser(prog="toy")
    options.add_commands(parser, "command", table, chosen="a")
    assert vars(parser.parse_args(["a", "--x", "3"])) == {"command": "a", "x": 3} and built == ["x"]
    with pytest.raises(SystemExit):
        parser.parse_args(["b", "--y", "3"])  # b's arguments were never built
