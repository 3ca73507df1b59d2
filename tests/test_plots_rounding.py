"""Tests for utils.plots.rounding: figures with labelled axes, and curves that are right."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from utils.plots.rounding import (  # noqa: E402
    codes_changed_curve,
    plot_codes_changed,
    plot_edit_in_steps,
    plot_grid,
    plot_rounding_view,
    plot_weight_histogram,
    rounding_grid,
    theoretical_codes_changed,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def labelled(fig: Figure, n_axes: int = 1) -> bool:
    axes = fig.get_axes()
    return len(axes) == n_axes and all(ax.get_xlabel() and ax.get_ylabel() and (ax.get_title() or n_axes > 1) for ax in axes)


# ------------------------------------------------------------------------------------------------ grid


def test_paper_toy_grid():
    g8, g4 = rounding_grid(8, 200), rounding_grid(4, 200)
    assert g8.step == pytest.approx(200 / 127) and g4.step == pytest.approx(200 / 7)
    assert g4.levels.size == 15 and g8.levels.size == 255
    assert g4.levels[0] == pytest.approx(-200) and g4.levels[-1] == pytest.approx(200)
    assert g4.edges.size == 14 and np.allclose(np.diff(g4.edges), g4.step)
    assert g4.zero_bin() == pytest.approx((-100 / 7, 100 / 7))
    assert rounding_grid(2, 1.0).levels.tolist() == [-1.0, 0.0, 1.0]


def test_plot_grid_marks_levels_and_step():
    fig = plot_grid(4, 200.0, window=(-10, 40))
    ax = fig.axes[0]
    assert labelled(fig) and "28.6" in ax.get_title()
    assert any("Δ = 200/7" in t.get_text() for t in ax.texts)
    assert ax.get_xlim() == (-10, 40)
    segments = ax.collections[0].get_segments()  # the level ticks inside the window: 0 and 28.6
    assert sorted(round(s[0][0], 3) for s in segments) == [0.0, round(200 / 7, 3)]


def test_plot_grid_draws_on_a_given_axes():
    fig, axes = plt.subplots(2, 1)
    assert plot_grid(8, ax=axes[0]) is fig and plot_grid(4, ax=axes[1]) is fig
    assert all(ax.get_xlabel() == "weight value" for ax in axes)


def test_weight_histogram_counts_and_edges():
    w = torch.linspace(-200, 200, 1401)
    fig = plot_weight_histogram(w, bits=4, n_bins=40)
    ax = fig.axes[0]
    assert labelled(fig)
    heights = [p.get_height() for p in ax.patches if p.get_label() != "zero bin"]
    assert sum(heights) == 1401
    edges = ax.collections[-1].get_segments()
    assert len(edges) == 14
    share = np.mean(np.abs(w.numpy()) < 100 / 7)
    assert f"{100 * share:.0f}% of the weights" in ax.get_title()


# ------------------------------------------------------------------------------------------------ curves


def test_theory_curves():
    r = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    assert theoretical_codes_changed(r, "uniform").tolist() == pytest.approx([0, 0.1, 0.25, 0.5, 0.75, 1.0])
    assert theoretical_codes_changed(r, "zero-bin").tolist() == pytest.approx([0, 0, 0, 0.5, 1.0, 1.0])
    assert theoretical_codes_changed(-r, "uniform").tolist() == pytest.approx(theoretical_codes_changed(r, "uniform").tolist())


@pytest.mark.parametrize("bits", [4, 8])
def test_evenly_spread_weights_change_code_in_proportion_and_keep_the_edit_on_average(bits):
    ratios = np.array([0.02, 0.1, 0.3, -0.2, 0.7])
    df = codes_changed_curve(ratios, bits, n_weights=40_000, seed=1)
    assert list(df.columns) == ["ratio", "frac_changed", "kept", "theory", "spread"]
    assert np.allclose(df["frac_changed"], np.abs(ratios), atol=0.01)  # binomial sd <= 0.0025
    assert np.allclose(df["kept"], 1.0, atol=0.1)  # E[Q(w+δ) - Q(w)] ≈ δ


def test_weights_deep_in_the_zero_bin_lose_a_small_edit():
    df = codes_changed_curve([0.05, 0.2, 0.24, 0.5, 0.8], 4, spread="zero-bin", n_weights=20_000)
    assert df["frac_changed"].tolist()[:3] == [0.0, 0.0, 0.0]
    assert df["kept"].tolist()[:3] == [0.0, 0.0, 0.0]
    assert df["frac_changed"].iloc[3] == pytest.approx(0.5, abs=0.02) and df["frac_changed"].iloc[4] == 1.0


def test_curve_is_deterministic():
    a = codes_changed_curve([0.1, 0.4], 4, seed=3, n_weights=1000)
    b = codes_changed_curve([0.1, 0.4], 4, seed=3, n_weights=1000)
    pd.testing.assert_frame_equal(a, b)


def test_plot_codes_changed():
    curves = [codes_changed_curve(np.linspace(0, 1, 6), 4, n_weights=2000, spread=s) for s in ("uniform", "zero-bin")]
    fig = plot_codes_changed(curves, mark=0.1)
    ax = fig.axes[0]
    assert labelled(fig) and "|δ| / Δ" in ax.get_xlabel()
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(dots) == 2 and np.allclose(dots[0].get_ydata(), curves[0]["frac_changed"])
    assert plot_codes_changed(curves[0]).axes[0].get_legend() is not None


# ------------------------------------------------------------------------------------------------ edit in steps


def test_plot_edit_in_steps_counts_moved_and_crossing_weights():
    ref = torch.tensor([0.1, -0.2, 0.45, 1.2, 2.0, 0.0])
    new = torch.tensor([0.3, -0.1, 0.55, 1.2, 2.0, 0.0])  # 3 moved; only 0.45 -> 0.55 crosses ±½
    fig = plot_edit_in_steps(ref, new, torch.ones(6), limit=3)
    ax = fig.axes[0]
    assert labelled(fig)
    assert "3 weights moved" in ax.get_title() and "1 crossed a bin edge" in ax.get_title()
    before = [p for p in ax.patches if p.get_label() != "zero bin"]
    assert sum(p.get_height() for p in before if p.get_facecolor()[3] > 0 and p.get_height() > 0) >= 3
    edges = ax.collections[-1].get_segments()
    assert sorted(round(s[0][0], 2) for s in edges) == [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]


def test_plot_edit_in_steps_counts_weights_beyond_the_window():
    ref = torch.tensor([0.1, 5.0, -7.0])
    new = torch.tensor([0.2, 5.5, -7.0])
    title = plot_edit_in_steps(ref, new, torch.ones(3), limit=3).axes[0].get_title()
    assert "2 weights moved" in title and "1 started beyond ±3Δ" in title and "1 crossed" in title


def test_plot_edit_in_steps_uses_each_weights_step():
    ref = torch.tensor([1.0, 1.0])
    new = torch.tensor([1.4, 1.4])
    fig = plot_edit_in_steps(ref, new, torch.tensor([1.0, 4.0]))  # 1 -> 1.4 stays in bin 1; 0.25 -> 0.35 stays in 0
    assert "0 crossed" in fig.axes[0].get_title()
    fig = plot_edit_in_steps(ref, new, torch.tensor([2.0, 2.0]))  # 0.5 -> 0.7: round(0.5)=0 (half to even) -> 1
    assert "2 crossed" in fig.axes[0].get_title()


# ------------------------------------------------------------------------------------------------ the view


@pytest.mark.parametrize("bits, delta, spread", [(4, 5.0, "uniform"), (8, 5.0, "uniform"), (2, -150.0, "zero-bin"), (4, 0.0, "uniform")])
def test_rounding_view(bits, delta, spread):
    fig = plot_rounding_view(bits, delta, spread=spread, n_weights=30)
    assert isinstance(fig, Figure) and labelled(fig, 2)
    title = fig.axes[0].get_title()
    assert f"{bits} bits" in title and "/30 codes change" in title


def test_rounding_view_counts_match_rtn():
    """δ = 5 at 8 bits is 3.2 steps: every code changes; at 4 bits about 17% of evenly spread codes change."""
    assert "30/30 codes change" in plot_rounding_view(8, 5.0, n_weights=30).axes[0].get_title()
    title = plot_rounding_view(4, 5.0, n_weights=2000, seed=2).axes[0].get_title()
    changed = int(title.split(": ")[1].split("/")[0])
    assert abs(changed / 2000 - 5 / (200 / 7)) < 0.03
    assert "0/50 codes change" in plot_rounding_view(4, 5.0, spread="zero-bin", n_weights=50).axes[0].get_title()


# ------------------------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: rounding_grid(9), "bits"),
        (lambda: rounding_grid(4, 0.0), "absmax"),
        (lambda: plot_grid(4, window=(5, 5)), "window"),
        (lambda: plot_grid(4, ax="axes"), "ax"),
        (lambda: plot_grid(4, title=3), "title"),
        (lambda: plot_weight_histogram([], 4), "w"),
        (lambda: plot_weight_histogram([1.0, float("nan")], 4), "w"),
        (lambda: plot_weight_histogram([1.0, 2.0], 4, n_bins=0), "n_bins"),
        (lambda: theoretical_codes_changed([0.1], "edge"), "spread"),
        (lambda: codes_changed_curve([0.1], 4, spread="x"), "spread"),
        (lambda: codes_changed_curve([1.5], 4), "ratios"),
        (lambda: codes_changed_curve([0.1], 1), "bits"),
        (lambda: codes_changed_curve([0.1], 4, n_weights=0), "n_weights"),
        (lambda: codes_changed_curve([0.1], 4, seed=-1), "seed"),
        (lambda: plot_codes_changed("curve"), "curves"),
        (lambda: plot_codes_changed(pd.DataFrame({"a": [1]})), "curves"),
        (lambda: plot_edit_in_steps([1.0], [1.0, 2.0], [1.0]), "w_ref, w_new and step"),
        (lambda: plot_edit_in_steps([1.0], [2.0], [0.0]), "step"),
        (lambda: plot_edit_in_steps([1.0], [2.0], [1.0], limit=0.1), "limit"),
        (lambda: plot_rounding_view(4, 500.0), "delta"),
        (lambda: plot_rounding_view(4, 1.0, spread="edge"), "spread"),
        (lambda: plot_rounding_view(4, 1.0, n_weights=0), "n_weights"),
        (lambda: plot_rounding_view(1, 1.0), "bits"),
    ],
)
def test_bad_arguments_name_the_parameter(call, param):
    with pytest.raises(ValueError, match=param):
        call()
