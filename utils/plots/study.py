"""Figures of the study runner and notebook 06: forget/retain metrics per model at each precision."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from ..validation import UQError


def plot_recovery_bars(
    results: pd.DataFrame,
    metrics: Sequence[str] = ("knowmem_forget_acc", "knowmem_retain_acc"),
    precisions: Sequence[str] | None = None,
    axes=None,
):
    """Grouped bars: one panel per metric, models on the x axis, one bar per precision.

    ``results`` has columns ``model``, ``precision`` and the metrics (as from
    :func:`utils.study.evaluate_grid`). Returns the Figure.
    """
    import seaborn as sns

    missing = [c for c in ("model", "precision", *metrics) if c not in results.columns]
    if missing:
        raise UQError(f"results lacks the columns {missing}; accepted values: a table from utils.study.evaluate_grid")
    data = results if precisions is None else results[results["precision"].isin(precisions)]
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 3.8), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, metric in zip(axes, metrics):
        sns.barplot(data=data, x="model", y=metric, hue="precision", ax=ax, errorbar=None)
        ax.set_xlabel("model (target and unlearning methods)")
        ax.set_ylabel(metric.replace("_", " ") + " (0–1)")
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="x", rotation=30)
        ax.legend(title="precision", fontsize=8, title_fontsize=8, ncols=2)
    fig.suptitle("Forgetting at full precision and after quantization")
    fig.tight_layout()
    return fig
