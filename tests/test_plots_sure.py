"""SURE plots: the heatmap holds the saliency and outlines exactly the selected modules; the sweep figures
draw one line (or point set) per threshold with the right data; bad input gives clear errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from utils.plots.sure import (  # noqa: E402
    MODULE_TYPE_ORDER,
    gamma_colors,
    plot_forget_retain,
    plot_saliency_heatmap,
    plot_sweep,
    precision_label,
    saliency_grid,
    sweep_explorer,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def saliency_table(layers: int = 3) -> pd.DataFrame:
    rows = []
    for layer in range(layers):
        for k, t in enumerate(reversed(MODULE_TYPE_ORDER)):  # out of order on purpose
            rows.append({"module": f"model.layers.{layer}.x.{t}", "layer": layer, "module_type": t, "n_weights": 100,
                         "saliency": 10.0 * layer + k})
    rows.append({"module": "lm_head", "layer": None, "module_type": "lm_head", "n_weights": 100, "saliency": 99.0})
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def test_saliency_grid_is_layers_by_module_types_in_order():
    grid = saliency_grid(saliency_table())
    assert list(grid.columns) == list(MODULE_TYPE_ORDER)
    assert list(grid.index) == [0, 1, 2]  # lm_head (outside blocks) left out
    assert grid.loc[2, "q_proj"] == 26.0 and grid.loc[0, "down_proj"] == 0.0


def test_heatmap_shows_the_values_and_outlines_exactly_the_selected_modules():
    table = saliency_table()
    selected = ["model.layers.2.x.q_proj", "model.layers.1.x.down_proj"]
    fig = plot_saliency_heatmap(table, selected)
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    assert np.allclose(np.asarray(image), saliency_grid(table).to_numpy())
    boxes = sorted((p.get_xy() for p in ax.patches if isinstance(p, Rectangle)))
    q, down = MODULE_TYPE_ORDER.index("q_proj"), MODULE_TYPE_ORDER.index("down_proj")
    assert boxes == sorted([(q - 0.5, 2 - 0.5), (down - 0.5, 1 - 0.5)])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["layer 0", "layer 1", "layer 2"]
    assert "gradient" in fig.axes[1].get_ylabel() or "∇" in fig.axes[1].get_ylabel()
    assert "2 selected" in ax.get_title()
    assert len(ax.texts) == 21
    assert len(plot_saliency_heatmap(table, annotate=False).axes[0].texts) == 0


def test_heatmap_rejects_bad_input():
    with pytest.raises(ValueError, match="not in the saliency table"):
        plot_saliency_heatmap(saliency_table(), ["model.layers.9.x.q_proj"])
    with pytest.raises(ValueError, match="columns"):
        plot_saliency_heatmap(pd.DataFrame({"module": ["a"]}))
    with pytest.raises(ValueError, match="per row"):
        saliency_grid(saliency_table().assign(row=0))
    with pytest.raises(ValueError, match="annotate='yes'"):
        plot_saliency_heatmap(saliency_table(), annotate="yes")


def sweep(precisions=("full", "rtn4")) -> pd.DataFrame:
    rows = []
    for p_index, precision in enumerate(precisions):
        for gamma in (50.0, 90.0, None):
            for lr in (1e-5, 1e-4):
                name = f"{gamma} {lr}"
                rows.append({"model": name, "precision": precision, "gamma": gamma, "lr": lr,
                             "forget_acc": (gamma or 0) / 100 + lr * 1000 + p_index, "retain_acc": 1.0 - lr * 100,
                             "forget_prob": 0.1 + p_index, "retain_prob": 0.9})
    return pd.DataFrame(rows).astype({"gamma": float})


def test_sweep_draws_one_line_per_gamma_and_the_full_model_in_black():
    table = sweep()
    fig = plot_sweep(table, "forget_acc")
    assert len(fig.axes) == 2
    for ax, precision in zip(fig.axes, ("full", "rtn4")):
        assert ax.get_title() == precision_label(precision) and ax.get_xscale() == "log"
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"SURE γ=50", "SURE γ=90", "full model"}
        part = table[table["precision"] == precision]
        for gamma, label in ((50.0, "SURE γ=50"), (90.0, "SURE γ=90")):
            expect = part[part["gamma"] == gamma].sort_values("lr")
            assert np.allclose(lines[label].get_xdata(), expect["lr"]) and np.allclose(lines[label].get_ydata(), expect["forget_acc"])
        full = part[part["gamma"].isna()].sort_values("lr")
        assert np.allclose(lines["full model"].get_ydata(), full["forget_acc"])
        assert lines["full model"].get_color() == "black"
    assert "accuracy" in fig.axes[0].get_ylabel()
    one = plot_sweep(table, "retain_acc", ["rtn4"], ylim=(0, 1))
    assert len(one.axes) == 1 and one.axes[0].get_ylim() == (0, 1)


def test_references_are_grey_crosses_at_their_own_values():
    table = sweep()
    refs = pd.DataFrame({"model": ["NPO_GDR (900 steps)"] * 2, "precision": ["full", "rtn4"], "lr": [2e-5, 2e-5],
                         "forget_acc": [0.05, 1.0], "forget_prob": [0.03, 0.7], "retain_prob": [0.8, 0.85]})
    fig = plot_sweep(table, "forget_acc", references=refs)
    for ax, value in zip(fig.axes, (0.05, 1.0)):
        cross = [line for line in ax.get_lines() if line.get_label() == "NPO_GDR (900 steps)"]
        assert len(cross) == 1 and cross[0].get_marker() == "X"
        assert list(cross[0].get_xdata()) == [2e-5] and list(cross[0].get_ydata()) == [value]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1e-05", "2e-05", "1e-04"]
    two = pd.concat([refs, refs.assign(model="target", forget_prob=0.9)], ignore_index=True)
    fig = plot_forget_retain(table, references=two)
    marks = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert (list(marks["NPO_GDR (900 steps)"].get_xdata()), list(marks["NPO_GDR (900 steps)"].get_ydata())) == ([0.7], [0.85])
    assert marks["NPO_GDR (900 steps)"].get_marker() != marks["target"].get_marker()
    with pytest.raises(ValueError, match="references is not accepted"):
        plot_sweep(table, "forget_acc", references=refs.drop(columns="lr"))


def test_forget_retain_places_every_run_at_its_metrics():
    table = sweep()
    fig = plot_forget_retain(table, label=["90.0 0.0001"])
    assert len(fig.axes) == 2
    ax = fig.axes[1]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    part = table[table["precision"] == "rtn4"]
    assert sorted(map(tuple, offsets.tolist())) == sorted(zip(part["forget_prob"], part["retain_prob"]))
    sizes = np.concatenate([c.get_sizes() for c in ax.collections])
    assert sizes.min() == pytest.approx(20) and sizes.max() == pytest.approx(100)
    assert [t.get_text() for t in ax.texts] == ["90.0 0.0001"]
    assert "↓" in ax.get_xlabel() and "↑" in fig.axes[0].get_ylabel()


def test_sweep_plots_reject_bad_input():
    table = sweep()
    with pytest.raises(ValueError, match="lacks the columns \\['privleak'\\]"):
        plot_sweep(table, "privleak")
    with pytest.raises(ValueError, match="precisions='nf4'"):
        plot_sweep(table, precisions=["nf4"])
    with pytest.raises(ValueError, match="axes has 1 panels"):
        plot_sweep(table, axes=[plt.subplots()[1]])
    with pytest.raises(ValueError, match="not models of the table"):
        plot_forget_retain(table, label=["nope"])
    with pytest.raises(ValueError, match="non-empty"):
        plot_sweep(table.iloc[:0])


def test_gamma_colors_are_distinct_and_ordered():
    colors = gamma_colors([90, 50, float("nan"), 99, 50])
    assert list(colors) == [50.0, 90.0, 99.0] and len({tuple(c) for c in colors.values()}) == 3


def test_sweep_explorer_redraws_for_the_chosen_metric(monkeypatch):
    import utils.plots.sure as P

    drawn = []
    real = P.plot_sweep
    monkeypatch.setattr(P, "plot_sweep", lambda t, m, p: drawn.append(m) or real(t, m, p))
    box = sweep_explorer(sweep())
    dropdown = box.children[0]
    assert [v for _, v in dropdown.options] == ["forget_acc", "retain_acc", "forget_prob", "retain_prob"]
    dropdown.value = "retain_prob"
    assert drawn == ["forget_acc", "retain_prob"]
