"""The one base class for user mistakes.

A :class:`MetamodelsError` says what the user gave that cannot work and what was
expected (a bad file, program, option or input). The CLI prints it as one
``error:`` line and exits with status 2; any other exception is a bug and keeps
its traceback. It subclasses ValueError so callers that catch ValueError keep
working.
"""

from __future__ import annotations


class MetamodelsError(ValueError):
    """A user mistake: the message names the bad value and what was expected."""
