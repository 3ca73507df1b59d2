"""Argument helpers shared by the plot modules: the ``ax`` to draw on, a checked ``title``, data as a flat array."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from ..validation import UQError


def axes_or_new(ax: Axes | None, figsize: tuple[float, float], *, layout: str | None = None) -> Axes:
    """``ax`` itself, or the Axes of a new ``figsize`` figure (``layout``, e.g. ``"constrained"``, if given)
    when ``ax`` is None; anything else is a :class:`UQError`."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, **({} if layout is None else {"layout": layout}))
    elif not isinstance(ax, Axes):
        raise UQError(f"ax={type(ax).__name__} is not accepted; accepted values: None or a matplotlib Axes")
    return ax


def check_title(title: Any) -> str:
    """A title must be a string."""
    if not isinstance(title, str):
        raise UQError(f"title={title!r} is not accepted; accepted values: a string")
    return title


def flat_array(values: Any, name: str, accepted: str) -> np.ndarray:
    """A flat float64 numpy array from a tensor or anything numpy reads as numbers; otherwise a
    :class:`UQError` naming ``name`` and the ``accepted`` values."""
    if isinstance(values, torch.Tensor):
        arr = values.detach().float().cpu().numpy()
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise UQError(f"{name}={type(values).__name__} is not accepted; accepted values: {accepted}") from None
    return arr.astype(np.float64).reshape(-1)
