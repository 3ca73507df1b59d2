"""Unlearning plots: one line per method and metric with the right data, labelled axes, clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from utils.plots.unlearning import (  # noqa: E402
    METHOD_ORDER,
    method_style,
    metric_label,
    plot_raw_logit_kl,
    plot_tradeoff,
    plot_unlearning_curves,
    unlearning_curves_explorer,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def history(methods=("NPO_KLR", "GA")) -> pd.DataFrame:
    rows = []
    for k, m in enumerate(methods):
        for step in (0, 10, 20):
            rows.append({"method": m, "step": step, "forget_acc": 1.0 - 0.01 * step * (k + 1), "retain_acc": 1.0 - 0.005 * step * k})
    return pd.DataFrame(rows)


def test_curves_draw_one_line_per_method_and_metric_with_the_data():
    h = history()
    fig = plot_unlearning_curves(h, ("forget_acc", "retain_acc"))
    axes = fig.axes
    assert len(axes) == 2
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["GA", "NPO_KLR"]  # the canonical method order, not the frame's
    ga = axes[0].get_lines()[0]
    assert list(ga.get_xdata()) == [0, 10, 20]
    assert np.allclose(ga.get_ydata(), h[h.method == "GA"]["forget_acc"])
    assert np.allclose(axes[1].get_lines()[1].get_ydata(), h[h.method == "NPO_KLR"]["retain_acc"])
    assert axes[0].get_xlabel() == "unlearning step" and axes[0].get_ylabel() == metric_label("forget_acc")
    assert ga.get_linestyle() == "--" and axes[0].get_lines()[1].get_linestyle() == "-"


def test_curves_select_methods_and_draw_on_given_axes():
    fig, axes = plt.subplots(1, 1)
    out = plot_unlearning_curves(history(), "retain_acc", methods=["NPO_KLR"], axes=[axes])
    assert out is fig and [line.get_label() for line in axes.get_lines()] == ["NPO_KLR"]


@pytest.mark.parametrize("kwargs, match", [
    ({"metrics": ("nope",)}, "column"),
    ({"metrics": ()}, "metrics"),
    ({"methods": ["KLX"]}, "methods"),
    ({"axes": []}, "axes"),
])
def test_curves_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_unlearning_curves(history(), **kwargs)
    with pytest.raises(ValueError, match="DataFrame"):
        plot_unlearning_curves({"method": []})


def test_tradeoff_places_one_labelled_point_per_model():
    table = pd.DataFrame({"knowmem_forget_acc": [1.0, 0.4, 0.05], "knowmem_retain_acc": [1.0, 0.95, 0.4]},
                         index=pd.Index(["target", "NPO_KLR", "GA"], name="model"))
    fig = plot_tradeoff(table)
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert points.tolist() == [[1.0, 1.0], [0.4, 0.95], [0.05, 0.4]]
    texts = {t.get_text() for t in ax.texts}
    assert {"target", "NPO_KLR", "GA"} <= texts
    assert "lower = more forgotten" in ax.get_xlabel() and "higher = more kept" in ax.get_ylabel()
    with pytest.raises(ValueError, match="column"):
        plot_tradeoff(table, x="privleak")
    with pytest.raises(ValueError, match="ax"):
        plot_tradeoff(table, ax="left")


def test_raw_logit_kl_plot_shows_both_curves_and_the_zero_line():
    shifts = [0.0, 1.0, 2.0]
    fig = plot_raw_logit_kl(shifts, [0.0, 0.0, 0.0], [0.0, -3.0, -6.0])
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert any(np.allclose(line.get_ydata(), [0, 0]) and len(line.get_ydata()) == 2 for line in lines)  # axhline
    raw = [line for line in lines if "raw-logit" in line.get_label()][0]
    assert np.allclose(raw.get_ydata(), [0.0, -3.0, -6.0])
    assert "shift" in ax.get_xlabel()
    with pytest.raises(ValueError, match="equal length"):
        plot_raw_logit_kl([0, 1], [0], [0, 1])


def test_explorer_redraws_for_the_chosen_metric_and_methods():
    explorer = unlearning_curves_explorer(history())
    metric_box, method_box = explorer.children[:2]
    assert metric_box.value == "forget_acc" and set(method_box.value) == {"GA", "NPO_KLR"}
    fig = explorer.f("retain_acc", ("GA",))
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["GA"] and ax.get_ylabel() == metric_label("retain_acc")
    metric_box.value = "retain_acc"  # the widget redraws through the same callback
    assert explorer.result.axes[0].get_ylabel() == metric_label("retain_acc")
    with pytest.raises(ValueError, match="metrics"):
        unlearning_curves_explorer(history(), metrics=["privleak"])


def test_styles_and_labels():
    assert method_style("GA")["linestyle"] == "--" and method_style("NPO_GDR")["linestyle"] == "-"
    assert len({method_style(m)["color"] for m in METHOD_ORDER}) == 6
    assert metric_label("privleak") == "PrivLeak (%)" and metric_label("custom") == "custom"
