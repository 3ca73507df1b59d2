"""Weight-delta plots: labelled axes, every value counted, the marks where the docstrings say."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from utils.plots.deltas import (  # noqa: E402
    bf16_threshold,
    code_identity_table,
    plot_changed_weight_magnitudes,
    plot_code_identity_heatmap,
    plot_delta_in_steps,
    weight_delta_explorer,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def bar_total(ax) -> float:
    """Sum of the histogram's bar heights (the bars of ax.hist, not the shaded bands)."""
    return sum(bar.get_height() for container in ax.containers for bar in container)


def vlines(ax) -> list[float]:
    return sorted(line.get_xdata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1])


# ------------------------------------------------------------------ Δw in steps
def test_delta_in_steps_counts_every_changed_value_and_marks_half_steps():
    delta = torch.tensor([0.0, 0.0, 0.1, -0.2, 0.4, 0.6, -3.5, float("nan")])
    fig = plot_delta_in_steps(delta, bins=21)
    ax = fig.axes[0]
    assert bar_total(ax) == 5  # zeros and the NaN dropped
    assert vlines(ax) == [-0.5, 0.5]
    assert ax.get_yscale() == "log"
    assert "step" in ax.get_xlabel() and "log" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("60.0% inside" in t for t in labels) and any("1 non-finite" in t for t in labels)
    lo, hi = ax.get_xlim()
    assert lo <= -3.5 and hi >= 3.5


def test_delta_in_steps_can_keep_unchanged_weights_and_draws_on_a_given_axes():
    fig, ax = plt.subplots()
    assert plot_delta_in_steps(np.array([0.0, 0.0, 0.3]), ax, changed_only=False, title="mine") is fig
    assert bar_total(ax) == 3 and ax.get_title() == "mine"


def test_delta_in_steps_with_nothing_changed_says_so():
    ax = plot_delta_in_steps(torch.zeros(10)).axes[0]
    assert bar_total(ax) == 0 and any("no changed" in t.get_text() for t in ax.texts)


@pytest.mark.parametrize("kwargs,match", [({"bins": 0}, "bins"), ({"changed_only": "yes"}, "changed_only"), ({"title": 3}, "title")])
def test_delta_in_steps_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_delta_in_steps([0.1, 0.2], **kwargs)
    with pytest.raises(ValueError, match="delta_steps"):
        plot_delta_in_steps(["a", object()])


# ------------------------------------------------------------------ magnitudes of changed weights
def test_changed_weight_magnitudes_histogram_and_marks():
    w0 = torch.tensor([2.0**-9, 2.0**-8, 2.0**-6, 0.5, 0.0, 0.25])
    w1 = w0.clone()
    w1[[0, 1, 2, 4]] += 1e-4  # four changed, one of them was exactly 0
    lr = 2e-5
    ax = plot_changed_weight_magnitudes(w0, w1, lr=lr, zero_bin_halfwidth=2.0**-7).axes[0]
    assert bar_total(ax) == 3
    assert vlines(ax) == sorted([math.log2(256 * lr), -7.0])
    assert "log2" in ax.get_xlabel() and ax.get_ylabel() == "changed weights"
    texts = " | ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "4 changed of 6" in texts and "(75% inside)" in texts and "1 changed weights were exactly 0" in texts
    assert "(75% below)" in texts  # 2^-9, 2^-8 and 0 are below 2^8·2e-5 = 0.00512; 2^-6 is not


def test_changed_weight_magnitudes_with_per_weight_zero_bins():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(64, 64, generator=g) * 0.05
    w1 = w0 + (w0.abs() < 0.01) * 1e-3
    half = torch.full_like(w0, 0.02)
    half[:, 32:] = 0.005
    ax = plot_changed_weight_magnitudes(w0, w1, lr=2e-5, zero_bin_halfwidth=half).axes[0]
    changed = w0 != w1
    expected = float((w0[changed].abs() < half[changed]).float().mean())
    texts = " | ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert f"({expected:.0%} inside)" in texts and "10–90 %" in texts
    assert bar_total(ax) == int(changed.sum())


def test_changed_weight_magnitudes_bad_arguments():
    w = torch.randn(4, 4)
    with pytest.raises(ValueError, match="lr"):
        plot_changed_weight_magnitudes(w, w + 1, lr=0.0)
    with pytest.raises(ValueError, match="same shape"):
        plot_changed_weight_magnitudes(w, torch.randn(3, 4), lr=1e-5)
    with pytest.raises(ValueError, match="zero_bin_halfwidth"):
        plot_changed_weight_magnitudes(w, w + 1, lr=1e-5, zero_bin_halfwidth=torch.ones(2, 2))
    with pytest.raises(ValueError, match="zero_bin_halfwidth"):
        plot_changed_weight_magnitudes(w, w + 1, lr=1e-5, zero_bin_halfwidth=-0.1)
    assert bf16_threshold(2e-5) == pytest.approx(256 * 2e-5)


# ------------------------------------------------------------------ code-identity heatmap
def identity_frame(n_layers: int = 3) -> pd.DataFrame:
    types = ["down_proj", "q_proj", "k_proj", "custom"]
    rows = [{"layer": layer, "module_type": t, "frac_identical": 0.99 + 0.001 * (layer * 4 + i)}
            for layer in range(n_layers) for i, t in enumerate(types)]  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_cells_labels_and_order():
    df = identity_frame()
    ax = plot_code_identity_heatmap(df).axes[0]
    assert ax.get_xlabel() == "module type" and ax.get_ylabel() == "layer"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["q_proj", "k_proj", "down_proj", "custom"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    annotations = [t.get_text() for t in ax.texts]
    assert len(annotations) == 12 and "99.00" in annotations and f"{(0.99 + 0.011) * 100:.2f}" in annotations
    colorbar = ax.figure.axes[1]
    assert "identical" in colorbar.get_ylabel()


def test_heatmap_table_puts_unlayered_modules_last_and_rejects_bad_frames():
    df = pd.concat([identity_frame(2), pd.DataFrame([{"layer": pd.NA, "module_type": "lm_head", "frac_identical": 1.0}])])
    df["layer"] = df["layer"].astype("Int64")
    table = code_identity_table(df)
    assert list(table.index) == ["0", "1", "other"] and table.loc["other", "lm_head"] == 1.0
    assert math.isnan(table.loc["0", "lm_head"])
    with pytest.raises(ValueError, match="frac_identical"):
        plot_code_identity_heatmap(df.drop(columns="frac_identical"))
    with pytest.raises(ValueError, match="several rows"):
        plot_code_identity_heatmap(pd.concat([identity_frame(1), identity_frame(1)]))
    with pytest.raises(ValueError, match="empty"):
        plot_code_identity_heatmap(identity_frame(0).reindex(columns=["layer", "module_type", "frac_identical"]))
    with pytest.raises(ValueError, match="df="):
        plot_code_identity_heatmap({"layer": [0]})


# ------------------------------------------------------------------ explorer
def synthetic_models():
    g = torch.Generator().manual_seed(0)
    names = [f"model.layers.{i}.self_attn.{t}" for i in range(2) for t in ("q_proj", "k_proj")]
    target = {n: (torch.randn(8, 64, generator=g) * 0.06).to(torch.bfloat16).float() for n in names}
    small_edit = {n: w + (w.abs() < 0.01) * 2e-4 for n, w in target.items()}
    big_edit = {n: w + torch.randn(w.shape, generator=g) * 0.01 for n, w in target.items()}
    return target, {"GA_GDR": small_edit, "NPO": big_edit}


def test_explorer_constructs_and_its_callback_draws():
    pytest.importorskip("ipywidgets")
    target, unlearned = synthetic_models()
    df = pd.DataFrame([{"method": "GA_GDR", "quantizer": "rtn4", "layer": int(n.split(".")[2]), "module_type": n.split(".")[-1],
                        "frac_identical": 0.995} for n in target])  # fmt: skip
    explorer = weight_delta_explorer(target, unlearned, ["rtn4", "nf4"], lr=2e-5, code_identity=df)
    assert [w.description for w in explorer.children[:3]] == ["method", "module", "quantizer"]
    assert explorer.result is not None and len(explorer.result.axes) == 4  # 3 plots + colorbar
    fig = explorer.f(method="NPO", module="model.layers.1.self_attn.k_proj", quantizer="nf4")
    assert len(fig.axes) == 3 and any("no code-identity rows" in t.get_text() for t in fig.axes[2].texts)
    assert bar_total(fig.axes[0]) == int((unlearned["NPO"]["model.layers.1.self_attn.k_proj"] != target["model.layers.1.self_attn.k_proj"]).sum())
    explorer.children[0].value = "NPO"  # the widget redraws through the same callback
    assert explorer.kwargs["method"] == "NPO"


def test_explorer_accepts_models_and_step_functions():
    pytest.importorskip("ipywidgets")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=64))  # fmt: skip
    edited = LlamaForCausalLM(model.config)
    edited.load_state_dict(model.state_dict())
    with torch.no_grad():
        edited.model.layers[0].mlp.down_proj.weight.add_(1e-3)
    unit = {"unit": lambda w: (torch.full_like(w, 0.01), torch.full_like(w, 0.005))}
    explorer = weight_delta_explorer(model, {"edit": edited}, unit, lr=1e-5)
    fig = explorer.f(method="edit", module="model.layers.0.mlp.down_proj", quantizer="unit")
    assert len(fig.axes) == 2 and bar_total(fig.axes[0]) == 32 * 64
    with pytest.raises(ValueError, match="quantizers"):
        weight_delta_explorer(model, {"edit": edited}, [3], lr=1e-5)
    with pytest.raises(ValueError, match="same architecture"):
        weight_delta_explorer({"a": torch.ones(2)}, {"m": {"b": torch.ones(2)}}, unit, lr=1e-5)
    with pytest.raises(ValueError, match="code_identity"):
        weight_delta_explorer(model, {"edit": edited}, unit, lr=1e-5, code_identity=pd.DataFrame({"layer": [0]}))
