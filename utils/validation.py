"""One error format for bad input, used by every public entry point.

Every check raises :class:`ValueError` (or :class:`UQError`, a subclass) with a message that names the
parameter, the value received and the accepted values, e.g.::

    ValueError: method='GAX' is not accepted; accepted values: 'GA', 'GA_GDR', ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: kernel file systems: never a place to write a run's output or a model cache
SYSTEM_ROOTS = ("/proc", "/sys")


class UQError(ValueError):
    """A clear, user-facing error about a parameter (a ``ValueError``)."""


def check_choice(name: str, value: Any, accepted: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``accepted``; otherwise raise naming ``name`` and the choices."""
    accepted = list(accepted)
    if value not in accepted:
        choices = ", ".join(repr(a) for a in accepted)
        raise UQError(f"{name}={value!r} is not accepted; accepted values: {choices}")
    return value


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Return ``value`` if it is a number within the stated bounds; otherwise raise a clear error."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise UQError(f"{name}={value!r} is not accepted; it must be {kind}{_bounds(low, high, low_inclusive, high_inclusive)}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high or not math.isfinite(value):  # NaN and +-inf are never accepted
        raise UQError(f"{name}={value!r} is out of range; it must be {kind}{_bounds(low, high, low_inclusive, high_inclusive)}")
    return value


def check_writable_dir(name: str, path: Any) -> Path:
    """Return ``path`` (expanded) if a folder can be created or written there; otherwise one clear error.

    Nothing is created: ``path`` must not lie under ``/proc`` or ``/sys``, neither it nor any ancestor
    may be a regular file (or anything else that is not a folder), and its nearest existing ancestor
    must be a folder this process can write to.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip():
        raise UQError(f"{name}={path!r} is not accepted; accepted values: a folder path")
    folder = Path(path).expanduser()
    shown = f"{name}={os.fspath(path)!r}"
    accepted = "accepted values: a folder (existing or new) on a writable disk"
    absolute = Path(os.path.abspath(folder))
    for candidate in (absolute, absolute.resolve()):
        for root in SYSTEM_ROOTS:
            if candidate == Path(root) or Path(root) in candidate.parents:
                raise UQError(f"{shown} is not accepted: it is under {root}, a kernel file system; {accepted}")
    existing = absolute
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == absolute else f"lies under {str(existing)!r}, which is"
        raise UQError(f"{shown} is not accepted: it {what} a file, not a folder; {accepted}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it is" if existing == absolute else f"{str(existing)!r} is"
        raise UQError(f"{shown} is not accepted: {where} not writable; {accepted}")
    return folder


def _bounds(low, high, low_inclusive, high_inclusive) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high}")
    return (" " + " and ".join(parts)) if parts else ""
