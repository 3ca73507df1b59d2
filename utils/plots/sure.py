"""SURE plots (notebook 05): the saliency map, and the threshold × learning-rate sweep at every precision.

- :func:`saliency_grid` / :func:`plot_saliency_heatmap` — layer × module-type heatmap of the forget-loss
  gradient norm, the selected modules outlined.
- :func:`plot_sweep` — one panel per precision: a metric against the learning rate, one line per
  threshold γ, the full-model runs in black.
- :func:`plot_forget_retain` — one panel per precision: where every run lands on the forget–retain plane.
- :func:`sweep_explorer` — an ``ipywidgets`` browser over the sweep's metrics.

Sweep tables have one row per (run, precision) with columns ``model``, ``precision``, ``gamma`` (NaN for a
full-model run), ``lr`` and metric columns (see :func:`utils.sure.sweep_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..validation import UQError, check_choice

#: the order of module types in the heatmap (Llama naming; other types are appended in table order)
MODULE_TYPE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: readable names of the precision columns
PRECISION_LABELS = {"full": "full precision (bf16)", "rtn8": "RTN 8-bit", "int8": "LLM.int8 (8-bit)",
                    "rtn4": "RTN 4-bit", "fp4": "bitsandbytes FP4", "nf4": "bitsandbytes NF4"}
#: readable labels of the cheap sweep metrics
SWEEP_METRIC_LABELS = {
    "forget_acc": "forget answer accuracy (0–1)",
    "retain_acc": "retain answer accuracy (0–1)",
    "forget_prob": "forget true-answer probability (0–1)",
    "retain_prob": "retain true-answer probability (0–1)",
    "privleak": "PrivLeak (%, 0 = like the oracle)",
    "privleak_auc": "PrivLeak Min-K% AUC (0–1)",
}
FULL_MODEL_COLOR = "black"
REFERENCE_COLOR = "0.55"
REFERENCE_MARKERS = ("X", "D", "P", "*", "v")


def precision_label(precision: str) -> str:
    """A readable name of a precision column (the name itself when unknown)."""
    return PRECISION_LABELS.get(precision, precision)


def sweep_metric_label(metric: str) -> str:
    """A readable axis label of a sweep metric (the column name when unknown)."""
    return SWEEP_METRIC_LABELS.get(metric, metric)


# --------------------------------------------------------------------------------------------------
# saliency
# --------------------------------------------------------------------------------------------------
def saliency_grid(saliency: pd.DataFrame, value: str = "saliency") -> pd.DataFrame:
    """The layer × module-type table of ``value`` from a module-level saliency table.

    Rows: transformer block index (modules outside blocks, e.g. ``lm_head``, are left out); columns:
    module types in :data:`MODULE_TYPE_ORDER` then any others.
    """
    need = ("module", "layer", "module_type", value)
    if not isinstance(saliency, pd.DataFrame) or any(c not in saliency.columns for c in need):
        raise UQError(f"saliency is not accepted; accepted values: a table with columns {list(need)} (from utils.sure.module_saliency)")
    if "row" in saliency.columns:
        raise UQError("saliency is per row (granularity='row'); accepted values: a module-level table")
    inside = saliency[saliency["layer"].notna()]
    if inside.empty:
        raise UQError("saliency has no module inside a transformer block (every 'layer' is missing); accepted values: a table from module_saliency")
    grid = inside.pivot_table(index="layer", columns="module_type", values=value, aggfunc="first", sort=True)
    types = [t for t in MODULE_TYPE_ORDER if t in grid.columns] + [t for t in dict.fromkeys(inside["module_type"]) if t not in MODULE_TYPE_ORDER]
    grid = grid[types]
    grid.index = grid.index.astype(int)
    return grid


def plot_saliency_heatmap(
    saliency: pd.DataFrame,
    selected: Sequence[str] = (),
    *,
    ax: Axes | None = None,
    annotate: bool = True,
    title: str | None = None,
) -> Figure:
    """Heatmap of SURE's module saliency (layer × module type), the ``selected`` modules outlined.

    ``saliency``: a module-level table from :func:`utils.sure.module_saliency`; ``selected``: module
    names (e.g. from :func:`utils.sure.select_modules`), drawn with a thick red outline.
    """
    check_choice("annotate", annotate, (True, False))
    grid = saliency_grid(saliency)
    unknown = sorted(set(selected) - set(saliency["module"]))
    if unknown:
        raise UQError(f"selected contains {unknown[:3]} which are not in the saliency table; accepted values: names from its 'module' column")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.55 * grid.shape[0] + 1.8), layout="constrained")
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    bar = ax.figure.colorbar(image, ax=ax)
    bar.set_label("‖∇_W L_forget‖₂ at the target")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), [f"layer {i}" for i in grid.index])
    ax.set_xlabel("module type")
    ax.set_ylabel("transformer block")
    if annotate:
        high = np.nanmax(values) if np.isfinite(values).any() else 0.0
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8, color="black" if v > 0.6 * high else "white")
    where = saliency.set_index("module")
    for name in selected:
        layer, module_type = where.loc[name, "layer"], where.loc[name, "module_type"]
        if pd.isna(layer):
            continue
        i, j = list(grid.index).index(int(layer)), list(grid.columns).index(module_type)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5, label="selected"))
    ax.set_title(title or f"Forget-loss saliency per module ({len(selected)} selected, outlined)")
    return ax.figure


# --------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------
def _check_sweep(table: Any, metrics: Sequence[str]) -> pd.DataFrame:
    need = ("model", "precision", "gamma", "lr", *metrics)
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise UQError("table is not accepted; accepted values: a non-empty sweep table (utils.sure.sweep_table)")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise UQError(f"table lacks the columns {missing}; accepted values: a sweep table with {list(need)}")
    return table


def _precisions(table: pd.DataFrame, precisions: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(table["precision"]))
    if precisions is None:
        return present
    for p in precisions:
        check_choice("precisions", p, present)
    return list(precisions)


def gamma_colors(gammas: Sequence[float]) -> dict[float, Any]:
    """One colour per threshold γ (viridis, low γ = dark), for the sweep figures."""
    values = sorted({float(g) for g in gammas if pd.notna(g)})
    cmap = plt.get_cmap("viridis")
    return {g: cmap(0.85 * k / max(1, len(values) - 1)) for k, g in enumerate(values)}


def _check_references(references: Any, metrics: Sequence[str], need_lr: bool = True) -> pd.DataFrame | None:
    if references is None:
        return None
    need = ("model", "precision", *(("lr",) if need_lr else ()), *metrics)
    if not isinstance(references, pd.DataFrame) or any(c not in references.columns for c in need):
        raise UQError(f"references is not accepted; accepted values: None or a table with columns {list(need)}")
    return references


def _draw_references(ax: Axes, references: pd.DataFrame | None, precision: str, x: str, y: str) -> None:
    """Grey markers, one shape per reference model (crosses first)."""
    if references is None:
        return
    shapes = dict(zip(dict.fromkeys(references["model"]), REFERENCE_MARKERS * len(references)))
    for _, row in references[references["precision"] == precision].iterrows():
        ax.plot([row[x]], [row[y]], shapes[row["model"]], color=REFERENCE_COLOR, markersize=9, linestyle="none", label=str(row["model"]))


def _lr_ticks(ax: Axes, lrs: Sequence[float]) -> None:
    """Log x axis with one labelled tick per learning rate (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter

    ticks = sorted({float(v) for v in lrs if pd.notna(v)})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:.0e}" for v in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_sweep(
    table: pd.DataFrame,
    metric: str = "forget_acc",
    precisions: Sequence[str] | None = None,
    *,
    axes: Sequence[Axes] | None = None,
    ylim: tuple[float, float] | None = None,
    references: pd.DataFrame | None = None,
) -> Figure:
    """One panel per precision: ``metric`` against the learning rate, one line per threshold γ.

    Full-model runs (``gamma`` NaN) are drawn in black (dotted line through their learning rates), so the
    SURE lines can be compared with "just raise the learning rate" at every precision. ``references``
    (columns ``model``, ``precision``, ``lr`` and ``metric``: runs made with another recipe, e.g. notebook
    03's) are drawn as grey crosses at their learning rate, labelled with their model name.
    """
    table = _check_sweep(table, (metric,))
    precisions = _precisions(table, precisions)
    references = _check_references(references, (metric,))
    if axes is None:
        _, axes = plt.subplots(1, len(precisions), figsize=(3.6 * len(precisions) + 0.6, 3.4), sharey=True, squeeze=False, layout="constrained")
        axes = axes[0]
    if len(axes) != len(precisions):
        raise UQError(f"axes has {len(axes)} panels; accepted values: one per precision ({len(precisions)})")
    colors = gamma_colors(table["gamma"])
    for ax, precision in zip(axes, precisions):
        part = table[table["precision"] == precision]
        for gamma, color in colors.items():
            line = part[part["gamma"] == gamma].sort_values("lr")
            ax.plot(line["lr"], line[metric], "o-", color=color, label=f"SURE γ={gamma:g}")
        full = part[part["gamma"].isna()].sort_values("lr")
        if not full.empty:
            ax.plot(full["lr"], full[metric], "s:", color=FULL_MODEL_COLOR, markersize=7, label="full model")
        _draw_references(ax, references, precision, "lr", metric)
        _lr_ticks(ax, [*table["lr"], *(references["lr"] if references is not None else [])])
        ax.set_xlabel("learning rate (log scale)")
        ax.set_title(precision_label(precision))
        ax.grid(alpha=0.3)
        if ylim is not None:
            ax.set_ylim(*ylim)
    axes[0].set_ylabel(sweep_metric_label(metric))
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return axes[0].figure


def plot_forget_retain(
    table: pd.DataFrame,
    precisions: Sequence[str] | None = None,
    *,
    forget: str = "forget_prob",
    retain: str = "retain_prob",
    label: Sequence[str] = (),
    axes: Sequence[Axes] | None = None,
    references: pd.DataFrame | None = None,
) -> Figure:
    """One panel per precision: every run on the forget–retain plane (forget on x: lower is better; retain
    on y: higher is better). Colour = threshold γ (black: full model), marker size grows with the LR;
    the models in ``label`` are annotated with their names; ``references`` (other-recipe runs, columns
    ``model``, ``precision``, ``forget``, ``retain``) are grey crosses labelled with their names."""
    table = _check_sweep(table, (forget, retain))
    precisions = _precisions(table, precisions)
    references = _check_references(references, (forget, retain), need_lr=False)
    unknown = sorted(set(label) - set(table["model"]))
    if unknown:
        raise UQError(f"label contains {unknown[:3]} which are not models of the table; accepted values: names from its 'model' column")
    if axes is None:
        _, axes = plt.subplots(1, len(precisions), figsize=(3.6 * len(precisions) + 0.6, 3.6), sharex=True, sharey=True, squeeze=False, layout="constrained")
        axes = axes[0]
    if len(axes) != len(precisions):
        raise UQError(f"axes has {len(axes)} panels; accepted values: one per precision ({len(precisions)})")
    colors = gamma_colors(table["gamma"])
    lrs = np.log10(table["lr"].astype(float))
    span = max(float(lrs.max() - lrs.min()), 1e-9)

    def size(lr: float) -> float:
        return 20 + 80 * (np.log10(lr) - float(lrs.min())) / span

    for ax, precision in zip(axes, precisions):
        part = table[table["precision"] == precision]
        for gamma, color in colors.items():
            pts = part[part["gamma"] == gamma]
            ax.scatter(pts[forget], pts[retain], s=[size(v) for v in pts["lr"]], color=color, alpha=0.85, label=f"SURE γ={gamma:g}")
        full = part[part["gamma"].isna()]
        if not full.empty:
            ax.scatter(full[forget], full[retain], s=[size(v) for v in full["lr"]], color=FULL_MODEL_COLOR, marker="s", label="full model")
        _draw_references(ax, references, precision, forget, retain)
        for _, row in part[part["model"].isin(list(label))].iterrows():
            ax.annotate(row["model"], (row[forget], row[retain]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_title(precision_label(precision))
        ax.set_xlabel(sweep_metric_label(forget) + " ↓")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(sweep_metric_label(retain) + " ↑")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return axes[0].figure


def sweep_explorer(table: pd.DataFrame, metrics: Sequence[str] | None = None, precisions: Sequence[str] | None = None):
    """An ``ipywidgets`` browser: pick a metric, see :func:`plot_sweep` at every precision."""
    import ipywidgets as widgets
    from IPython.display import display

    candidates = [m for m in SWEEP_METRIC_LABELS if m in getattr(table, "columns", ())]
    metrics = list(metrics) if metrics is not None else candidates
    table = _check_sweep(table, metrics)
    if not metrics:
        raise UQError(f"metrics is empty; accepted values: some of {list(SWEEP_METRIC_LABELS)} present in the table")
    precisions = _precisions(table, precisions)
    choice = widgets.Dropdown(options=[(sweep_metric_label(m), m) for m in metrics], value=metrics[0], description="metric")
    out = widgets.Output()

    def draw(*_: Any) -> None:
        out.clear_output(wait=True)
        with out:
            fig = plot_sweep(table, choice.value, precisions)
            display(fig)
            plt.close(fig)

    choice.observe(draw, names="value")
    draw()
    return widgets.VBox([choice, out])


__all__ = [
    "MODULE_TYPE_ORDER", "PRECISION_LABELS", "SWEEP_METRIC_LABELS", "precision_label", "sweep_metric_label",
    "saliency_grid", "plot_saliency_heatmap", "gamma_colors", "plot_sweep", "plot_forget_retain", "sweep_explorer",
]
