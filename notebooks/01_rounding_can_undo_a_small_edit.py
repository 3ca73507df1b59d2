# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/quantized-forgetting/quantized-forgetting/blob/main/notebooks/01_rounding_can_undo_a_small_edit.ipynb)
#
# # 01 — Rounding can undo a small edit
#
# *Catastrophic Failure of LLM Unlearning via Quantization* (Zhang et al., ICLR 2025) makes one
# surprising observation: an LLM that has been made to "forget" some text in full precision *remembers it
# again* once its weights are quantized to 4 bits. This notebook builds the idea from the ground up, on
# numbers you can see, before any language model appears.
#
# **Learning objectives**
#
# - Read a quantization grid: levels, bins and the step Δ; compute Δ for 8 and 4 bits (absmax RTN).
# - Predict what rounding does to a small edit δ of many weights: the share of codes that change is
#   about |δ|/Δ, and **on average the edit survives** (E[Q(w+δ) − Q(w)] ≈ δ).
# - Explain when rounding *does* erase an edit: when the edit lives on small weights deep inside the
#   zero bin — which is exactly what bf16 weight storage with a small learning rate produces.
# - Reproduce the effect in a toy network: it forgets a point, and 4-bit (not 8-bit) rounding brings it back.
#
# **You need:** nothing from earlier notebooks. Runs in well under a minute on a laptop CPU, offline.

# %% tags=["colab-setup"]
# Colab only: install this project (Colab's own torch/transformers are kept).
import sys, subprocess
if 'google.colab' in sys.modules:
    REPO_URL, REPO_REF = 'https://github.com/quantized-forgetting/quantized-forgetting', 'main'
    subprocess.run(['git', 'clone', '--depth', '1', '--branch', REPO_REF, REPO_URL, 'repo'], check=True)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-e', 'repo'], check=True)
    sys.path.insert(0, 'repo')
    import os; os.chdir('repo/notebooks')

# %% tags=["parameters"]
import os

SEED = os.environ.get("UQ_SEED", "0")  # validated by utils.config (a non-negative integer)
MODEL = os.environ.get("UQ_MODEL", "tiny")  # unused here: this notebook's model is a toy MLP
DATA = os.environ.get("UQ_DATA", "mini")  # unused here
DEVICE = os.environ.get("UQ_DEVICE", "auto")  # the toy always runs on the CPU (it is tiny)

# %%
# %config InlineBackend.figure_formats = ['png']
import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from utils.config import RunConfig
from utils.plots.rounding import (
    codes_changed_curve,
    plot_codes_changed,
    plot_edit_in_steps,
    plot_grid,
    plot_rounding_view,
    plot_weight_histogram,
    rounding_grid,
)
from utils.mechanism import flat_edit
from utils.quantization import code_identity, rtn_dequantize, rtn_quantize
from utils.repro import pick_device, seed_everything, torch_generator
from utils.toy import (
    FORGOTTEN_BELOW,
    QUANTIZERS,
    crossed_bin_edge,
    evaluate,
    forget_by_gradient_ascent,
    make_mlp,
    make_points,
    p_true,
    train_memorizer,
)

cfg = RunConfig(seed=SEED, model=MODEL, data=DATA, device=DEVICE)
seed_everything(cfg.seed, threads=1)  # one thread: the same float sums on every machine
device = pick_device(cfg.device)
print(f"seed={cfg.seed}  device available={device}  (this notebook computes on the CPU)")

# %% [markdown]
# ## 1. A grid, its bins and the step Δ
#
# Round-to-nearest (RTN) quantization with a symmetric *absmax* scale maps a group of weights onto the
# grid `k·Δ`, `k = −(2^(b−1)−1) … 2^(b−1)−1`, with `Δ = max|w| / (2^(b−1)−1)`. Every weight goes to its
# nearest level, so each level owns a **bin** of width Δ around it. The paper's toy example takes
# `max|w| = 200`: at 8 bits `Δ = 200/127 ≈ 1.57`, at 4 bits `Δ = 200/7 ≈ 28.6` — eighteen times coarser.

# %%
w_toy = torch.tensor([[200.0, -50.0, 3.0, 0.4, 15.0]])
for bits in (8, 4):
    q = rtn_quantize(w_toy, bits=bits, granularity="tensor")
    print(f"{bits} bits: Δ = {q.scales.item():.4f}   codes {q.codes.tolist()[0]}   values {[round(v, 2) for v in rtn_dequantize(q).tolist()[0]]}")

fig, axes = plt.subplots(2, 1, figsize=(9, 4.2), layout="constrained")
plot_grid(8, 200.0, window=(-10, 45), ax=axes[0])
plot_grid(4, 200.0, window=(-10, 45), ax=axes[1])
plt.show()

# %% [markdown]
# Same window of weight values, two grids. At 8 bits a weight of 3.0 gets code 2 (value 3.15); at 4 bits
# it falls in the **zero bin** `(−Δ/2, Δ/2) = (−14.3, 14.3)` and becomes exactly 0, like 0.4 — while 15.0
# just crosses the edge and becomes 28.6. Everything inside one bin is indistinguishable after rounding.
#
# ## 2. Where the weights sit
#
# Real weight matrices are bell-shaped with a few large entries that set the scale. Draw the 4-bit bin
# edges over a histogram:

# %%
g = torch_generator(cfg.seed)
weights = torch.randn(20_000, generator=g) * 30
weights[0] = 200.0  # one large weight sets absmax, as outliers do in LLMs
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), layout="constrained")
plot_weight_histogram(weights, bits=4, ax=axes[0])
plot_weight_histogram(weights, bits=8, ax=axes[1])
plt.show()
zero_share_4 = float((weights.abs() < rounding_grid(4, 200).step / 2).float().mean())
print(f"share of weights in the zero bin: 4 bits {zero_share_4:.1%}, 8 bits {float((weights.abs() < rounding_grid(8, 200).step / 2).float().mean()):.1%}")

# %% [markdown]
# At 4 bits a large share of all weights lands in the zero bin: their exact values are lost. At 8 bits
# the bins are narrow and only a sliver of weights rounds to zero.
#
# ## 3. Move every weight a little: what does rounding keep?
#
# Now make an edit: add the same small δ to every weight (think of one unlearning update) and round
# again. A weight changes code only if it sat within |δ| of the bin edge it moves towards. For weights
# spread evenly inside their bins that happens with probability |δ|/Δ — and when it happens the weight
# jumps a whole step Δ. On average the rounded edit is `(|δ|/Δ)·Δ = δ`: **the edit survives rounding on
# average**, just like stochastic rounding. The measured curves (exact RTN on 20 000 weights):

# %%
ratios = np.round(np.linspace(0.0, 1.0, 21), 3)
spread_evenly = codes_changed_curve(ratios, bits=4, spread="uniform", seed=cfg.seed)
deep_in_zero_bin = codes_changed_curve(ratios, bits=4, spread="zero-bin", seed=cfg.seed)
plot_codes_changed([spread_evenly, deep_in_zero_bin], mark=0.1)
plt.show()
pd.DataFrame({"|δ|/Δ": ratios, "codes changed (even)": spread_evenly["frac_changed"], "edit kept on average (even)": spread_evenly["kept"],
              "codes changed (zero bin)": deep_in_zero_bin["frac_changed"], "edit kept (zero bin)": deep_in_zero_bin["kept"]}).iloc[[1, 2, 4, 6, 10, 16]].round(3)  # fmt: skip

# %% [markdown]
# Two very different outcomes for the same δ:
#
# - **Spread evenly** (blue): the share of changed codes is |δ|/Δ, and the edit is kept on average
#   (the "kept" column stays near 1). A small edit spread over *many* weights is not erased by rounding —
#   a few weights near bin edges carry it.
# - **Deep inside the zero bin** (green, weights with |w| < Δ/4): nothing changes until |δ| > Δ/4. An
#   edit that lives there is erased *exactly*: the rounded model is bit-for-bit the rounded original.
#
# So "rounding undoes small edits" is only true for the second kind of edit. The next section shows how
# ordinary training produces it.
#
# ## 4. A toy network that forgets — and remembers again at 4 bits
#
# A small MLP memorizes 8 random points (each its own class). Label smoothing keeps the target from
# saturating (its probability of each true class is 0.825, not 1), so that small-learning-rate gradient
# ascent can move it — the same reason the series' tiny language model uses it. Weights start at std 0.15
# so that the 4-bit zero bin is wide compared with the updates below (section 5 explains why that matters).
# The toy's code (points, network, training, forgetting, evaluation) is in `utils/toy.py`; the cells below
# only call it.

# %%
INIT_STD, FORGET_LR = 0.15, 2.5e-5  # the two knobs of the exercises (utils.toy's defaults)
x, y = make_points(cfg.seed)  # 8 random points, point i has label i
target = train_memorizer(make_mlp(cfg.seed, init_std=INIT_STD), x, y)  # fp32 Adam, 200 steps
print("target p(true class):", p_true(target, x, y).numpy().round(3))

# %% [markdown]
# The target remembers all 8 points. Now make it forget point 0 by gradient ascent with a small learning
# rate, twice, with one difference: where the weights are **stored**.
#
# - **fp32**: every update is applied to every weight.
# - **bf16**: the weights are kept in bfloat16 (8 significant bits), as the paper's unlearning runs did;
#   an update smaller than half a bf16 spacing of a weight is rounded away.
#
# Both stop at the same point: as soon as p(true class) of point 0 drops below 0.05.

# %%
unlearned_fp32, steps_fp32 = forget_by_gradient_ascent(target, x, y, torch.float32, lr=FORGET_LR)
unlearned_bf16, steps_bf16 = forget_by_gradient_ascent(target, x, y, torch.bfloat16, lr=FORGET_LR)
target_bf16 = copy.deepcopy(target).to(torch.bfloat16)  # the bf16 run starts from this
print(f"gradient-ascent steps to forget: fp32 {steps_fp32}, bf16 {steps_bf16}")
results = evaluate({"target": target, "forgot in fp32": unlearned_fp32, "forgot in bf16": unlearned_bf16}, x, y)
table = results.pivot(index="model", columns="quantizer", values="p(forget point)")[list(QUANTIZERS)].loc[["target", "forgot in fp32", "forgot in bf16"]]
table.round(3)

# %% [markdown]
# Read the table row by row (p of point 0's true class; the target's is about 0.8):
#
# - **target**: remembers point 0 at every precision (rounding moves its probability a little, either way).
# - **forgot in fp32**: forgotten, and **still forgotten after 4-bit rounding**. The edit is spread
#   over all weights, so (section 3) rounding keeps it on average.
# - **forgot in bf16**: forgotten in full precision and at 8 bits, but after **4-bit rounding it is
#   remembered again**, with about the same probability as the 4-bit target. That is the paper's failure mode.
#
# The other points are barely touched by the unlearning (mean p of the others):

# %%
results.pivot(index="model", columns="quantizer", values="mean p(other points)")[list(QUANTIZERS)].round(3)

# %% [markdown]
# For the curious: the bitsandbytes formats that notebook 04 uses (LLM.int8, FP4, NF4) on the same three
# models. Compare each unlearned row with the target row of the same column. In this toy the 4-bit float
# formats damage the target itself more than RTN does (blocks of 64 consecutive weights, uneven levels),
# and NF4 — whose levels are densest near zero, so its zero bin is about half as wide as RTN's — keeps
# more of the bf16 edit. Notebook 04 looks at these formats on a language model.

# %%
evaluate({"target": target, "forgot in fp32": unlearned_fp32, "forgot in bf16": unlearned_bf16}, x, y,
         quantizers=("int8", "fp4", "nf4")).pivot(index="model", columns="quantizer", values="p(forget point)").round(3)  # fmt: skip

# %% [markdown]
# ## 5. Why: the bf16 edit lives inside the zero bin
#
# bf16 keeps 8 significant bits, so a weight `w` has neighbours about `|w|·2⁻⁸` apart. Adam's update is
# about `lr` per step, so it survives bf16 rounding only if it exceeds half that spacing, i.e. for weights
# smaller than roughly `2⁸·lr` — here `2⁸·2.5e-5 ≈ 2⁻⁷ ≈ 0.008`. The threshold is soft: during gradient
# ascent the gradients keep growing, so Adam's normalized step is often larger than `lr`, and a step a
# little over half a spacing rounds up to a whole spacing; somewhat larger weights move too (see the
# printout), and a weight stalls once it has grown enough. Yet all of them are small next to the 4-bit
# zero bin of a group of 64 weights:

# %%
# every Linear weight of both models, flattened, with the reference's 4-bit step Δ and zero-bin half-width Δ/2
edit_fp32, edit_bf16 = flat_edit(target, unlearned_fp32, "rtn4"), flat_edit(target_bf16, unlearned_bf16, "rtn4")
ref_fp32, new_fp32, step4_fp32 = edit_fp32["w_ref"], edit_fp32["w_new"], edit_fp32["step"]
ref_bf16, new_bf16, step4_bf16, half_bin_4 = edit_bf16["w_ref"], edit_bf16["w_new"], edit_bf16["step"], edit_bf16["halfwidth"]
moved_bf16 = ref_bf16 != new_bf16
print(f"weights moved: fp32 {float((ref_fp32 != new_fp32).float().mean()):.1%}, bf16 {float(moved_bf16.float().mean()):.1%}")
print(f"largest |w| among the weights bf16 moved: before {ref_bf16[moved_bf16].abs().max():.4f}, after {new_bf16[moved_bf16].abs().max():.4f}"
      f"   (2^8·lr = {2**8 * FORGET_LR:.4f}, 2^-7 = {2**-7:.4f})")  # fmt: skip
print(f"4-bit zero-bin half-width Δ/2 over the groups: min {half_bin_4.min():.4f}, median {half_bin_4.median():.4f}")
print(f"8-bit zero-bin half-width Δ/2 over the groups: median {(half_bin_4 * 7 / 127).median():.5f}")
small_share = float((ref_bf16[moved_bf16].abs() < 2**-7).float().mean())
below_2_5 = float((ref_bf16[moved_bf16].abs() < 2**-5).float().mean())
inside_share = float((ref_bf16[moved_bf16].abs() < half_bin_4[moved_bf16]).float().mean())
crossed_bf16 = float(crossed_bin_edge(ref_bf16, new_bf16, step4_bf16)[moved_bf16].float().mean())
crossed_fp32 = float(crossed_bin_edge(ref_fp32, new_fp32, step4_fp32)[ref_fp32 != new_fp32].float().mean())
print(f"of the weights bf16 moved: {small_share:.1%} had |w| < 2^-7, {below_2_5:.1%} |w| < 2^-5; {inside_share:.2%} started inside the 4-bit zero bin, "
      f"{crossed_bf16:.2%} crossed a 4-bit bin edge (fp32 edit: {crossed_fp32:.2%} of its moved weights crossed)")  # fmt: skip

# %% [markdown]
# Almost every weight that bf16 let move sat inside the 4-bit zero bin and stayed there, so its 4-bit code
# (0) did not change; in the fp32 edit a few percent of the moved weights crossed an edge. The picture shows the moved weights before and after the edit, each in units of its own
# group's step Δ, with the bin edges at ±½, ±1½, …:

# %%
fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
plot_edit_in_steps(ref_fp32, new_fp32, step4_fp32, ax=axes[0], title="fp32 edit, 4-bit grid")
plot_edit_in_steps(ref_bf16, new_bf16, step4_bf16, ax=axes[1], title="bf16 edit, 4-bit grid")
plot_edit_in_steps(ref_bf16, new_bf16, flat_edit(target_bf16, unlearned_bf16, "rtn8")["step"], ax=axes[2], title="bf16 edit, 8-bit grid", limit=12)
plt.show()

# %% [markdown]
# - **fp32 edit, 4-bit grid**: the moved weights are everywhere on the grid; those near an edge cross it,
#   and the crossings carry the edit through rounding (section 3's blue curve).
# - **bf16 edit, 4-bit grid**: only small weights moved, all deep inside the zero bin, and none crossed an
#   edge. The rounded unlearned model is the rounded target: the edit is *erased*.
# - **bf16 edit, 8-bit grid**: the same edit measured in 8-bit steps (18× smaller) spans several bins, so
#   8-bit rounding keeps it.
#
# The code-level view (exact, per layer) says the same: the share of identical 4-bit codes between the
# target and each unlearned model.

# %%
identity = pd.concat({
    "fp32, rtn4": code_identity(target, unlearned_fp32, "rtn4").set_index("module")["frac_identical"],
    "bf16, rtn4": code_identity(target_bf16, unlearned_bf16, "rtn4").set_index("module")["frac_identical"],
    "bf16, rtn8": code_identity(target_bf16, unlearned_bf16, "rtn8").set_index("module")["frac_identical"],
}, axis=1)  # fmt: skip
identity.round(4)

# %% [markdown]
# ## 6. Try it: bits and δ
#
# Pick a number of bits and an edit δ (in weight units, on the `max|w| = 200` grid): the left panel shows
# sample weights before and after the shift (red: the code changed), the right panel where this lands on
# section 3's curves. The same δ = 5 changes every code at 8 bits and about one in six at 4 bits; with
# "zero-bin" weights, no code changes at 4 bits until δ exceeds 7.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def _rounding_view(bits: int = 4, delta: float = 5.0, spread: str = "uniform") -> None:
    plot_rounding_view(bits, delta, spread=spread, seed=cfg.seed)
    plt.show()


widgets.interact(_rounding_view, bits=widgets.IntSlider(value=4, min=2, max=8, description="bits"),
                 delta=widgets.FloatSlider(value=5.0, min=-30.0, max=30.0, step=0.5, description="δ"),
                 spread=widgets.ToggleButtons(options=["uniform", "zero-bin"], description="weights"));  # fmt: skip

# %% [markdown]
# ## Summary
#
# - A `b`-bit absmax grid has step `Δ = max|w| / (2^(b−1) − 1)`: 200/127 at 8 bits, 200/7 at 4 bits.
# - Shifting evenly spread weights by δ changes about |δ|/Δ of the codes and keeps the edit **on average**.
#   Small edits spread over many weights survive rounding — even at 4 bits.
# - Rounding erases an edit only when it lives on weights that stay inside their bin — in practice
#   small weights deep inside the wide 4-bit zero bin.
# - bf16 weight storage with a small learning rate makes exactly that kind of edit: only weights below
#   about `2⁸·lr` can move. The toy network forgets a point, and 4-bit rounding restores it (to the
#   4-bit target's probability) while 8-bit rounding keeps it forgotten. The same forgetting done in fp32
#   survives 4-bit rounding.
# - Notebook 02 builds a small language model that remembers; notebook 03 makes it forget with the same
#   bf16, small-learning-rate recipe, and notebook 04 meets the same effect there, in every quantizer.
#
# ## Exercises
#
# 1. Compute Δ at 3 and 6 bits for `max|w| = 200`, and the zero-bin half-width at each.
#    <details><summary>Answer</summary>3 bits: Δ = 200/3 ≈ 66.7 (zero bin ±33.3). 6 bits: Δ = 200/31 ≈ 6.45
#    (zero bin ±3.2).</details>
# 2. In section 3, what share of evenly spread weights changes code when δ = 0.3Δ, and what is the mean
#    rounded change? Check it with `codes_changed_curve([0.3], bits=4)`.
#    <details><summary>Hint</summary>A weight changes code iff it is within 0.3Δ of the edge it moves to.
#    </details><details><summary>Answer</summary>About 30% of the codes change, each by a whole Δ, so the
#    mean change is 0.3Δ = δ: `kept` ≈ 1.</details>
# 3. Rerun section 4 with `FORGET_LR = 5e-5`. What happens to the 4-bit recovery, and why?
#    <details><summary>Hint</summary>Which weights can bf16 move now (2⁸·lr), and how far do they go
#    (the next power of two)? Compare with the zero-bin half-width printed in section 5.</details>
#    <details><summary>Answer</summary>Larger weights now move (about a quarter of the moved weights are
#    below 2⁻⁷ instead of half), roughly one in ten of them crosses a 4-bit bin edge, and the 4-bit model
#    stays forgotten. The window of learning rates where the effect appears is narrow — the paper's own
#    learning-rate sweep shows the same.</details>
# 4. Set `INIT_STD = 0.06` (smaller weights, so smaller groups' absmax and a narrower zero bin) and rerun.
#    <details><summary>Answer</summary>The zero-bin half-width shrinks towards the 2⁻⁷ that the bf16 updates
#    reach: most moved weights now cross 4-bit edges, and 4-bit rounding no longer restores the point (the
#    bf16 run also struggles to forget within its budget of 1000 steps, `max_steps`). Where the grid sits
#    relative to the bf16 threshold decides the outcome — the series' tiny language model uses init 0.06 for
#    the same reason (with its own, larger weights per group).</details>
# 5. Why does 8-bit rounding not recover the point, when the bf16 edit is so small?
#    <details><summary>Answer</summary>The 8-bit step is 127/7 ≈ 18 times finer; the moved weights travel
#    several 8-bit steps, so their codes change and the edit is kept (third panel of section 5).</details>
#
# ## Questionnaire
#
# 1. What sets Δ in absmax RTN, and why does one outlier weight make the grid coarse for a whole group?
# 2. True or false: "4-bit rounding erases any edit smaller than Δ/2." Explain with section 3's curves.
# 3. What is the expected value of `Q(w + δ) − Q(w)` for weights spread evenly inside their bins?
# 4. Which weights can an Adam update at learning rate `lr` change when the weights are stored in bf16?
# 5. In the toy, which two ingredients together make 4-bit rounding restore the forgotten point?

# %%
# Final check: the notebook's claims, with tolerances. It fails if the phenomenon disappears.
by = results.set_index(["model", "quantizer"])
# 1. The paper's grid: Δ = 200/127 at 8 bits and 200/7 at 4 bits (float tolerance 1e-5).
assert abs(rtn_quantize(w_toy, 8, granularity="tensor").scales.item() - 200 / 127) < 1e-5
assert abs(rtn_quantize(w_toy, 4, granularity="tensor").scales.item() - 200 / 7) < 1e-5
# 2. Evenly spread weights: codes changed ≈ |δ|/Δ within 0.015 (20 000 weights: binomial sd ≤ 0.0036),
#    and the edit is kept on average (kept within 0.1 of 1 for |δ| ≥ 0.1Δ); zero-bin weights lose |δ| < Δ/4.
assert (spread_evenly["frac_changed"] - spread_evenly["ratio"]).abs().max() < 0.015
assert (spread_evenly.loc[spread_evenly["ratio"] >= 0.1, "kept"] - 1).abs().max() < 0.1
assert (deep_in_zero_bin.loc[deep_in_zero_bin["ratio"] < 0.25, "frac_changed"] == 0).all()
# 3. The target remembers the forget point at every precision (p ≥ 0.5 and predicted).
for q in QUANTIZERS:
    assert by.loc[("target", q), "p(forget point)"] >= 0.5 and by.loc[("target", q), "forget point predicted"], q
# 4. Both unlearning runs forget (p < 0.05, the stopping rule) in full precision.
for model in ("forgot in fp32", "forgot in bf16"):
    assert by.loc[(model, "none"), "p(forget point)"] < FORGOTTEN_BELOW and not by.loc[(model, "none"), "forget point predicted"]
# 5. The fp32 edit SURVIVES 4-bit rounding: still not predicted, p < 0.25 (target's 4-bit p ≥ 0.5).
assert by.loc[("forgot in fp32", "rtn4"), "p(forget point)"] < 0.25 and not by.loc[("forgot in fp32", "rtn4"), "forget point predicted"]
# 6. The bf16 edit is ERASED by 4-bit rounding: predicted again, p within 0.1 of the 4-bit target's (seeds 0-5
#    measured: within 0.05; the rest comes from the few codes that did change), with at least 99.9% of the
#    4-bit codes identical to the target's in every layer ...
assert by.loc[("forgot in bf16", "rtn4"), "forget point predicted"]
assert abs(by.loc[("forgot in bf16", "rtn4"), "p(forget point)"] - by.loc[("target", "rtn4"), "p(forget point)"]) < 0.1
assert identity["bf16, rtn4"].min() >= 0.999
# 7. ... and KEPT by 8-bit rounding: still forgotten (p < 0.15, not predicted), many 8-bit codes changed.
assert by.loc[("forgot in bf16", "rtn8"), "p(forget point)"] < 0.15 and not by.loc[("forgot in bf16", "rtn8"), "forget point predicted"]
assert identity["bf16, rtn8"].min() < 0.99
# 8. Why: at least 98% of the weights bf16 moved started inside the 4-bit zero bin and fewer than 0.5% of
#    them crossed a 4-bit edge (seeds 0-5: >= 99.4% and <= 0.2%), while the fp32 edit's moved weights crossed
#    at least twice as often and at least 0.5% of them (seeds 0-5: 0.9-1.4%).
assert inside_share >= 0.98 and crossed_bf16 < 0.005
assert crossed_fp32 >= 0.005 and crossed_fp32 > 2 * crossed_bf16
print("All claims hold.")
