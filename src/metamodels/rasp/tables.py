"""Functions and selector predicates given as explicit value tables.

Programs people write are not drawn from a closed library: a Map may test
whether a word is a palindrome, a Select may match ``query == key + 2``. Over a
compiled model's finite value sets every such function *is* a table, and a
table is what Tracr's MLPs and attention patterns store. A :class:`Table` maps
each input value (Map), pair of values (SequenceMap) or (key, query) pair
(Select predicate, to True/False) to its output.

Values are Python literals (int, float, str, bool, and tuples of them) so a table prints as a
dict literal and reads back with :func:`ast.literal_eval`. Entries are kept in a
canonical order, so two equal tables compare, hash and print equal.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Sequence

from metamodels.errors import MetamodelsError
from metamodels.rasp import functions

Value = object


def _order(value: object) -> tuple:
    """Sort key for mixed values: numbers (bools included) by value, then strings, then tuples."""
    if isinstance(value, tuple):
        return (2, tuple(_order(v) for v in value))
    if isinstance(value, (int, float)):
        return (0, float(value), type(value).__name__)
    return (1, str(value))


def sort_values(values: Iterable[Value]) -> list[Value]:
    """``values`` in the canonical table order (mixed types allowed)."""
    return sorted(values, key=_order)


def is_literal(value: object) -> bool:
    """A value a table can hold and print: a finite number, a string, a bool, or a tuple of such values."""
    if isinstance(value, tuple):
        return all(is_literal(v) for v in value)
    return isinstance(value, (int, float, str, bool)) and not (isinstance(value, float) and not math.isfinite(value))


class NoEntry(ArithmeticError, KeyError):
    """A table called outside its domain: undefined there, as a division by zero is.

    An ArithmeticError so that Tracr's value-set inference skips the input (as it
    does for ``lambda x: 1 / x`` at 0) instead of failing the compilation.
    """


def _plain(value: Value) -> Value:
    """numpy scalars as the Python values they hold."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (int, float, str, bool)) else value


@dataclasses.dataclass(frozen=True)
class Table:
    """A finite function: ``entries`` are ``(input, output)`` pairs, one per input.

    ``arity`` 1: inputs are values; arity 2: inputs are ``(x, y)`` pairs (for a
    predicate, ``(key, query)``). Calling a table on an input it lacks raises
    :class:`NoEntry` naming the input: a table says nothing outside its domain.
    The empty table (``{}``, :meth:`unread`) is a function not read yet: what a
    program token sequence says about a table (see :mod:`metamodels.rasp.tokens`).
    """

    entries: tuple[tuple[Value, Value], ...]
    arity: int = 1

    def __post_init__(self) -> None:
        if self.arity not in (1, 2):
            raise MetamodelsError(f"a table has arity 1 or 2, not {self.arity}")
        keys = [k for k, _ in self.entries]
        if self.arity == 2 and not all(isinstance(k, tuple) and len(k) == 2 for k in keys):
            raise MetamodelsError("a two-argument table needs (x, y) pairs as inputs")
        if len(set(keys)) != len(keys):
            raise MetamodelsError("a table has one entry per input; repeated inputs found")
        for value in itertools.chain(keys, (v for _, v in self.entries if v is not None)):
            if not is_literal(value):
                raise MetamodelsError(
                    f"table values must be finite numbers, strings, booleans or tuples of them, not {value!r}"
                )
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: _order(e[0]))))

    @classmethod
    def tabulate(cls, fn: Callable[..., Value], *domains: Sequence[Value]) -> Table:
        """The table of ``fn`` over ``domains`` (one domain per argument).

        Inputs where ``fn`` raises an ArithmeticError are left out (calling the table there raises :class:`NoEntry`,
        an ArithmeticError, as ``fn`` did); where it returns None the entry is None. Both are what Tracr's
        value-set inference and MLPs make of ``fn``: no output value, an empty output.
        """
        inputs = list(set(domains[0])) if len(domains) == 1 else list(itertools.product(*map(set, domains)))
        entries = []
        for key in inputs:
            try:
                value = fn(key) if len(domains) == 1 else fn(*key)  # type: ignore[misc]
            except ArithmeticError:
                continue
            entries.append((key, _plain(value)))
        return cls(tuple(entries), len(domains))

    @classmethod
    def unread(cls, arity: int) -> Table:
        """The empty table: a function whose entries are not known (yet)."""
        return cls((), arity)

    @property
    def mapping(self) -> dict[Value, Value]:
        return dict(self.entries)

    def domain(self, position: int = 0) -> list[Value]:
        """The input values of argument ``position``, sorted."""
        keys = [k if self.arity == 1 else k[position] for k, _ in self.entries]  # type: ignore[index]
        return sort_values(set(keys))

    def __call__(self, *args: Value) -> Value:
        key = args[0] if self.arity == 1 else tuple(args)
        try:
            return self.mapping[key]
        except KeyError:
            raise NoEntry(f"table has no entry for {key!r}") from None

    @property
    def text(self) -> str:
        """Readable dict literal: ``{0: 1, 1: 0}``, ``{(0, 'a'): True, ...}``."""
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self.entries) + "}"

    def __str__(self) -> str:
        return self.text


def agrees(fn: Callable[..., Value], table: Table, *, loose: bool = False) -> bool:
    """True if ``fn`` gives the table's output on every input (errors count as disagreement).

    A bool and a number differ unless ``loose``: a value set holds ``True`` or ``1``, not both, so a table read
    from a model may show either for the other.
    """
    for key, value in table.entries:
        try:
            out = fn(key) if table.arity == 1 else fn(*key)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - any library function failing on a value simply does not match
            return False
        if out != value or (not loose and isinstance(out, bool) != isinstance(value, bool)):
            return False
    return True


def library_function(table: Table) -> str | None:
    """Name of the first library function equal to ``table`` on its domain, if any."""
    pool = functions.MAP_FUNCTIONS if table.arity == 1 else functions.SEQUENCE_MAP_FUNCTIONS
    return next((f.name for f in pool if agrees(f.fn, table)), None)


def library_predicate(table: Table) -> str | None:
    """Name of the first Tracr comparison (library order) equal to a predicate table on its domain, if any."""
    for name in functions.PREDICATES:
        if agrees(functions.predicate_fn(name), table):
            return name
    return None
