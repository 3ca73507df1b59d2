"""Recovery plots: every model, level and fate drawn where the docstrings say, labelled axes, clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from utils.mechanism import FATES, level_table, zero_bin_edges  # noqa: E402
from utils.plots.recovery import plot_edit_fates, plot_level_tables, plot_lr_search, plot_precision_slopes  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _results():
    rows = []
    for model, values in {"target": (1.0, 1.0, 1.0), "GA_GDR": (0.4, 0.41, 1.0), "NPO": (0.05, 0.05, 0.7)}.items():
        for precision, v in zip(("full", "rtn8", "rtn4"), values):
            rows.append({"model": model, "precision": precision, "knowmem_forget_acc": v, "knowmem_retain_acc": 0.9})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ slopes
def test_precision_slopes_draws_one_line_per_model_with_the_values():
    fig = plot_precision_slopes(_results())
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("target", "GA_GDR", "NPO")]
    assert [line.get_label() for line in lines] == ["target", "GA_GDR", "NPO"]
    assert np.allclose(lines[1].get_ydata(), [0.4, 0.41, 1.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full", "rtn8", "rtn4"]
    assert "precision" in ax.get_xlabel() and "0–1" in ax.get_ylabel()
    assert lines[0].get_linewidth() > lines[1].get_linewidth()  # the target stands out


def test_precision_slopes_subset_order_and_gaps():
    results = _results()
    results = results[~((results["model"] == "NPO") & (results["precision"] == "rtn8"))]
    fig, ax = plt.subplots()
    out = plot_precision_slopes(results, "knowmem_forget_acc", models=["NPO"], precisions=["rtn4", "rtn8", "full"], ax=ax)
    assert out is fig
    (line,) = [line for line in ax.get_lines() if line.get_label() == "NPO"]
    y = np.asarray(line.get_ydata(), dtype=float)
    assert y[0] == 0.7 and np.isnan(y[1]) and y[2] == 0.05


def test_precision_slopes_errors():
    with pytest.raises(ValueError, match="lacks the column.*'privleak'"):
        plot_precision_slopes(_results(), "privleak")
    with pytest.raises(ValueError, match="models='GA'"):
        plot_precision_slopes(_results(), models=["GA"])
    with pytest.raises(ValueError, match="precisions='nf4'"):
        plot_precision_slopes(_results(), precisions=["nf4"])
    with pytest.raises(ValueError, match="results is empty"):
        plot_precision_slopes(_results().iloc[:0])
    with pytest.raises(ValueError, match="ax=str"):
        plot_precision_slopes(_results(), ax="ax")


# ------------------------------------------------------------------ level tables
def test_level_tables_draw_every_level_and_the_zero_bins():
    levels = {q: level_table(q) for q in ("rtn4", "fp4", "nf4")}
    bins = {q: zero_bin_edges(levels[q]) for q in levels}
    fig = plot_level_tables(levels, bins)
    ax = fig.axes[0]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(len(d.get_xdata()) for d in dots) == [15, 15, 16]
    nf4_row = [d for d in dots if len(d.get_xdata()) == 16][0]
    assert np.allclose(sorted(nf4_row.get_xdata()), levels["nf4"].numpy())
    assert len(ax.collections) >= 6  # edges (vlines) and one shaded zero bin per format
    texts = [t.get_text() for t in ax.texts]
    assert any(f"{bins['nf4'][1] - bins['nf4'][0]:.3f}" in t for t in texts)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["nf4 (16 levels)", "fp4 (15 levels)", "rtn4 (15 levels)"]
    assert "absmax" in ax.get_xlabel()


def test_level_tables_errors():
    with pytest.raises(ValueError, match="levels=list"):
        plot_level_tables([0, 1])
    with pytest.raises(ValueError, match=r"levels\['x'\]"):
        plot_level_tables({"x": [0.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="zero_bins has"):
        plot_level_tables({"nf4": level_table("nf4")}, {"fp4": (-0.1, 0.1)})
    with pytest.raises(ValueError, match="lower < 0 < upper"):
        plot_level_tables({"nf4": level_table("nf4")}, {"nf4": (0.1, 0.2)})


# ------------------------------------------------------------------ fates
def _fates():
    return pd.DataFrame([
        {"method": "GA_GDR", "quantizer": "rtn4", FATES[0]: 0.9, FATES[1]: 0.08, FATES[2]: 0.02, "frac_codes_changed": 0.003},
        {"method": "GA_GDR", "quantizer": "nf4", FATES[0]: 0.4, FATES[1]: 0.3, FATES[2]: 0.3, "frac_codes_changed": 0.04},
    ])  # fmt: skip


def test_edit_fates_stacks_to_one_per_row():
    fig = plot_edit_fates(_fates())
    ax = fig.axes[0]
    assert len(ax.containers) == 3
    widths = np.array([[bar.get_width() for bar in c] for c in ax.containers])
    assert np.allclose(widths.sum(0), 1.0)
    assert np.allclose(widths[:, 0], [0.9, 0.08, 0.02])  # first row of the table is the top bar's data
    by_height = {tick: label.get_text() for tick, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert by_height[1].startswith("GA_GDR · rtn4") and "0.30% codes changed" in by_height[1]  # the table's first row on top
    assert by_height[0].startswith("GA_GDR · nf4") and "4.00% codes changed" in by_height[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(FATES)


def test_edit_fates_label_prefers_merged_codes():
    fates = _fates().assign(frac_codes_changed_merged=[0.001, 0.02])
    ax = plot_edit_fates(fates).axes[0]
    by_height = {tick: label.get_text() for tick, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert "0.10% codes changed" in by_height[1] and "2.00% codes changed" in by_height[0]


def test_edit_fates_errors():
    with pytest.raises(ValueError, match="lacks the column"):
        plot_edit_fates(_fates().drop(columns=FATES[2]))
    with pytest.raises(ValueError, match="fates=dict"):
        plot_edit_fates({})


# ------------------------------------------------------------------ LR search
def _search():
    return pd.DataFrame({"lr": [1e-6, 2e-6, 5e-7], "forget_acc": [0.6, 0.3, 0.9], "retain_acc": [1.0, 0.95, 1.0],
                         "gap": [0.2, 0.1, 0.5], "chosen": [False, True, False]})  # fmt: skip


def test_lr_search_marks_goal_and_choice():
    fig = plot_lr_search(_search(), 0.4)
    ax = fig.axes[0]
    forget = [line for line in ax.get_lines() if line.get_label() == "fp32 forget accuracy"][0]
    assert np.allclose(forget.get_xdata(), [5e-7, 1e-6, 2e-6]) and np.allclose(forget.get_ydata(), [0.9, 0.6, 0.3])
    goal = [line for line in ax.get_lines() if "bf16" in line.get_label()][0]
    assert np.allclose(goal.get_ydata(), [0.4, 0.4])
    chosen = [line for line in ax.get_lines() if line.get_label().startswith("chosen")][0]
    assert np.allclose(chosen.get_xdata(), [2e-6]) and "2.0e-06" in chosen.get_label()
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()


def test_lr_search_errors():
    with pytest.raises(ValueError, match="goal=1.2"):
        plot_lr_search(_search(), 1.2)
    with pytest.raises(ValueError, match="lacks the column.*'chosen'"):
        plot_lr_search(_search().drop(columns="chosen"), 0.4)
    with pytest.raises(ValueError, match="title=3"):
        plot_lr_search(_search(), 0.4, title=3)
