"""Unlearning plots (notebook 03): how forget and retain metrics move over the steps, where each method
ends on the forget–retain plane, and why the released code's raw-logit "KL" is not a divergence.

- :func:`plot_unlearning_curves` — one panel per metric, one line per method, over training steps.
- :func:`plot_tradeoff` — the forget–retain trade-off: one point per model.
- :func:`plot_raw_logit_kl` — true KL vs the raw-logit "KL" when every logit moves by the same shift.
- :func:`unlearning_curves_explorer` — an ``ipywidgets`` browser over metric and methods.

Every plot takes plain data (DataFrames, arrays), draws on given or new ``Axes`` and returns the ``Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..validation import UQError, check_choice

METHOD_ORDER = ("GA", "GA_GDR", "GA_KLR", "NPO", "NPO_GDR", "NPO_KLR")
#: one colour per method (constrained methods solid, unconstrained dashed)
METHOD_COLORS = {"GA": "#d62728", "GA_GDR": "#ff7f0e", "GA_KLR": "#bcbd22",
                 "NPO": "#1f77b4", "NPO_GDR": "#17becf", "NPO_KLR": "#9467bd",
                 "target": "black", "oracle": "#2ca02c"}
#: readable labels (and units) of the metric columns the notebooks use
METRIC_LABELS = {
    "forget_acc": "forget answer accuracy",
    "retain_acc": "retain answer accuracy",
    "forget_prob": "forget true-answer probability",
    "retain_prob": "retain true-answer probability",
    "loss": "training loss (minimised)",
    "forget_term": "forget term of the loss",
    "retain_term": "retain term of the loss",
    "grad_norm": "gradient norm before clipping",
    "knowmem_forget_acc": "KnowMem forget accuracy",
    "knowmem_retain_acc": "KnowMem retain accuracy (utility)",
    "knowmem_forget_rouge": "KnowMem forget ROUGE-L",
    "knowmem_retain_rouge": "KnowMem retain ROUGE-L (utility)",
    "forget_answer_prob": "forget true-answer probability",
    "retain_answer_prob": "retain true-answer probability",
    "verbmem_forget": "VerbMem ROUGE-L on forget",
    "privleak": "PrivLeak (%)",
}


def metric_label(column: str) -> str:
    """A readable axis label for a metric column (the column name when unknown)."""
    return METRIC_LABELS.get(column, column)


def method_style(method: str) -> dict[str, Any]:
    """Colour and line style of ``method``: unconstrained GA/NPO dashed, the others solid."""
    return {"color": METHOD_COLORS.get(method, "0.4"), "linestyle": "--" if method in ("GA", "NPO") else "-"}


def _check_frame(frame: Any, name: str, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise UQError(f"{name}={type(frame).__name__} is not accepted; accepted values: a pandas DataFrame")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UQError(f"{name} has no column(s) {missing}; accepted values: a DataFrame with columns {list(columns)} (it has {list(frame.columns)})")
    return frame


def _ordered_methods(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_ORDER)


def plot_unlearning_curves(
    history: pd.DataFrame,
    metrics: Sequence[str] = ("forget_acc", "retain_acc"),
    *,
    methods: Sequence[str] | None = None,
    axes: Sequence[Axes] | None = None,
    title: str = "Unlearning curves",
) -> Figure:
    """Each metric against the training step, one line per method.

    ``history`` is long: columns ``method``, ``step`` and the metrics (see
    :func:`utils.unlearning.history_long`). Step 0 is the target before unlearning, so every line starts
    at the target's value. ``methods`` selects and orders lines (default: all present).
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not metrics:
        raise UQError("metrics=() is not accepted; accepted values: one or more metric columns, e.g. ('forget_acc', 'retain_acc')")
    _check_frame(history, "history", ["method", "step", *metrics])
    present = list(pd.unique(history["method"]))
    chosen = _ordered_methods(present) if methods is None else [check_choice("methods", m, present) for m in methods]
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(axes)
        if len(axes) != len(metrics) or not all(isinstance(a, Axes) for a in axes):
            raise UQError(f"axes has {len(axes)} item(s); accepted values: None or one matplotlib Axes per metric ({len(metrics)})")
        fig = axes[0].figure
    for ax, metric in zip(axes, metrics):
        for method in chosen:
            rows = history[history["method"] == method].sort_values("step")
            ax.plot(rows["step"], rows[metric], label=method, marker="o", markersize=2.5, **method_style(method))
        ax.set_xlabel("unlearning step")
        ax.set_ylabel(metric_label(metric))
        ax.set_title(metric_label(metric), fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_tradeoff(
    table: pd.DataFrame,
    x: str = "knowmem_forget_acc",
    y: str = "knowmem_retain_acc",
    *,
    label: str = "model",
    ax: Axes | None = None,
    title: str = "Forget–retain trade-off",
) -> Figure:
    """One point per row of ``table``: forgetting on ``x`` (lower is better), utility on ``y`` (higher is
    better). Rows are named by the ``label`` column (or the index when there is no such column); the
    target and oracle rows, when present, are drawn as black and green stars. The ideal corner is
    marked."""
    frame = table.reset_index() if label not in table.columns else table
    if label not in frame.columns and "index" in frame.columns:
        frame = frame.rename(columns={"index": label})
    _check_frame(frame, "table", [label, x, y])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.4))
    elif not isinstance(ax, Axes):
        raise UQError(f"ax={type(ax).__name__} is not accepted; accepted values: None or a matplotlib Axes")
    for _, row in frame.iterrows():
        name = str(row[label])
        special = name in ("target", "oracle")
        ax.scatter(row[x], row[y], s=160 if special else 60, marker="*" if special else ("s" if name in ("GA", "NPO") else "o"),
                   color=METHOD_COLORS.get(name, "0.4"), zorder=3, label=name)
        ax.annotate(name, (row[x], row[y]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    lo_x, hi_x = min(0.0, float(frame[x].min())), max(1.0, float(frame[x].max()))
    lo_y, hi_y = min(0.0, float(frame[y].min())), max(1.0, float(frame[y].max()))
    ax.set_xlim(lo_x - 0.05 * (hi_x - lo_x), hi_x + 0.12 * (hi_x - lo_x))
    ax.set_ylim(lo_y - 0.05 * (hi_y - lo_y), hi_y + 0.08 * (hi_y - lo_y))
    ax.annotate("ideal: forgotten,\nutility kept", (lo_x, hi_y), textcoords="offset points", xytext=(4, -24), fontsize=8, color="0.4")
    ax.set_xlabel(f"{metric_label(x)}  (lower = more forgotten)")
    ax.set_ylabel(f"{metric_label(y)}  (higher = more kept)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_raw_logit_kl(shifts: Sequence[float], true_kl: Sequence[float], raw_kl: Sequence[float], *, ax: Axes | None = None) -> Figure:
    """The true KL and the released code's raw-logit "KL" when every logit of the model moves by ``shift``
    (the distribution, hence the true KL, does not change). A zero line marks where a divergence must stay
    above."""
    s, t, r = (np.asarray(v, dtype=float).reshape(-1) for v in (shifts, true_kl, raw_kl))
    if not (len(s) == len(t) == len(r)) or len(s) == 0:
        raise UQError(f"shifts, true_kl and raw_kl have lengths {len(s)}, {len(t)}, {len(r)}; accepted values: three non-empty sequences of equal length")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.8))
    elif not isinstance(ax, Axes):
        raise UQError(f"ax={type(ax).__name__} is not accepted; accepted values: None or a matplotlib Axes")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.plot(s, t, color="#2ca02c", marker="o", markersize=3, label="KL(p_ref ‖ p_θ) from log-softmax")
    ax.plot(s, r, color="#d62728", marker="s", markersize=3, label='raw-logit "KL" (released code)')
    ax.set_xlabel("shift c added to every logit of the model (nats)")
    ax.set_ylabel("value of the retain term (nats per example)")
    ax.set_title("Same distribution, different \"KL\"")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def unlearning_curves_explorer(history: pd.DataFrame, metrics: Sequence[str] | None = None):
    """An ``ipywidgets.interactive`` with a metric dropdown and a methods multi-select that draws
    :func:`plot_unlearning_curves`. The callback (``.f``) returns the Figure; ``.result`` holds the last one.
    """
    import ipywidgets as widgets

    _check_frame(history, "history", ["method", "step"])
    numeric = [c for c in history.columns if c not in ("method", "step", "seconds") and pd.api.types.is_numeric_dtype(history[c])]
    metrics = list(metrics) if metrics is not None else numeric
    if not metrics:
        raise UQError("history has no numeric metric column; accepted values: a history with e.g. 'forget_acc', 'retain_acc'")
    for m in metrics:
        check_choice("metrics", m, numeric)
    methods = _ordered_methods(list(pd.unique(history["method"])))
    state: dict[str, Figure | None] = {"fig": None}

    def draw(metric: str, chosen: tuple[str, ...]) -> Figure:
        if state["fig"] is not None:
            plt.close(state["fig"])
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        plot_unlearning_curves(history, (metric,), methods=list(chosen) or methods, axes=[ax], title="")
        state["fig"] = fig
        return fig

    return widgets.interactive(
        draw,
        metric=widgets.Dropdown(options=[(metric_label(m), m) for m in metrics], value=metrics[0], description="metric"),
        chosen=widgets.SelectMultiple(options=methods, value=tuple(methods), description="methods", rows=min(6, len(methods))),
    )


__all__ = [
    "METHOD_ORDER", "METHOD_COLORS", "METRIC_LABELS", "metric_label", "method_style", "plot_unlearning_curves",
    "plot_tradeoff", "plot_raw_logit_kl", "unlearning_curves_explorer",
]
