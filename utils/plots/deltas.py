"""Weight-delta plots: where the unlearning edit lands relative to the 4-bit grid (notebook 04).

Three figures answer "why does 4-bit quantization undo the edit?" and a widget browses them:

- :func:`plot_delta_in_steps` — the edits ``Δw`` in units of the local quantization step, with the
  ``±½`` step marks: an edit inside them cannot move a weight out of its bin unless the weight sat near
  an edge.
- :func:`plot_changed_weight_magnitudes` — which weights moved at all, as ``log2 |w|``: in bf16 only
  weights below about ``2^8 · lr`` can move, and those mostly sit inside the 4-bit zero bin.
- :func:`plot_code_identity_heatmap` — per layer and module type, the share of 4-bit codes that are
  identical between the target and the unlearned model.
- :func:`weight_delta_explorer` — an ``ipywidgets`` browser over method / module / quantizer.

Every plot takes plain data (tensors, arrays, a DataFrame), draws on a given or new ``Axes`` and
returns the ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..validation import UQError, check_choice, check_range
from ._args import axes_or_new, check_title, flat_array

#: bf16 keeps 8 significant bits, so an update ``u`` changes ``w`` only if ``u > ulp(w)/2 ≈ |w|·2^-8``:
#: with Adam (steps of about ``lr``) only weights with ``|w| < 2^8 · lr`` move.
BF16_THRESHOLD_LOG2_FACTOR = 8
#: the order of module types in a Llama block (others follow, sorted)
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEATMAP_COLUMNS = ("layer", "module_type", "frac_identical")

#: a quantizer for the explorer: target weight -> (local step Δ, zero-bin half-width), each w's shape
StepFunction = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.35", wrap=True)


# --------------------------------------------------------------------------------------------------
# 1. Δw in units of the local step
# --------------------------------------------------------------------------------------------------
def plot_delta_in_steps(
    delta_steps: Any,
    ax: Axes | None = None,
    *,
    title: str = "Edits in units of the local 4-bit step",
    bins: int = 81,
    changed_only: bool = True,
) -> Figure:
    """Histogram (log-scale counts) of ``Δw / Δ`` with the ``±½`` step marked.

    ``delta_steps``: per-weight edits divided by the local quantization step (e.g.
    ``utils.quantization.delta_in_steps``). ``changed_only`` drops exact zeros (unchanged weights);
    non-finite values are dropped and counted in the legend. The histogram spans
    ``±max(1, max |Δw/Δ|)`` so that every value is counted. The legend gives the share of plotted
    edits smaller than half a step.
    """
    ax = axes_or_new(ax, (6.0, 4.0))
    title = check_title(title)
    check_range("bins", bins, 1, integer=True)
    check_choice("changed_only", changed_only, (True, False))
    values = flat_array(delta_steps, "delta_steps", "a tensor, array or sequence of numbers")
    finite = np.isfinite(values)
    dropped = int((~finite).sum())
    values = values[finite]
    if changed_only:
        values = values[values != 0]
    ax.set_xlabel("Δw / local quantization step Δ")
    ax.set_ylabel("weights (log scale)")
    ax.set_title(title)
    if values.size == 0:
        _note(ax, "no changed weights")
        return ax.figure
    lim = max(1.0, float(np.abs(values).max()))
    ax.hist(values, bins=np.linspace(-lim, lim, bins + 1), color="steelblue", log=True,
            label=f"{values.size:,} {'changed ' if changed_only else ''}weights")  # fmt: skip
    inside = float((np.abs(values) < 0.5).mean())
    for x in (-0.5, 0.5):
        ax.axvline(x, color="crimson", linestyle="--", linewidth=1.2, label=f"±½ step ({inside:.1%} inside)" if x > 0 else None)
    ax.set_yscale("log")
    if dropped:
        ax.plot([], [], " ", label=f"{dropped} non-finite dropped")
    ax.legend(fontsize=8, loc="upper right")
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 2. Magnitudes of the weights that moved
# --------------------------------------------------------------------------------------------------
def bf16_threshold(lr: float) -> float:
    """The weight magnitude ``2^8 · lr`` under which a bf16 weight moves with Adam steps of about ``lr``."""
    check_range("lr", lr, 0.0, low_inclusive=False)
    return 2.0**BF16_THRESHOLD_LOG2_FACTOR * lr


def plot_changed_weight_magnitudes(
    w_target: torch.Tensor,
    w_unlearned: torch.Tensor,
    *,
    lr: float,
    zero_bin_halfwidth: float | torch.Tensor | None = None,
    ax: Axes | None = None,
    title: str = "Which weights moved: log2 |w| of the changed weights",
    bins: int = 60,
) -> Figure:
    """Histogram of ``log2 |w_target|`` over the weights whose value changed, with the bf16 threshold
    ``2^8 · lr`` and the 4-bit zero-bin edge marked.

    ``zero_bin_halfwidth``: a number, or per-weight half-widths with the weight's shape (e.g.
    ``utils.quantization.zero_bin_halfwidth(w_target, "rtn4")``); a tensor is marked by the median
    edge over the changed weights and its 10–90 % band, and the legend gives the exact share of
    changed weights inside their own zero bin. Changed weights that were exactly 0 have no log and
    are counted in the legend.
    """
    ax = axes_or_new(ax, (6.0, 4.0))
    title = check_title(title)
    check_range("bins", bins, 1, integer=True)
    threshold = bf16_threshold(lr)
    if not isinstance(w_target, torch.Tensor) or not isinstance(w_unlearned, torch.Tensor) or w_target.shape != w_unlearned.shape:
        raise UQError("w_target and w_unlearned are not accepted; accepted values: two tensors of the same shape "
                      f"(got {tuple(getattr(w_target, 'shape', ()))} and {tuple(getattr(w_unlearned, 'shape', ()))})")  # fmt: skip
    target = w_target.detach().float().cpu()
    changed = target != w_unlearned.detach().float().cpu()
    magnitudes = target[changed].abs()
    nonzero = magnitudes > 0
    logs = torch.log2(magnitudes[nonzero]).numpy()
    ax.set_xlabel("log2 |w_target| of changed weights")
    ax.set_ylabel("changed weights")
    ax.set_title(title)
    n_changed = int(changed.sum())
    if n_changed == 0:
        _note(ax, "no weight changed")
        return ax.figure
    if logs.size:
        ax.hist(logs, bins=bins, color="steelblue", label=f"{n_changed:,} changed of {target.numel():,} ({n_changed / target.numel():.1%})")
    below = float((magnitudes < threshold).float().mean())
    ax.axvline(math.log2(threshold), color="darkorange", linewidth=1.5, label=f"bf16 threshold 2⁸·lr ({below:.0%} below)")
    if zero_bin_halfwidth is not None:
        _mark_zero_bin(ax, zero_bin_halfwidth, target, changed, magnitudes)
    if int((~nonzero).sum()):
        ax.plot([], [], " ", label=f"{int((~nonzero).sum())} changed weights were exactly 0")
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


def _mark_zero_bin(ax: Axes, halfwidth: float | torch.Tensor, target: torch.Tensor, changed: torch.Tensor, magnitudes: torch.Tensor) -> None:
    """Draw the zero-bin edge (a line, and a band for per-weight widths) and report the share inside."""
    if isinstance(halfwidth, torch.Tensor) and halfwidth.numel() > 1:
        if halfwidth.shape != target.shape:
            raise UQError(f"zero_bin_halfwidth with shape {tuple(halfwidth.shape)} is not accepted; accepted values: a number or a tensor of the weight's shape {tuple(target.shape)}")
        h = halfwidth.detach().float().cpu()[changed]
        if not bool((h > 0).all()):
            raise UQError("zero_bin_halfwidth is not accepted: it must be positive; accepted values: positive half-widths")
        inside = float((magnitudes < h).float().mean())
        lo, mid, hi = (float(torch.quantile(torch.log2(h), q)) for q in (0.1, 0.5, 0.9))
        ax.axvspan(lo, hi, color="crimson", alpha=0.12, label="zero-bin edge, 10–90 % of changed weights")
        ax.axvline(mid, color="crimson", linestyle="--", linewidth=1.2, label=f"4-bit zero-bin edge, median ({inside:.0%} inside)")
        return
    value = float(halfwidth)
    check_range("zero_bin_halfwidth", value, 0.0, low_inclusive=False)
    inside = float((magnitudes < value).float().mean())
    ax.axvline(math.log2(value), color="crimson", linestyle="--", linewidth=1.2, label=f"4-bit zero-bin edge ({inside:.0%} inside)")


# --------------------------------------------------------------------------------------------------
# 3. Code identity per layer and module type
# --------------------------------------------------------------------------------------------------
def _module_order(types: Sequence[str]) -> list[str]:
    known = [t for t in MODULE_ORDER if t in types]
    return known + sorted(t for t in set(types) if t not in MODULE_ORDER)


def code_identity_table(df: pd.DataFrame) -> pd.DataFrame:
    """The (layer × module type) table of ``frac_identical`` drawn by the heatmap (layers ``<NA>``,
    e.g. a quantized head, become the row ``"other"``). Raises on missing columns or duplicate cells."""
    if not isinstance(df, pd.DataFrame):
        raise UQError(f"df={type(df).__name__} is not accepted; accepted values: a DataFrame with columns {', '.join(HEATMAP_COLUMNS)}")
    missing = [c for c in HEATMAP_COLUMNS if c not in df.columns]
    if missing:
        raise UQError(f"df is missing the column(s) {', '.join(map(repr, missing))}; accepted values: a DataFrame with columns {', '.join(HEATMAP_COLUMNS)}")
    if df.empty:
        raise UQError("df is empty; accepted values: at least one row (layer, module_type, frac_identical)")
    labels = df["layer"].map(lambda v: "other" if pd.isna(v) else str(int(v)))
    cells = pd.DataFrame({"layer": labels, "module_type": df["module_type"].astype(str), "frac_identical": df["frac_identical"].astype(float)})
    duplicated = cells.duplicated(["layer", "module_type"])
    if duplicated.any():
        first = cells[duplicated].iloc[0]
        raise UQError(f"df has several rows for layer {first['layer']}, module_type {first['module_type']!r}; "
                      "accepted values: one row per cell (filter to one method and one quantizer first)")  # fmt: skip
    table = cells.pivot(index="layer", columns="module_type", values="frac_identical")
    rows = sorted((r for r in table.index if r != "other"), key=int) + (["other"] if "other" in table.index else [])
    return table.loc[rows, _module_order(list(table.columns))]


def plot_code_identity_heatmap(
    df: pd.DataFrame,
    ax: Axes | None = None,
    *,
    title: str = "Identical 4-bit codes, target vs unlearned",
    annot: bool = True,
) -> Figure:
    """Heatmap (layer × module type) of the share of identical 4-bit codes, from a DataFrame with
    columns ``layer``, ``module_type``, ``frac_identical`` (e.g. ``utils.quantization.code_identity``
    filtered to one method and quantizer). Cells are annotated in percent (two decimals: 99.65 % is not 100 %); missing cells stay blank."""
    import seaborn as sns  # noqa: PLC0415 - heavy import, on first use only

    title = check_title(title)
    check_choice("annot", annot, (True, False))
    table = code_identity_table(df)
    ax = axes_or_new(ax, (1.0 + 0.9 * table.shape[1], 1.2 + 0.45 * table.shape[0]))
    low = float(np.nanmin(table.to_numpy()))
    sns.heatmap(table * 100, ax=ax, annot=annot, fmt=".2f", annot_kws={"fontsize": 8}, cmap="viridis", vmin=min(low * 100, 99.0), vmax=100.0,
                cbar_kws={"label": "identical 4-bit codes (%)"}, linewidths=0.5, linecolor="white")  # fmt: skip
    ax.set_xlabel("module type")
    ax.set_ylabel("layer")
    ax.set_title(title)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 4. The explorer widget
# --------------------------------------------------------------------------------------------------
def _weights(source: Any, name: str) -> dict[str, torch.Tensor]:
    """``{module name: weight}`` from a mapping, or from a model's quantizable modules."""
    if isinstance(source, torch.nn.Module):
        from ..quantization import quantizable_modules  # noqa: PLC0415

        return {n: m.weight.detach() for n, m in quantizable_modules(source)}
    if isinstance(source, Mapping) and source and all(isinstance(v, torch.Tensor) for v in source.values()):
        return {str(k): v.detach() for k, v in source.items()}
    raise UQError(f"{name}={type(source).__name__} is not accepted; accepted values: a model (nn.Module) or a non-empty dict of module name -> weight tensor")


def _step_functions(quantizers: Any) -> dict[str, StepFunction]:
    """Names of ``utils.quantization`` quantizers become (step, zero-bin half-width) functions."""
    if isinstance(quantizers, Mapping) and quantizers and all(callable(f) for f in quantizers.values()):
        return {str(k): f for k, f in quantizers.items()}
    if isinstance(quantizers, (list, tuple)) and quantizers and all(isinstance(q, str) for q in quantizers):
        from ..quantization import get_quantizer, quantization_step, zero_bin_halfwidth  # noqa: PLC0415

        out: dict[str, StepFunction] = {}
        for q in quantizers:
            spec = get_quantizer(q)
            out[q] = lambda w, spec=spec: (quantization_step(w, spec), zero_bin_halfwidth(w, spec))
        return out
    raise UQError(f"quantizers={quantizers!r} is not accepted; accepted values: a list of utils.quantization names such as "
                  "['rtn4', 'fp4', 'nf4'] or a dict name -> function(w) returning (step, zero-bin half-width)")  # fmt: skip


def weight_delta_explorer(
    target: Any,
    unlearned: Mapping[str, Any],
    quantizers: Sequence[str] | Mapping[str, StepFunction] = ("rtn4", "fp4", "nf4"),
    *,
    lr: float,
    code_identity: pd.DataFrame | None = None,
):
    """An ``ipywidgets.interactive`` with dropdowns method / module / quantizer that draws, side by
    side, :func:`plot_delta_in_steps`, :func:`plot_changed_weight_magnitudes` and (when
    ``code_identity`` is given) :func:`plot_code_identity_heatmap`.

    ``target``: the target model or ``{module name: weight}``; ``unlearned``: ``{method: model or
    {module name: weight}}`` with the same modules; ``quantizers``: names from
    ``utils.quantization.QUANTIZERS`` with per-weight steps (RTN, FP4, NF4, int8) or functions
    ``w -> (step, zero-bin half-width)``; ``code_identity``: a DataFrame with columns ``method``,
    ``quantizer``, ``layer``, ``module_type``, ``frac_identical``. The callback (``.f``) returns the
    Figure; ``.result`` holds the last one.
    """
    import ipywidgets as widgets  # noqa: PLC0415

    target_w = _weights(target, "target")
    if not isinstance(unlearned, Mapping) or not unlearned:
        raise UQError(f"unlearned={type(unlearned).__name__} is not accepted; accepted values: a non-empty dict method -> model or weights")
    methods = {str(m): _weights(src, f"unlearned[{m!r}]") for m, src in unlearned.items()}
    for m, ws in methods.items():
        if ws.keys() != target_w.keys():
            raise UQError(f"unlearned[{m!r}] does not have the target's modules; accepted values: weights of the same architecture")
    steps = _step_functions(quantizers)
    bf16_threshold(lr)
    if code_identity is not None:
        need = ("method", "quantizer", *HEATMAP_COLUMNS)
        if not isinstance(code_identity, pd.DataFrame) or any(c not in code_identity.columns for c in need):
            raise UQError(f"code_identity is not accepted; accepted values: None or a DataFrame with columns {', '.join(need)}")
    cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    state: dict[str, Figure | None] = {"fig": None}

    def draw(method: str, module: str, quantizer: str) -> Figure:
        if state["fig"] is not None:
            plt.close(state["fig"])
        w0, w1 = target_w[module], methods[method][module]
        if (module, quantizer) not in cache:
            cache[(module, quantizer)] = steps[quantizer](w0)
        step, halfwidth = cache[(module, quantizer)]
        n_axes = 3 if code_identity is not None else 2
        fig, axes = plt.subplots(1, n_axes, figsize=(5.5 * n_axes, 4.2), constrained_layout=True)
        delta = (w1.float() - w0.float()) / step
        plot_delta_in_steps(delta, axes[0], title=f"{method} · {module.split('.', 2)[-1]} · {quantizer}")
        plot_changed_weight_magnitudes(w0, w1, lr=lr, zero_bin_halfwidth=halfwidth, ax=axes[1], title="log2 |w| of changed weights")
        if code_identity is not None:
            sub = code_identity[(code_identity["method"] == method) & (code_identity["quantizer"] == quantizer)]
            if sub.empty:
                axes[2].set_axis_off()
                _note(axes[2], f"no code-identity rows for {method} / {quantizer}")
            else:
                plot_code_identity_heatmap(sub, axes[2], title=f"identical codes · {method} · {quantizer}")
        state["fig"] = fig
        return fig

    return widgets.interactive(
        draw,
        method=widgets.Dropdown(options=list(methods), description="method"),
        module=widgets.Dropdown(options=list(target_w), description="module"),
        quantizer=widgets.Dropdown(options=list(steps), description="quantizer"),
    )
