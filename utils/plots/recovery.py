"""Recovery plots (notebook 04): the forgotten comes back after 4-bit quantization, and why.

- :func:`plot_precision_slopes` — one line per model across precisions (full, 8-bit, 4-bit formats):
  the unlearned models' forget metric jumps back towards the target's at 4 bits.
- :func:`plot_level_tables` — the levels of each 4-bit format on the normalized scale ``w / absmax`` with
  its zero bin shaded: NF4's levels are densest near zero, so its zero bin is about half as wide.
- :func:`plot_edit_fates` — stacked bars: of the weights the unlearning changed, the share that stayed in
  the zero bin, stayed in another bin or crossed a bin edge, per model and quantizer.
- :func:`plot_lr_search` — the fp32 control's learning-rate search against the bf16 run's forgetting.

Every plot takes plain data (DataFrames, tensors, dicts), draws on a given or new ``Axes`` and returns the
``Figure``; axes are labelled with units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..validation import UQError, check_choice
from ._args import axes_or_new, check_title

#: colours of the three fates of a changed weight (same order as ``utils.mechanism.FATES``)
FATE_COLORS = {"stayed in the zero bin": "#4c72b0", "stayed in another bin": "#9ecae1", "crossed a bin edge": "#d62728"}
FORMAT_COLORS = {"rtn4": "#4c72b0", "fp4": "#dd8452", "nf4": "#55a868", "rtn8": "#8172b3"}


def _need_columns(df: Any, columns: Sequence[str], name: str, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise UQError(f"{name}={type(df).__name__} is not accepted; accepted values: a DataFrame with columns {', '.join(columns)} ({source})")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UQError(f"{name} lacks the column(s) {', '.join(map(repr, missing))}; accepted values: a DataFrame with columns {', '.join(columns)} ({source})")
    if df.empty:
        raise UQError(f"{name} is empty; accepted values: at least one row ({source})")
    return df


# --------------------------------------------------------------------------------------------------
# 1. a metric across precisions, one line per model
# --------------------------------------------------------------------------------------------------
def plot_precision_slopes(
    results: pd.DataFrame,
    metric: str = "knowmem_forget_acc",
    *,
    models: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "Forget accuracy at each precision",
) -> Figure:
    """One line per model: ``metric`` at each precision (x axis, in the given order; the first is usually
    ``'full'``). ``results`` is a table from ``utils.study.evaluate_grid`` (columns ``model``,
    ``precision``, the metrics); missing cells leave a gap. The target is drawn black and thick."""
    from .unlearning import METHOD_COLORS

    results = _need_columns(results, ("model", "precision", metric), "results", "from utils.study.evaluate_grid")
    title = check_title(title)
    models = list(dict.fromkeys(results["model"])) if models is None else list(models)
    precisions = list(dict.fromkeys(results["precision"])) if precisions is None else list(precisions)
    for m in models:
        check_choice("models", m, list(dict.fromkeys(results["model"])))
    for p in precisions:
        check_choice("precisions", p, list(dict.fromkeys(results["precision"])))
    table = results.pivot_table(index="model", columns="precision", values=metric, aggfunc="first").reindex(index=models, columns=precisions)
    ax = axes_or_new(ax, (1.2 + 1.1 * len(precisions), 4.0))
    x = np.arange(len(precisions))
    for m in models:
        is_target = m == "target"
        ax.plot(x, table.loc[m].to_numpy(dtype=float), marker="o", label=m, color=METHOD_COLORS.get(m),
                linewidth=2.8 if is_target else 1.6, linestyle="-" if is_target or "_" in m else "--", zorder=3 if is_target else 2)  # fmt: skip
    ax.set_xticks(x, precisions, rotation=30)
    ax.set_xlabel("precision of the weights")
    ax.set_ylabel(metric.replace("_", " ") + " (0–1)")
    ax.set_ylim(-0.03, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 2. the level tables of the 4-bit formats
# --------------------------------------------------------------------------------------------------
def plot_level_tables(
    levels: Mapping[str, Any],
    zero_bins: Mapping[str, tuple[float, float]] | None = None,
    *,
    ax: Axes | None = None,
    title: str = "Levels of the 4-bit formats (w / absmax of the block)",
) -> Figure:
    """One row per format: its levels as dots on the normalized scale ``w / absmax`` (−1 … 1), the decision
    boundaries (midpoints) as ticks and, when ``zero_bins`` gives ``(lower, upper)``, its zero bin shaded
    with its width in the label. ``levels``: ``{name: sorted levels}`` (e.g. ``utils.mechanism.level_table``)."""
    title = check_title(title)
    if not isinstance(levels, Mapping) or not levels:
        raise UQError(f"levels={type(levels).__name__} is not accepted; accepted values: a non-empty dict name -> sorted levels")
    zero_bins = dict(zero_bins or {})
    unknown = sorted(set(zero_bins) - set(levels))
    if unknown:
        raise UQError(f"zero_bins has {unknown} which are not in levels; accepted values: names from {list(levels)}")
    ax = axes_or_new(ax, (9.0, 0.9 + 0.75 * len(levels)))
    names = list(levels)
    for row, name in enumerate(reversed(names)):
        values = np.asarray(levels[name].tolist() if isinstance(levels[name], torch.Tensor) else levels[name], dtype=float).ravel()
        if values.size < 2 or np.any(np.diff(values) <= 0):
            raise UQError(f"levels[{name!r}] is not accepted; accepted values: at least two strictly increasing levels")
        color = FORMAT_COLORS.get(name, f"C{row}")
        edges = (values[1:] + values[:-1]) / 2
        ax.vlines(edges, row - 0.25, row + 0.25, color="0.6", linewidth=0.8)
        ax.plot(values, np.full(values.size, row), "o", color=color, markersize=6, zorder=3)
        if name in zero_bins:
            lo, hi = (float(v) for v in zero_bins[name])
            if not lo < 0 < hi:
                raise UQError(f"zero_bins[{name!r}]={zero_bins[name]!r} is not accepted; accepted values: (lower, upper) with lower < 0 < upper")
            ax.fill_betweenx([row - 0.32, row + 0.32], lo, hi, color=color, alpha=0.25, linewidth=0)
            ax.text(hi + 0.01, row + 0.33, f"zero bin {hi - lo:.3f} wide", fontsize=8, color=color, va="bottom")
    ax.set_yticks(range(len(names)), list(reversed([f"{n} ({len(levels[n])} levels)" for n in names])))
    ax.set_ylim(-0.6, len(names) - 0.2)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("level, as a fraction of the block's absmax (w / absmax)")
    ax.plot([], [], "|", color="0.6", label="bin edge (midpoint of two levels)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 3. the fates of the changed weights
# --------------------------------------------------------------------------------------------------
def plot_edit_fates(
    fates: pd.DataFrame,
    *,
    ax: Axes | None = None,
    title: str = "Where the changed weights land on each grid",
) -> Figure:
    """Stacked horizontal bars, one per (method, quantizer) row of ``fates`` (``utils.mechanism.edit_fates_table``):
    the shares of changed weights that stayed in the zero bin, stayed in another bin or crossed a bin edge
    (they sum to 1). The label of each bar gives the share of all weights whose code changed
    (``frac_codes_changed_merged`` when present: FP4's tiny levels counted as 0)."""
    from ..mechanism import FATES

    fates = _need_columns(fates, ("method", "quantizer", *FATES, "frac_codes_changed"), "fates", "from utils.mechanism.edit_fates_table")
    title = check_title(title)
    ax = axes_or_new(ax, (8.0, 0.8 + 0.32 * len(fates)))
    changed = fates["frac_codes_changed_merged"] if "frac_codes_changed_merged" in fates.columns else fates["frac_codes_changed"]
    labels = [f"{m} · {q}  ({c:.2%} codes changed)" for m, q, c in zip(fates["method"], fates["quantizer"], changed)]
    y = np.arange(len(fates))[::-1]
    left = np.zeros(len(fates))
    for fate in FATES:
        width = fates[fate].to_numpy(dtype=float)
        width = np.nan_to_num(width)
        ax.barh(y, width, left=left, color=FATE_COLORS[fate], label=fate, height=0.75)
        left += width
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the changed weights")
    ax.set_title(title, pad=24)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 4. the fp32 control's learning-rate search
# --------------------------------------------------------------------------------------------------
def plot_lr_search(
    table: pd.DataFrame,
    goal: float,
    *,
    ax: Axes | None = None,
    title: str = "fp32 control: matching the bf16 run's forgetting",
) -> Figure:
    """Forget (and retain) accuracy of each tried fp32 learning rate (log x axis) from
    ``utils.mechanism.match_fp32_lr(...).table``, the bf16 run's forget accuracy ``goal`` as a dashed line,
    and the chosen learning rate (``chosen`` column) circled."""
    table = _need_columns(table, ("lr", "forget_acc", "retain_acc", "chosen"), "table", "from utils.mechanism.match_fp32_lr")
    title = check_title(title)
    if isinstance(goal, bool) or not isinstance(goal, (int, float)) or not 0.0 <= goal <= 1.0:
        raise UQError(f"goal={goal!r} is not accepted; accepted values: a number in [0, 1]")
    ax = axes_or_new(ax, (6.5, 4.0))
    t = table.sort_values("lr")
    ax.plot(t["lr"], t["forget_acc"], "o-", color="#d62728", label="fp32 forget accuracy")
    ax.plot(t["lr"], t["retain_acc"], "s:", color="#2ca02c", label="fp32 retain accuracy")
    ax.axhline(goal, color="black", linestyle="--", linewidth=1.2, label=f"bf16 run's forget accuracy ({goal:.2f})")
    chosen = t[t["chosen"]]
    if not chosen.empty:
        ax.plot(chosen["lr"], chosen["forget_acc"], "o", markersize=14, markerfacecolor="none", markeredgecolor="black",
                label=f"chosen lr = {float(chosen['lr'].iloc[0]):.1e}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (fp32 weights, log scale)")
    ax.set_ylabel("answer accuracy at full precision (0–1)")
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax.figure


__all__ = ["FATE_COLORS", "FORMAT_COLORS", "plot_precision_slopes", "plot_level_tables", "plot_edit_fates", "plot_lr_search"]
