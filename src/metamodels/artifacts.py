"""Writing artifacts safely and saying where they came from.

``atomic_write`` is the one way files are committed (write a temporary file
beside the target, then rename it over the target: a reader sees the old file or
the new one, never half of one). ``provenance`` is what every dataset manifest,
model file and checkpoint records: package versions and the git commit.
``EXAMPLES`` is where the shipped example programs and model files live.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

EXAMPLES = Path(__file__).parent / "examples"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version("metamodels")


def versions() -> dict[str, str]:
    """Versions of the packages that made an artifact."""
    return {package: _version(package) for package in ("metamodels", "tracr-pypi", "jax", "numpy")}


def git_commit() -> str:
    """The commit of the checkout this package runs from, or "unknown" (not a checkout, no git, git failed)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def provenance() -> dict[str, str]:
    """Package versions and git commit, for an artifact's metadata."""
    return {**versions(), "git_commit": git_commit()}


def atomic_write(path: str | Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    ``suffix`` ends the temporary name (some writers append their own extension unless it is there, e.g. numpy's
    ``.npz``). The temporary file is removed if ``write`` fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` to ``path``."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)
