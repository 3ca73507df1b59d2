"""Rounding plots for notebook 01: grids and bins, where weights sit, and what rounding does to an edit.

- :func:`rounding_grid` / :func:`plot_grid` — the symmetric absmax grid at ``b`` bits: levels ``k·Δ``,
  bins ``[(k-½)Δ, (k+½)Δ]``, ``Δ = absmax / (2^(b-1) - 1)`` (the paper's toy: ``max|w| = 200``).
- :func:`plot_weight_histogram` — a weight histogram with the bin edges drawn over it.
- :func:`codes_changed_curve` / :func:`plot_codes_changed` — shift every weight by the same ``δ``: which
  share of codes changes, and how much of ``δ`` survives rounding on average, as a function of
  ``|δ|/Δ``, for weights spread evenly over the grid or sitting deep inside the zero bin.
- :func:`plot_edit_in_steps` — the weights an edit moved, before and after, in units of their step Δ.
- :func:`plot_rounding_view` — the two-panel view behind the notebook's ``(bits, δ)`` widget.

Every function validates its arguments (``ValueError`` naming the parameter), draws on a given or
new ``Axes`` and returns the ``Figure``; axes are labelled with units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..quantization import rtn_quantize
from ..validation import UQError, check_choice, check_range
from ._args import axes_or_new, check_title, flat_array

SPREADS = ("uniform", "zero-bin")
#: in the "zero-bin" spread the weights sit uniformly in (-ZERO_BIN_DEPTH·Δ, +ZERO_BIN_DEPTH·Δ)
ZERO_BIN_DEPTH = 0.25
_BEFORE, _AFTER, _CHANGED = "tab:blue", "tab:orange", "tab:red"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _array(values: Any, name: str) -> np.ndarray:
    arr = flat_array(values, name, "a tensor or array of numbers")
    if arr.size == 0 or not np.isfinite(arr).all():
        raise UQError(f"{name} is not accepted: it is empty or holds NaN/inf; accepted values: a non-empty tensor or array of finite numbers")
    return arr


def _check_bits(bits: Any) -> int:
    return check_range("bits", bits, 2, 8, integer=True)


def _check_absmax(absmax: Any) -> float:
    return float(check_range("absmax", absmax, 0, None, low_inclusive=False))


# --------------------------------------------------------------------------------------------------
# 1. the grid
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundingGrid:
    """The symmetric absmax grid: ``levels`` ``k·Δ`` for ``|k| <= qmax`` and the ``edges`` between bins."""

    bits: int
    absmax: float
    step: float
    qmax: int
    levels: np.ndarray
    edges: np.ndarray

    def zero_bin(self) -> tuple[float, float]:
        """The bin of 0: ``(-Δ/2, Δ/2)``."""
        return -self.step / 2, self.step / 2


def rounding_grid(bits: int = 4, absmax: float = 200.0) -> RoundingGrid:
    """The RTN absmax grid with ``2^(bits-1) - 1`` positive levels (``Δ = absmax / qmax``)."""
    bits, absmax = _check_bits(bits), _check_absmax(absmax)
    qmax = 2 ** (bits - 1) - 1
    step = absmax / qmax
    k = np.arange(-qmax, qmax + 1)
    edges = (np.arange(-qmax, qmax) + 0.5) * step
    return RoundingGrid(bits=bits, absmax=absmax, step=step, qmax=qmax, levels=k * step, edges=edges)


def plot_grid(bits: int = 4, absmax: float = 200.0, *, window: tuple[float, float] | None = None,
              ax: Axes | None = None, title: str | None = None) -> Figure:  # fmt: skip
    """Levels (ticks), bins (alternately shaded) and the step Δ (an arrow) of the grid at ``bits``.

    ``window`` is the weight range shown (default: the whole grid ``[-absmax, absmax]``).
    """
    grid = rounding_grid(bits, absmax)
    lo, hi = window if window is not None else (-grid.absmax, grid.absmax)
    check_range("window", float(hi - lo), 0, None, low_inclusive=False)
    ax = axes_or_new(ax, (7.0, 1.8), layout="constrained")
    bounds = np.concatenate([[-grid.absmax], grid.edges, [grid.absmax]])
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b >= lo and a <= hi:
            ax.axvspan(a, b, color="0.88" if i % 2 else "0.96", zorder=0)
    zl, zh = grid.zero_bin()
    ax.axvspan(zl, zh, color="tab:green", alpha=0.18, zorder=0, label=f"zero bin (|w| < Δ/2 = {grid.step / 2:.3g})")
    shown = grid.levels[(grid.levels >= lo) & (grid.levels <= hi)]
    ax.vlines(shown, 0.25, 0.75, color="k", lw=1.0 if shown.size < 60 else 0.4, label=f"{2 * grid.qmax + 1} levels k·Δ")
    k0 = max(0, int(np.ceil(lo / grid.step)))
    x0 = k0 * grid.step
    if x0 + grid.step <= hi:
        ax.annotate("", xy=(x0 + grid.step, 0.85), xytext=(x0, 0.85), arrowprops={"arrowstyle": "<->", "color": "tab:red"})
        ax.text(x0 + grid.step / 2, 0.9, f"Δ = {grid.absmax:g}/{grid.qmax} ≈ {grid.step:.3g}", ha="center", va="bottom", color="tab:red", fontsize=9)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1.15)
    ax.set_yticks([])
    ax.set_xlabel("weight value")
    ax.set_ylabel(f"{bits}-bit grid")
    ax.set_title(check_title(title) if title is not None else f"{bits}-bit absmax grid, max|w| = {grid.absmax:g}: Δ = {grid.step:.3g}")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 2. weights and bins
# --------------------------------------------------------------------------------------------------
def plot_weight_histogram(w: Any, bits: int = 4, absmax: float | None = None, *, ax: Axes | None = None,
                          n_bins: int = 120, title: str | None = None) -> Figure:  # fmt: skip
    """Histogram of the weights ``w`` with the bin edges of the ``bits`` grid (``absmax`` default: max|w|)."""
    values = _array(w, "w")
    absmax = float(np.abs(values).max()) if absmax is None else absmax
    grid = rounding_grid(bits, absmax)
    check_range("n_bins", n_bins, 1, integer=True)
    ax = axes_or_new(ax, (7.0, 3.2), layout="constrained")
    ax.hist(values, bins=n_bins, range=(-grid.absmax, grid.absmax), color=_BEFORE, alpha=0.8, label=f"{values.size} weights")
    ax.axvspan(*grid.zero_bin(), color="tab:green", alpha=0.18, label="zero bin")
    ax.vlines(grid.edges, 0, 1, transform=ax.get_xaxis_transform(), colors="k", lw=0.6 if grid.edges.size < 60 else 0.2,
              alpha=0.7, label=f"{bits}-bit bin edges (Δ = {grid.step:.3g})")  # fmt: skip
    zero_share = float(np.mean(np.abs(values) < grid.step / 2))
    ax.set_xlabel("weight value")
    ax.set_ylabel("number of weights")
    ax.set_title(check_title(title) if title is not None else f"{100 * zero_share:.0f}% of the weights fall in the {bits}-bit zero bin")
    ax.legend(fontsize=8)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 3. what rounding does to a uniform shift δ
# --------------------------------------------------------------------------------------------------
def _sample_weights(grid: RoundingGrid, spread: str, n: int, seed: int, window: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if spread == "zero-bin":
        half = ZERO_BIN_DEPTH * grid.step
    else:  # keep one step of margin so that w + δ (|δ| <= Δ) never exceeds absmax: the grid stays fixed
        half = (grid.qmax - 1) * grid.step if window is None else window
    return rng.uniform(-half, half, size=n)


def _codes_and_values(values: np.ndarray, grid: RoundingGrid) -> tuple[np.ndarray, np.ndarray]:
    """RTN codes and values of ``values`` on ``grid`` (the grid's absmax is pinned by two extra weights)."""
    pinned = torch.tensor(np.concatenate([[grid.absmax, -grid.absmax], values]), dtype=torch.float64).reshape(1, -1).float()
    q = rtn_quantize(pinned, bits=grid.bits, scheme="absmax", granularity="tensor")
    codes = q.codes.reshape(-1)[2:].numpy().astype(np.int64)
    return codes, codes * grid.step


def theoretical_codes_changed(ratio: Any, spread: str = "uniform") -> np.ndarray:
    """Expected share of codes changed by a shift of ``|δ|/Δ = ratio`` (``ratio`` ≤ 1).

    Evenly spread weights: ``min(ratio, 1)`` — a weight changes code iff it sat within ``|δ|`` of the
    edge it moves towards. Weights uniform in ``(-Δ/4, Δ/4)``: none until ``|δ| > Δ/4``, then linearly
    all by ``|δ| = 3Δ/4``.
    """
    check_choice("spread", spread, SPREADS)
    r = np.abs(_array(ratio, "ratio"))
    if spread == "uniform":
        return np.minimum(r, 1.0)
    return np.clip((r - ZERO_BIN_DEPTH) / (1 - 2 * ZERO_BIN_DEPTH), 0.0, 1.0)


def codes_changed_curve(ratios: Any, bits: int = 4, *, spread: str = "uniform", n_weights: int = 20_000,
                        seed: int = 0, absmax: float = 200.0) -> pd.DataFrame:  # fmt: skip
    """Shift ``n_weights`` weights by ``δ = ratio·Δ`` and round them, for each ratio (measured, exact RTN).

    Returns a DataFrame with ``ratio`` (``δ/Δ``), ``frac_changed`` (share of codes that changed),
    ``kept`` (``mean(Q(w+δ) - Q(w)) / δ``: the share of the edit that survives rounding on average),
    ``theory`` (:func:`theoretical_codes_changed`) and ``spread``. Ratios must lie in ``[-1, 1]``.
    """
    grid = rounding_grid(bits, absmax)
    check_choice("spread", spread, SPREADS)
    check_range("n_weights", n_weights, 1, integer=True)
    check_range("seed", seed, 0, integer=True)
    r = _array(ratios, "ratios")
    if np.abs(r).max() > 1:
        raise UQError(f"ratios={r.tolist()[:5]}... is not accepted; accepted values: shifts |δ|/Δ between 0 and 1")
    w = _sample_weights(grid, spread, n_weights, seed)
    codes0, values0 = _codes_and_values(w, grid)
    rows = []
    for ratio in r:
        codes1, values1 = _codes_and_values(w + ratio * grid.step, grid)
        delta = ratio * grid.step
        kept = float(np.mean(values1 - values0) / delta) if delta != 0 else float("nan")
        rows.append({"ratio": ratio, "frac_changed": float(np.mean(codes1 != codes0)), "kept": kept})
    df = pd.DataFrame(rows)
    df["theory"] = theoretical_codes_changed(df["ratio"].to_numpy(), spread)
    df["spread"] = spread
    return df


def plot_codes_changed(curves: pd.DataFrame | list[pd.DataFrame], *, ax: Axes | None = None, title: str | None = None,
                       mark: float | None = None) -> Figure:  # fmt: skip
    """Share of codes changed (measured dots, theory line) against ``|δ|/Δ`` for each curve's spread.

    ``curves``: one or more DataFrames from :func:`codes_changed_curve`. ``mark``: a ratio to highlight.
    """
    frames = [curves] if isinstance(curves, pd.DataFrame) else curves
    if not isinstance(frames, list) or not frames or not all(isinstance(f, pd.DataFrame) and {"ratio", "frac_changed", "theory", "spread"} <= set(f.columns) for f in frames):
        raise UQError("curves is not accepted; accepted values: a DataFrame (or list of them) from codes_changed_curve")
    ax = axes_or_new(ax, (5.5, 3.8), layout="constrained")
    colors = {"uniform": _BEFORE, "zero-bin": "tab:green"}
    for frame in frames:
        spread = str(frame["spread"].iloc[0])
        label = "weights spread evenly" if spread == "uniform" else f"weights deep in the zero bin (|w| < {ZERO_BIN_DEPTH:g}Δ)"
        x = frame["ratio"].abs().to_numpy()
        order = np.argsort(x)
        ax.plot(x[order], frame["theory"].to_numpy()[order], "-", color=colors.get(spread, "k"), lw=1, alpha=0.7)
        ax.plot(x, frame["frac_changed"], "o", ms=4, color=colors.get(spread, "k"), label=label)
    if mark is not None:
        ax.axvline(abs(float(check_range("mark", mark, -1, 1))), color=_CHANGED, ls="--", lw=1, label=f"|δ|/Δ = {abs(mark):.2f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("edit size |δ| / Δ (in quantization steps)")
    ax.set_ylabel("share of codes that change")
    ax.set_title(check_title(title) if title is not None else "Rounding after a small shift δ of every weight")
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 4. an edit, weight by weight, in units of the step
# --------------------------------------------------------------------------------------------------
def plot_edit_in_steps(w_ref: Any, w_new: Any, step: Any, *, ax: Axes | None = None, title: str | None = None,
                       limit: float = 3.0, n_bins: int = 120) -> Figure:  # fmt: skip
    """Where the weights that an edit moved sat before and after, in units of their step Δ.

    Only weights with ``w_new != w_ref`` are drawn: ``w_ref/Δ`` (before) and ``w_new/Δ`` (after), with
    the bin edges at ``±½, ±1½, ...`` and the zero bin shaded, within ``±limit`` steps (the title counts
    the moved weights that started beyond it). The title counts the moved weights that
    crossed a bin edge (``round(w_new/Δ) != round(w_ref/Δ)``; exact while the group scales do not change).
    """
    ref, new, delta = _array(w_ref, "w_ref"), _array(w_new, "w_new"), _array(step, "step")
    if not (ref.shape == new.shape == delta.shape):
        raise UQError(f"w_ref, w_new and step have shapes {ref.shape}, {new.shape}, {delta.shape}; accepted values: three tensors of the same shape")
    if (delta <= 0).any():
        raise UQError("step is not accepted: it holds values <= 0; accepted values: positive steps (quantization_step)")
    check_range("limit", limit, 0.5, None)
    check_range("n_bins", n_bins, 1, integer=True)
    ax = axes_or_new(ax, (6.5, 3.5), layout="constrained")
    moved = ref != new
    before, after = ref[moved] / delta[moved], new[moved] / delta[moved]
    crossed = int(np.sum(np.round(before) != np.round(after)))
    bins = np.linspace(-limit, limit, n_bins + 1)
    ax.axvspan(-0.5, 0.5, color="tab:green", alpha=0.15, label="zero bin")
    ax.hist(before, bins=bins, color=_BEFORE, alpha=0.6, label="before the edit")
    ax.hist(after, bins=bins, histtype="step", color=_AFTER, lw=1.5, label="after the edit")
    outside = int(np.sum(np.abs(before) > limit))
    edges = np.arange(-np.floor(limit - 0.5) - 0.5, limit, 1.0)
    ax.vlines(edges, 0, 1, transform=ax.get_xaxis_transform(), colors="k", lw=0.7, alpha=0.6)
    ax.set_xlim(-limit, limit)
    ax.set_xlabel("weight / its quantization step Δ (bin edges at ±½, ±1½, ...)")
    ax.set_ylabel("number of moved weights")
    share = crossed / max(1, int(moved.sum()))
    default = f"{int(moved.sum())} weights moved ({100 * moved.mean():.1f}%); {crossed} crossed a bin edge ({100 * share:.1f}% of them)"
    if outside:
        default += f"\n({outside} started beyond ±{limit:g}Δ, not drawn)"
    ax.set_title(check_title(title) + "\n" + default if title is not None else default, fontsize=10)
    ax.legend(fontsize=8)
    return ax.figure


# --------------------------------------------------------------------------------------------------
# 5. the interactive view
# --------------------------------------------------------------------------------------------------
def plot_rounding_view(bits: int = 4, delta: float = 5.0, *, absmax: float = 200.0, spread: str = "uniform",
                       n_weights: int = 40, seed: int = 0) -> Figure:  # fmt: skip
    """Shift ``n_weights`` weights by ``delta`` on the ``bits`` grid: which cross a bin edge, and the curve.

    Left: a window of the grid (three steps each side of 0); each weight is drawn before (top row) and
    after the shift (bottom row), in red when its code changed. Right: the share of codes changed against
    ``|δ|/Δ`` (theory for both spreads; this sample as a star). The same ``delta`` is a large edit at 8 bits
    and a small one at 4 bits.
    """
    grid = rounding_grid(bits, absmax)
    delta = float(check_range("delta", delta, -absmax, absmax))
    check_choice("spread", spread, SPREADS)
    check_range("n_weights", n_weights, 1, 2000, integer=True)
    check_range("seed", seed, 0, integer=True)
    ratio = delta / grid.step
    window = 3 * grid.step
    w = _sample_weights(grid, spread, n_weights, seed, window=min(window, grid.absmax))
    shifted = np.clip(w + delta, -grid.absmax, grid.absmax)
    codes0, _ = _codes_and_values(w, grid)
    codes1, _ = _codes_and_values(shifted, grid)
    changed = codes0 != codes1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 3.6), gridspec_kw={"width_ratios": [1.6, 1]}, layout="constrained")
    lo = max(-grid.absmax, -window + min(delta, 0.0))
    hi = min(grid.absmax, window + max(delta, 0.0))
    bounds = np.concatenate([[-grid.absmax], grid.edges, [grid.absmax]])
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b >= lo and a <= hi:
            left.axvspan(a, b, color="0.88" if i % 2 else "0.96", zorder=0)
    left.axvspan(*grid.zero_bin(), color="tab:green", alpha=0.18, zorder=0)
    for x0, x1, c in zip(w, shifted, changed):
        left.plot([x0, x1], [1, 0], color=_CHANGED if c else "0.6", lw=1.2 if c else 0.6, alpha=0.9)
    left.scatter(w, np.ones_like(w), s=14, color=_BEFORE, zorder=3, label="w")
    left.scatter(shifted, np.zeros_like(shifted), s=14, color=_AFTER, zorder=3, label="w + δ")
    left.set_xlim(lo, hi)
    left.set_ylim(-0.3, 1.3)
    left.set_yticks([0, 1], ["after", "before"])
    left.set_ylabel("the same weights")
    left.set_xlabel("weight value (bin edges shaded)")
    left.set_title(f"{bits} bits, Δ = {grid.step:.3g}, δ = {delta:g} = {ratio:.2f}Δ: {int(changed.sum())}/{changed.size} codes change", fontsize=10)
    left.legend(fontsize=8, loc="upper right")
    x = np.linspace(0, 1, 101)
    right.plot(x, theoretical_codes_changed(x, "uniform"), color=_BEFORE, label="spread evenly (theory)")
    right.plot(x, theoretical_codes_changed(x, "zero-bin"), color="tab:green", label="deep in the zero bin (theory)")
    if abs(ratio) <= 1:
        right.plot([abs(ratio)], [changed.mean()], "*", ms=12, color=_CHANGED, label="this sample")
    else:
        right.text(0.5, 0.5, f"|δ|/Δ = {abs(ratio):.1f} > 1:\nevery code changes", ha="center", transform=right.transAxes, color=_CHANGED)
    right.set_xlim(0, 1)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("|δ| / Δ")
    right.set_ylabel("share of codes that change")
    right.legend(fontsize=8, loc="upper left")
    return fig
