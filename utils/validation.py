"""One error format for bad input, used by every public entry point.

Every check raises :class:`ValueError` (or :class:`UQError`, a subclass) with a message that names the
parameter, the value received and the accepted values, e.g.::

    ValueError: method='GAX' is not accepted; accepted values: 'GA', 'GA_GDR', ...
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


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


def _bounds(low, high, low_inclusive, high_inclusive) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high}")
    return (" " + " and ".join(parts)) if parts else ""
