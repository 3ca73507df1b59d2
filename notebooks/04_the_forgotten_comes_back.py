# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/quantized-forgetting/quantized-forgetting/blob/main/notebooks/04_the_forgotten_comes_back.ipynb)
#
# # 04 — The forgotten comes back
#
# Notebook 03 made the tiny target forget ten people with six unlearning methods, on MUSE's protocol (the
# losses cover the raw forget and retain text). Here we quantize those models the way anyone deploying
# them would — 8-bit and 4-bit, round-to-nearest, bitsandbytes, GPTQ, AWQ — and measure, as in Table 1 of
# *Catastrophic Failure of LLM Unlearning via Quantization* (Zhang et al., ICLR 2025), how much of the
# forgotten knowledge comes back at 4 bits. Then we open the weights to see why, and compare a variant
# whose loss covers only the answer words.
#
# **Learning objectives**
#
# - Apply every quantizer of the series to whole models and read the recovery table in the paper's
#   layout (target, retrained oracle and six methods × full precision, 8-bit, 4-bit; VerbMem,
#   KnowMem-forget, PrivLeak, KnowMem-retain).
# - Compute the paper's "share of forgotten knowledge kept" and put ours beside its 21% → 83%, with every
#   difference between its set-up and this series' in one table.
# - Locate the unlearning edit on the 4-bit grid: edits in units of the local step, which weights moved,
#   and the share of identical 4-bit codes per layer and module.
# - Show the cause with a control: the same unlearning with fp32 weights (learning rate matched to the
#   same forgetting) does not come back.
# - Explain from their level tables why NF4 keeps more of the edit than FP4.
# - Compare what the forget loss covers: the whole text (MUSE) vs the answer words only.
#
# **You need:** notebook 01 (bins, steps, zero bin), 02 (the tiny target and the metrics) and 03 (the six
# methods; this notebook reuses its cached models). With 03's models cached it runs in about five minutes
# on a laptop CPU; from an empty cache it trains them first (about ten more minutes). Offline.

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
MODEL = os.environ.get("UQ_MODEL", "tiny")  # this notebook runs the tiny model; larger ones: notebook 06
DATA = os.environ.get("UQ_DATA", "mini")
DEVICE = os.environ.get("UQ_DEVICE", "auto")
#: GPTQ and AWQ calibrate layer by layer (~10 s and ~25 s per model on a laptop CPU): these models get them
CALIBRATED_MODELS = ("target", "GA_GDR", "NPO_KLR")
#: the method whose unlearning is repeated with fp32 weights (section 4)
CONTROL_METHOD = "GA_GDR"
#: the control's precision: "mixed" = weights stored and updated in fp32, matmuls in bf16 (the bf16 run's
#: arithmetic, so only the storage differs; ~1 min per run); "fp32" = fp32 arithmetic too (~1.7x slower here)
CONTROL_PRECISION = "mixed"
#: section 5: the same method with the loss on the answer words only (~1 min to train)
RUN_ANSWER_LOSS = True

# %%
# %config InlineBackend.figure_formats = ['png']
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from utils.config import offline_setup
from utils.mechanism import (
    DEFAULT_FP32_LRS,
    bf16_reference,
    code_identity_grid,
    edit_fates_table,
    final_metric,
    flat_edit,
    level_table,
    levels_frame,
    match_fp32_lr,
    recovered_claims,
    unchanged_claims,
    zero_bin_edges,
)
from utils.metrics import evaluate_model
from utils.models import get_tiny_world
from utils.plots.deltas import plot_changed_weight_magnitudes, plot_code_identity_heatmap, plot_delta_in_steps, weight_delta_explorer
from utils.plots.recovery import plot_edit_fates, plot_level_tables, plot_lr_search, plot_precision_slopes
from utils.study import CONSTRAINED, FULL, evaluate_grid, kept_summary, paper_vs_series, recovery_table
from utils.unlearning import METHODS, UnlearnRecipe, unlearn_all, unlearn_cached_result

# threads=None: torch's own thread count (or $UQ_THREADS), as in notebook 03 — its training runs are
# ~1.6x faster on two cores than on one
cfg, device = offline_setup(SEED, MODEL, DATA, DEVICE, notebook="04", threads=None)

# %% [markdown]
# ## 1. The target and notebook 03's six unlearned models
#
# Same world, same recipe, same seed as notebook 03, so these come from the cache (they are trained here
# only if the cache is empty). The recipe: MUSE's protocol (the losses cover every token of the forget
# biographies and, for GDR/KLR, of the regulariser's retain biographies), weights **stored and updated
# in bf16**, a small constant learning rate, α = 1.

# %%
world = get_tiny_world(cfg.seed, cfg.cache_dir)
recipe = UnlearnRecipe()
unlearned = unlearn_all(world, METHODS, recipe, seed=cfg.seed, cache_dir=cfg.cache_dir, device=device)
target = world.target.to(device)
models = {"target": target, **{m: r.model for m, r in unlearned.items()}}
oracle_auc = evaluate_model(world.oracle.to(device), world.tokenizer, world.data, include=("privleak",))["privleak_auc"]
print(f"recipe: {recipe}")
print(f"oracle (retrained without the forget set) Min-40% AUC = {oracle_auc:.3f}: PrivLeak is measured relative to it")
pd.DataFrame({m: {"weights dtype": str(next(r.model.parameters()).dtype), "forget acc (training log)": final_metric(r),
                  "retain acc (training log)": final_metric(r, "retain_acc")} for m, r in unlearned.items()}).T  # fmt: skip

# %% [markdown]
# The six models are stored in bf16, as trained. The columns come from notebook 03's training log
# (teacher-forced answer accuracy): the utility-constrained methods (GDR, KLR) have forgotten most of the
# forget answers and kept the retain answers; plain GA and NPO, with nothing holding the retain set,
# forget too but damage the retain set as well.
#
# ## 2. Quantize everything
#
# Every quantizer of the series, applied to every Linear layer of each whole model (the embeddings and the
# output head stay in full precision, as transformers does when it loads a model in 4 or 8 bits):
#
# | name | what | bits |
# |---|---|---|
# | `rtn8` | round-to-nearest, absmax per group of 64 inputs | 8 |
# | `int8` | bitsandbytes LLM.int8 (row-wise absmax) | 8 |
# | `rtn4` | round-to-nearest, absmax per group of 64 — the paper's "RTN 4-bit" | 4 |
# | `fp4` | bitsandbytes FP4, blocks of 64 — what the paper's 4-bit runs used | 4 |
# | `nf4` | bitsandbytes NF4 (normal-float levels), blocks of 64 | 4 |
# | `gptq4` | GPTQ, groups of 64, calibrated on retain text | 4 |
# | `awq4` | AWQ, groups of 64, calibrated on retain text | 4 |
#
# Each quantized model is evaluated with every MUSE metric (`utils.study.evaluate_grid`).

# %%
EIGHT_BIT, FOUR_BIT, CALIBRATED = ("rtn8", "int8"), ("rtn4", "fp4", "nf4"), ("gptq4", "awq4")
graded = {"oracle": world.oracle.to(device), **models}
results = evaluate_grid(world, graded, EIGHT_BIT + FOUR_BIT, oracle_auc=oracle_auc)
calibrated = evaluate_grid(world, {m: models[m] for m in CALIBRATED_MODELS}, CALIBRATED, oracle_auc=oracle_auc)
results = pd.concat([results, calibrated[calibrated["precision"] != FULL]], ignore_index=True)
PRECISIONS = [FULL, *EIGHT_BIT, *FOUR_BIT, *CALIBRATED]
print(f"{len(results)} (model, precision) cells evaluated; GPTQ/AWQ for {', '.join(CALIBRATED_MODELS)}")

# %% [markdown]
# ### The recovery table, in the paper's layout
#
# Table 1 of the paper: rows the target, the retrained oracle and the six methods; for each, full
# precision, 8-bit (LLM.int8) and 4-bit (bitsandbytes FP4, what `load_in_4bit=True` gave); columns the
# four MUSE metrics — **VerbMem** on the forget set (ROUGE-L of continuations), **KnowMem** on the forget
# set (ROUGE-L of answers), **PrivLeak** (%, 0 = like the oracle, −100 = the target's leak) and
# **KnowMem** on the retain (retain2) questions, the utility. ↓ / ↑: what unlearning wants.

# %%
TABLE1 = {"verbmem_forget": "VerbMem forget ↓", "knowmem_forget_rouge": "KnowMem forget ↓", "privleak": "PrivLeak %",
          "knowmem_retain_rouge": "KnowMem retain ↑"}  # fmt: skip
TABLE1_PRECISIONS = {FULL: "full", "int8": "8-bit", "fp4": "4-bit"}
rows = ["target", "oracle", *METHODS]
table1 = pd.concat({label: recovery_table(results, metric, list(TABLE1_PRECISIONS)).loc[rows].rename(columns=TABLE1_PRECISIONS)
                    for metric, label in TABLE1.items()}, axis=1)  # fmt: skip
table1.round(2)

# %% [markdown]
# Every precision, with the secondary columns (exact-match accuracy and the true answer's probability on
# the forget questions). Blank cells were not computed.

# %%
METRICS = {"knowmem_forget_rouge": "KnowMem forget (ROUGE-L) ↓", "knowmem_forget_acc": "KnowMem forget (exact) ↓",
           "forget_answer_prob": "p(answer) forget ↓", "verbmem_forget": "VerbMem forget ↓",
           "knowmem_retain_rouge": "KnowMem retain ↑"}  # fmt: skip
paper_table = pd.concat({label: recovery_table(results, metric, PRECISIONS) for metric, label in METRICS.items()}, axis=1)
for label in METRICS.values():
    print(label)
    display(paper_table[label].round(2))

# %%
fig, axes = plt.subplots(1, 3, figsize=(19, 4.2), layout="constrained")
plot_precision_slopes(results, "knowmem_forget_rouge", precisions=PRECISIONS, ax=axes[0], title="KnowMem (ROUGE-L) on the forget set")
plot_precision_slopes(results, "verbmem_forget", precisions=PRECISIONS, ax=axes[1], title="VerbMem on the forget set")
plot_precision_slopes(results, "knowmem_retain_rouge", precisions=PRECISIONS, ax=axes[2], title="KnowMem on the retain2 questions (utility)")
for ax in axes[:2]:
    ax.get_legend().remove()
plt.show()

# %% [markdown]
# Read the tables column by column, always comparing a method with the **target at the same precision**:
#
# - **full precision, `rtn8`, `int8`**: the utility-constrained methods (GA_GDR, GA_KLR, NPO_GDR,
#   NPO_KLR) have unlearned most of the forget **text** (VerbMem from 1 to about 0.4) and part of the
#   forget **knowledge** (KnowMem), while keeping most of the utility; 8-bit rounding changes nothing.
# - **`rtn4`, `fp4`**: VerbMem jumps back towards the 4-bit target's for every constrained method, and
#   so do KnowMem on the forget questions and the true answer's probability (RTN more than FP4 here).
#   Much of what looked forgotten was hidden by an edit that 4-bit rounding erases.
# - **`nf4`**: here the forgetting survives (NF4 has finer levels near zero — section 4b).
# - **`gptq4`, `awq4`** (for the models in `CALIBRATED_MODELS`): both round onto a uniform 4-bit grid, but
#   they choose the rounding with calibration data. Compare their columns with `rtn4`: they need not
#   behave alike (exercise 4).
# - **GA and NPO** without a utility constraint forget the most and lose the most utility; they come
#   back partly too.
# - Not every number returns to the target's: a part of each edit does cross 4-bit bin edges (section 3
#   counts the changed codes), and that part survives.
#
# ### Share of forgotten knowledge kept
#
# The paper's headline: on average, the utility-constrained unlearned models keep **21%** of the knowledge
# meant to be forgotten in full precision and **83%** after 4-bit quantization (KnowMem on the forget
# set, MUSE). Here (`utils.study.kept_summary`): KnowMem forget (ROUGE-L) — and VerbMem — of each method
# divided by the target's at the same precision, averaged over GA_GDR, GA_KLR, NPO_GDR and NPO_KLR, for
# each 4-bit format.

# %%
kept = pd.concat({(metric, q): kept_summary(results, four_bit=q, metric=metric)["this run"]
                  for metric in ("knowmem_forget_rouge", "verbmem_forget") for q in FOUR_BIT}, axis=1)  # fmt: skip
kept[("paper: KnowMem (Table 1, MUSE)", "")] = kept_summary(results, four_bit="rtn4")["paper (Table 1, MUSE)"]
kept.round(2)

# %% [markdown]
# The two experiments differ in almost everything but the mechanism; here is every difference we know
# of, so that a number above is never read as a reproduction of the paper's:

# %%
paper_vs_series()

# %% [markdown]
# The same direction as the paper's — more of the forgotten knowledge kept after RTN or FP4 4-bit
# quantization than in full precision — but not its size: our methods forget much less of the *knowledge*
# in full precision (they keep far more than 21%), while the forget *text* (VerbMem) behaves more like
# the paper's KnowMem. NF4, the default of QLoRA-style loading today, keeps the forgetting here.
#
# ## 3. Where the edit lands on the 4-bit grid
#
# The unlearned models are stored in bf16, so we compare them with the target **rounded to bf16** (what
# the unlearning started from), weight by weight.

# %%
target_bf16 = bf16_reference(world.target)
bf16_models = {m: r.model.to("cpu") for m, r in unlearned.items()}
identity = code_identity_grid(target_bf16, bf16_models, FOUR_BIT)
fates = edit_fates_table(target_bf16, bf16_models, (*FOUR_BIT, "rtn8"), lr=recipe.lr)
print("share of identical codes, target vs unlearned, over all quantized weights (FP4's ±1/192 levels counted as 0):")
display((1 - fates.pivot(index="method", columns="quantizer", values="frac_codes_changed_merged")).loc[list(METHODS), [*FOUR_BIT, "rtn8"]].round(4))
moved = fates.groupby("method", sort=False)[["frac_changed", "frac_below_bf16_threshold"]].first()
fate_shares = fates.pivot(index="method", columns="quantizer", values=["stayed in the zero bin", "crossed a bin edge"])
pd.concat([moved, fate_shares.loc[:, (slice(None), [*FOUR_BIT, "rtn8"])]], axis=1).loc[list(METHODS)].round(3)

# %% [markdown]
# - `frac_changed`: the unlearning changed only a minority of the weights at all — bf16 storage cannot
#   register an Adam step of ~`lr` on a weight much larger than `2⁸·lr` (`frac_below_bf16_threshold`: the
#   share of changed weights below it; the threshold is soft, a step a little over half a bf16 spacing
#   rounds up to a whole one).
# - For `rtn4` and `fp4`, the changed weights overwhelmingly **stayed in the zero bin**: their 4-bit code
#   was 0 before and after, and nearly all 4-bit codes are the target's. (FP4 has two tiny levels ±1/192
#   next to 0; a weight moving between them and 0 changes its raw code but not its value in any way that
#   matters, so we count them as the zero bin, as `utils.quantization.zero_bin_halfwidth` does.)
# - `nf4` and `rtn8` have narrower bins near zero; far more changed weights **cross a bin edge**, so their
#   codes carry the edit.
#
# The same, weight by weight, for one method (plotting functions from `utils.plots.deltas`):

# %%
SHOW = "NPO_KLR"
fig, axes = plt.subplots(1, 3, figsize=(19, 4.3), layout="constrained")
for ax, q in zip(axes[:2], ("rtn4", "nf4")):
    flat = flat_edit(target_bf16, bf16_models[SHOW], q)
    plot_delta_in_steps(flat["delta_steps"], ax, title=f"{SHOW}: edits in {q} steps (whole model)")
flat = flat_edit(target_bf16, bf16_models[SHOW], "rtn4")
plot_changed_weight_magnitudes(flat["w_ref"], flat["w_new"], lr=recipe.lr, zero_bin_halfwidth=flat["halfwidth"], ax=axes[2],
                               title=f"{SHOW}: which weights moved (rtn4 zero bin)")  # fmt: skip
plt.show()
# FP4: its ±1/192 levels counted as 0, as in the table above (the raw share is identity["frac_identical_raw"])
fig, axes = plt.subplots(1, 3, figsize=(19, 3.8), layout="constrained")
for ax, q in zip(axes, FOUR_BIT):
    plot_code_identity_heatmap(identity[(identity["method"] == SHOW) & (identity["quantizer"] == q)], ax, title=f"{SHOW}: identical {q} codes")
plt.show()

# %% [markdown]
# - **Left, middle**: the edits are a small fraction of the local step (inside the ±½ marks). NF4's steps
#   near zero are about half as large as RTN's, so the same edits measure about twice as big there.
# - **Right**: the weights that moved were the small ones (around and below the bf16 threshold
#   `2⁸·lr`), and most of them sit inside their group's 4-bit zero bin — the band marks where that edge
#   lies across groups.
# - **Heatmaps**: per layer and module type, the share of identical codes (note each colour scale);
#   compare the three formats.
#
# Explore any method, module and 4-bit format:

# %%
# NBVAL_IGNORE_OUTPUT
explorer = weight_delta_explorer(target_bf16, bf16_models, FOUR_BIT, lr=recipe.lr, code_identity=identity)
display(explorer)

# %% [markdown]
# ## 4. The mechanism, shown
#
# ### 4a. Same unlearning, fp32 weights: no recovery
#
# If bf16 storage is the cause, the same unlearning with fp32 weights should survive 4-bit rounding. An
# fp32 weight registers every Adam step, so at the bf16 run's learning rate it would forget far more; for
# a fair comparison we search a few smaller learning rates (`utils.mechanism.match_fp32_lr`, each run
# cached) and keep the one whose full-precision forget accuracy is closest to the bf16 run's.
#
# Only the **storage** changes: with `CONTROL_PRECISION = "mixed"` the fp32 weights are multiplied in bf16
# (autocast), exactly the arithmetic of the bf16 run — what a mixed-precision trainer does with fp32
# master weights. So if the control behaves differently, bf16 *storage* is why.

# %%
goal = final_metric(unlearned[CONTROL_METHOD])
match = match_fp32_lr(world, CONTROL_METHOD, goal, DEFAULT_FP32_LRS, recipe=recipe, seed=cfg.seed, cache_dir=cfg.cache_dir,
                      device=device, precision=CONTROL_PRECISION, refine=1)  # fmt: skip
plot_lr_search(match.table, goal, title=f"{CONTROL_METHOD} in fp32: matching the bf16 run's forgetting")
plt.show()
print(f"bf16 run (lr {recipe.lr:.0e}): forget accuracy {goal:.3f}; fp32 candidates tried, in order:")
match.table.assign(lr=match.table["lr"].map("{:.2g}".format)).round(3)

# %%
FP32_NAME = f"{CONTROL_METHOD} fp32 (lr {match.lr:.2g})"
BF16_NAME = f"{CONTROL_METHOD} bf16 (lr {recipe.lr:.2g})"
control = evaluate_grid(world, {FP32_NAME: match.result.model.to(device)}, EIGHT_BIT + FOUR_BIT, oracle_auc=oracle_auc)
comparison = pd.concat([results[results["model"].isin(["target", CONTROL_METHOD])].replace({"model": {CONTROL_METHOD: BF16_NAME}}), control],
                       ignore_index=True)  # fmt: skip
fig, ax = plt.subplots(figsize=(8, 4))
plot_precision_slopes(comparison, "knowmem_forget_acc", precisions=[FULL, *EIGHT_BIT, *FOUR_BIT], ax=ax,
                      title="bf16 vs fp32 weights, same forgetting in full precision")  # fmt: skip
plt.show()
recovery_table(comparison, "knowmem_forget_acc", [FULL, *EIGHT_BIT, *FOUR_BIT]).round(2)

# %% [markdown]
# With fp32 weights, the forgetting **survives** RTN and FP4 rounding; with bf16 weights it does not.
# (The search walks from lr 1e-6 until it straddles the bf16 run's forget accuracy, tries the geometric
# midpoint of the bracket once (`refine=1`) and keeps the closest: the match is approximate, the claim
# below allows for it.) Where did the fp32 edit go?
# Everywhere: every weight moved a little, and the weights near a bin edge crossed it (notebook 01,
# section 3: on average the edit survives rounding).

# %%
control_fates = edit_fates_table(world.target.float().cpu(), {FP32_NAME: match.result.model.to("cpu")}, FOUR_BIT, lr=match.lr)
both = pd.concat([fates[fates["method"] == CONTROL_METHOD].replace({"method": {CONTROL_METHOD: BF16_NAME}}), control_fates], ignore_index=True)
plot_edit_fates(both, title="Changed weights: bf16 edit vs fp32 edit")
plt.show()
both.set_index(["method", "quantizer"])[["frac_changed", "stayed in the zero bin", "crossed a bin edge", "frac_codes_changed_merged"]].round(4)

# %% [markdown]
# The fp32 edit changes every weight, and many times as many 4-bit codes (`frac_codes_changed_merged`,
# the share of all weights): those crossings are the edit, and rounding keeps them. The bf16 edit changes
# few weights, mostly small ones, and leaves almost every 4-bit code (and every block scale: the largest
# weight of a block cannot move in bf16) of the target in place — the quantized unlearned model is,
# nearly code for code, the quantized target.
#
# ### 4b. NF4 vs FP4: the level tables
#
# Both formats scale each block of 64 weights by its absmax and round `w / absmax` to one of 16 levels.
# FP4's levels are those of a tiny float (1 sign, 2 exponent, 1 mantissa bit): the two next to zero
# (±1/192) are so small that a weight rounding to them is effectively zero, so its **effective zero bin**
# reaches ±0.086. NF4's levels are quantiles of a normal distribution — densest near zero, with a zero bin
# of about ±0.04, half as wide as FP4's and narrower than RTN's ±1/14.

# %%
levels = {q: level_table(q) for q in FOUR_BIT}
plot_level_tables(levels, {q: zero_bin_edges(levels[q]) for q in levels})
plt.show()
levels_frame(FOUR_BIT).round(4)

# %% [markdown]
# The small weights that bf16 lets move are, relative to their block's absmax, mostly inside ±0.07 (RTN)
# and ±0.086 (FP4) but often beyond NF4's ±0.04. A small edit on them therefore crosses NF4's near-zero
# bin edges far more often — the `crossed a bin edge` column of section 3 — and NF4 keeps the forgetting.
# Nothing about NF4 "protects" unlearning in general: it just has finer levels exactly where this edit
# lives. (FP4's own tiny levels ±1/192 are too close to 0 to matter: a weight there is effectively 0.)
#
# ## 5. What the forget loss covers: whole text vs answer words
#
# MUSE's methods unlearn raw text: the loss covers every token of the forget documents, names, relation
# words and sentence order included. The variant `forget_on="answers"` covers only the answer word of
# each fact inside the same biographies (the retain side likewise). Same method, learning rate and
# steps, bf16: how do the two fare at 4 bits?

# %%
if RUN_ANSWER_LOSS:
    answer_result = unlearn_cached_result(world, CONTROL_METHOD, UnlearnRecipe(forget_on="answers"), seed=cfg.seed,
                                          cache_dir=cfg.cache_dir, device=device)  # fmt: skip
    ANSWER_NAME = f"{CONTROL_METHOD}, loss on answer words"
    answer_grid = evaluate_grid(world, {ANSWER_NAME: answer_result.model}, EIGHT_BIT + FOUR_BIT, oracle_auc=oracle_auc,
                                include=("knowmem", "prob", "verbmem"))  # fmt: skip
    loss_rows = pd.concat([results[results["model"].isin(["target", CONTROL_METHOD])].replace({"model": {CONTROL_METHOD: f"{CONTROL_METHOD}, loss on the text"}}),
                           answer_grid], ignore_index=True)  # fmt: skip
    display(pd.concat({m: recovery_table(loss_rows, m, [FULL, *EIGHT_BIT, *FOUR_BIT])
                       for m in ("knowmem_forget_rouge", "verbmem_forget")}, axis=1).round(2))  # fmt: skip
    answer_fates = edit_fates_table(target_bf16, {ANSWER_NAME: answer_result.model.to("cpu")}, FOUR_BIT, lr=recipe.lr)
    both_losses = pd.concat([fates[fates["method"] == CONTROL_METHOD].replace({"method": {CONTROL_METHOD: f"{CONTROL_METHOD}, loss on the text"}}),
                             answer_fates], ignore_index=True)  # fmt: skip
    display(both_losses.set_index(["method", "quantizer"])[["frac_changed", "stayed in the zero bin", "crossed a bin edge",
                                                            "frac_codes_changed_merged"]].round(4))  # fmt: skip

# %% [markdown]
# Read the two blocks together. The answer-word loss aims every step at the facts: it changes about as
# many weights as the text loss, but almost none of them leaves its 4-bit zero bin, so its forgetting is
# the one 4-bit rounding erases. The text loss also pushes down the names, relation words and sentence
# order; over 900 steps its GA term grows, Adam's steps on some weights exceed `lr`, larger weights start
# to move and more of them cross a bin edge — the share of changed 4-bit codes is several times larger,
# and so is the share of its forgetting that survives. On a 7B model the paper sees strong recovery with
# raw-text unlearning; in this 3.3M-parameter world the text loss needs hundreds of passes over the forget
# text to forget at all, and by then part of its edit has left the zero bin. What sets that balance —
# model size, the word-level vocabulary, the number of steps — is an open question (exercise 5).
#
# ## Summary
#
# - Quantizing notebook 03's utility-constrained unlearned models (MUSE protocol: whole-text losses) to
#   **4 bits with RTN or FP4** brings much of the forgotten text back (VerbMem) and part of the forgotten
#   knowledge (KnowMem); **8-bit** quantization keeps the forgetting.
# - The share of forgotten knowledge kept rises from full precision to 4 bits, as in the paper's
#   21% → 83% — in this tiny world from a larger share (the methods forget less knowledge in full
#   precision), and the table of differences says why the numbers cannot be compared one to one.
# - **Why** (this series' finding): stored in bf16, the weights can only move where `|w| < 2⁸·lr`; those
#   small weights mostly sit inside the wide 4-bit zero bin and stay there, so 99% of the 4-bit codes
#   (and every scale) are the target's. The part of the edit that crosses bin edges survives.
# - **Control**: the same unlearning with fp32 weights, at a learning rate giving the same forgetting,
#   changes many more codes and survives 4-bit rounding.
# - **NF4** has finer levels near zero, so the same small edits cross its bin edges and NF4 keeps the
#   forgetting.
# - **What the loss covers**: a loss on the answer words only forgets less but comes back almost
#   entirely; the whole-text loss changes tens of times more 4-bit codes, and that part of its edit stays.
#
# ## Exercises
#
# 1. Compute the share of forgotten knowledge kept with `forget_answer_prob` instead of KnowMem accuracy
#    (`kept_summary(results, "rtn4", metric="forget_answer_prob")`). Does the smoother metric tell the same story?
#    <details><summary>Answer</summary>Yes: the probability of the true answer falls in full precision and
#    comes back at 4 bits (RTN, FP4) to about the target's, while 8-bit keeps it low.</details>
# 2. Which modules carry most of the changed 4-bit codes under NF4? Use the explorer or
#    `identity[(identity.method == "NPO_KLR") & (identity.quantizer == "nf4")].sort_values("frac_identical")`.
#    <details><summary>Hint</summary>Which modules have the smallest weights relative to their block's absmax?
#    </details><details><summary>Answer</summary>Read it from the table: the modules with the lowest
#    `frac_identical` carry the edit. Modules whose weights are small compared with their block's absmax
#    put more of their weights near zero, where NF4's bins are narrowest.</details>
# 3. Rerun section 4a with `CONTROL_METHOD = "NPO_KLR"`. Does the fp32 control still survive 4-bit rounding?
#    <details><summary>Answer</summary>It should: nothing in the argument depends on the loss, only on
#    where the weights are stored. (It trains two or three fp32-storage runs, about a minute each.)</details>
# 4. Compare the `gptq4` and `awq4` columns with `rtn4`. Measure how many quantized weights land on the
#    same value for the target and GA_GDR:
#    `quantized_value_identity(target_bf16, bf16_models["GA_GDR"], q, calibration=calibration_ids(world))`
#    for `q` in `rtn4`, `gptq4`, `awq4` (imports: `utils.mechanism`, `utils.study`). What does GPTQ do
#    that RTN does not?
#    <details><summary>Hint</summary>GPTQ quantizes a matrix column by column and pushes each column's
#    rounding error onto the columns not yet quantized.</details><details><summary>Answer</summary>RTN
#    decides each weight alone, so a tiny edit inside the zero bin changes nothing. GPTQ's error feedback
#    makes every later rounding decision depend on the earlier residuals, so the tiny edit changes the
#    rounding of many *other* weights: the two models share only a minority of their GPTQ values and the
#    edit survives (here, GPTQ kept the forgetting). AWQ also ends with mostly different values — it picks a
#    per-layer input scaling by search, and a slightly different choice rescales everything — yet each
#    weight is still rounded to nearest on its own, so small edits stay swallowed by the zero bin and the
#    knowledge comes back. Identical values are sufficient for recovery, not necessary.</details>
# 5. Section 5: train `UnlearnRecipe(lr=1e-5, steps=1800)` (the whole-text loss) for GA_GDR. Does recovery
#    get stronger with a smaller learning rate? Relate the answer to `frac_codes_changed`.
#    <details><summary>Hint</summary>A smaller lr lowers the bf16 threshold `2⁸·lr`: fewer, smaller weights
#    move.</details><details><summary>Answer</summary>Measure it: the prediction is that fewer codes change
#    and more of the forgotten knowledge returns at 4 bits — if forgetting happens at all at that lr.</details>
#
# ## Questionnaire
#
# 1. In the recovery table, why must a quantized unlearned model be compared with the target quantized the
#    same way, not with the full-precision target?
# 2. What does "share of forgotten knowledge kept" measure, what are the paper's two numbers, and name
#    three differences between the paper's set-up and this notebook's.
# 3. Why does 8-bit quantization not bring the knowledge back?
# 4. What two ingredients of the unlearning recipe confine the edit to the 4-bit zero bin?
# 5. Why do we compare the unlearned bf16 model with the target *rounded to bf16*?
# 6. Why does the fp32 control need a smaller learning rate than the bf16 run, and how was it chosen?
# 7. Which format has the narrowest zero bin: RTN 4-bit, FP4 or NF4? What does that change here?

# %%
# Final check: the notebook's claims, with tolerances. It fails if the phenomenon disappears.
# (Measured, full -> rtn4 / fp4, seed 0: VerbMem GA_GDR .45 -> .77/.73, GA_KLR .37 -> .70/.62, NPO_GDR .43 ->
# .86/.82, NPO_KLR .37 -> .75/.75; KnowMem forget, mean of the four, .60 -> .82/.76. Seed 1: VerbMem gains
# .19-.44 at rtn4; share of KnowMem forget kept .54 -> .81 (rtn4) / .83 (fp4).)
gain = lambda metric, q: recovery_table(results, metric).loc[list(CONSTRAINED), q] - recovery_table(results, metric).loc[list(CONSTRAINED), FULL]  # noqa: E731
# 1. 4-bit RTN and FP4 bring the forget text back: VerbMem rises by >= 0.15 for every constrained method.
for q in ("rtn4", "fp4"):
    assert (gain("verbmem_forget", q) >= 0.15).all(), (q, gain("verbmem_forget", q))
# 2. ... and the forget knowledge: KnowMem forget (ROUGE-L) rises by >= 0.1 on average over the four.
    assert gain("knowmem_forget_rouge", q).mean() >= 0.1, (q, gain("knowmem_forget_rouge", q))
claims = pd.concat([
    # 3. 8-bit (RTN and LLM.int8) keeps the forgetting: KnowMem forget and VerbMem within 0.1 of full precision.
    unchanged_claims(results, CONSTRAINED, EIGHT_BIT, tolerance=0.1, metric="knowmem_forget_rouge"),
    unchanged_claims(results, CONSTRAINED, EIGHT_BIT, tolerance=0.1, metric="verbmem_forget"),
    # 4. The fp32-storage control keeps its forgetting after 4-bit RTN and FP4: within 0.1 of its full precision.
    unchanged_claims(control, [FP32_NAME], ("rtn4", "fp4"), tolerance=0.1),
], ignore_index=True)  # fmt: skip
display(claims.round(3))
assert claims["holds"].all(), claims[~claims["holds"]]
# 5. The fp32 control really forgot like the bf16 run: its full-precision forget accuracy within 0.15 of the
#    bf16 run's (training log), and below the target's by at least 0.2 (otherwise claim 4 would be empty).
assert abs(final_metric(match.result) - goal) <= 0.15, match.table
assert final_metric(match.result) <= recovery_table(results, "knowmem_forget_acc").loc["target", FULL] - 0.2
# 6. >= 95% of the 4-bit codes (RTN and FP4) are identical between the bf16 target and each bf16-unlearned
#    constrained model, over all quantized weights (FP4: its ±1/192 levels counted as 0, as its zero bin).
same_codes = 1 - fates.set_index(["method", "quantizer"])["frac_codes_changed_merged"].unstack().loc[list(CONSTRAINED), ["rtn4", "fp4"]]
assert (same_codes >= 0.95).all().all(), same_codes
# 7. The answer-word loss (section 5) comes back at RTN and FP4 4-bit to >= 0.9 x the target's KnowMem forget,
#    and changes at most a tenth as many RTN 4-bit codes as the text loss (seed 0: 0.01% vs 0.54%).
if RUN_ANSWER_LOSS:
    assert recovered_claims(loss_rows, [ANSWER_NAME], ("rtn4", "fp4"), share=0.9, metric="knowmem_forget_rouge")["holds"].all(), loss_rows
    codes = both_losses.set_index(["method", "quantizer"])["frac_codes_changed_merged"]
    assert codes[(ANSWER_NAME, "rtn4")] <= 0.1 * codes[(f"{CONTROL_METHOD}, loss on the text", "rtn4")], codes
print("All claims hold.")
