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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/quantized-forgetting/quantized-forgetting/blob/main/notebooks/06_at_scale.ipynb)
#
# # 06 — At scale: the same pipeline on hub models, MUSE data and GPUs
#
# Notebooks 02–05 ran on a 3.3M-parameter Llama that we trained ourselves. This notebook runs the *same
# code* — the same loaders, unlearning loop, quantizers and metrics — on pretrained models from the
# Hugging Face hub and on the real MUSE data, on a GPU. On the offline default it runs the tiny preset end
# to end, so the whole path is exercised in every test run.
#
# **Learning objectives**
# - Choose a preset (`UQ_MODEL`, `UQ_DATA`) and read what it needs before you start it.
# - Run the whole study headless — target → six methods → every quantizer → metrics — with
#   `python -m utils.study`, and resume it after an interruption.
# - Know what changes on a GPU: bf16 support (the mechanism depends on bf16 storage), bitsandbytes' CUDA
#   kernels, several GPUs through `accelerate`.
# - Read the recovery table of a real run next to the paper's headline.
#
# **You need:** notebooks 03 and 04 (what the methods and the recovery table are).

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
# Settings: set these (or the UQ_* environment variables); the rest runs.
import os

SEED = os.environ.get("UQ_SEED", "0")  # validated by utils.config (a non-negative integer)
MODEL = os.environ.get("UQ_MODEL", "tiny")  # 'tiny', a preset below, a local model folder or a hub id
DATA = os.environ.get("UQ_DATA", "mini")  # 'mini' (offline), 'news' or 'books' (MUSE presets)
DEVICE = os.environ.get("UQ_DEVICE", "auto")
METHODS = os.environ.get("UQ_METHODS", "GA,GA_GDR,GA_KLR,NPO,NPO_GDR,NPO_KLR")
QUANTIZERS = os.environ.get("UQ_QUANTIZERS", "rtn8,int8,rtn4,fp4,nf4")
UNLEARN_STEPS = int(os.environ["UQ_STEPS"]) if os.environ.get("UQ_STEPS") else None  # None: the recipe's 900
FINETUNE_STEPS = int(os.environ.get("UQ_FINETUNE_STEPS", 300))  # pretrained models: fine-tune on MUSE-mini first
OUT = os.environ.get("UQ_OUT", "")  # where the runner writes; default ../build/study-<model>

# %%
# %config InlineBackend.figure_formats = ['png']
from pathlib import Path

import pandas as pd
import torch

from utils.config import RunConfig, repo_root
from utils.models import PRESETS
from utils.repro import pick_device, seed_everything, supports_bf16
from utils.study import StudySettings, check_fits, kept_summary, recovery_table, run_study

cfg = RunConfig(seed=SEED, model=MODEL, data=DATA, device=DEVICE)
seed_everything(cfg.seed)
device = pick_device(cfg.device)
out = Path(OUT) if OUT else repo_root() / "build" / f"study-{Path(cfg.model).name}-seed{cfg.seed}"
print(f"seed={cfg.seed}  model={cfg.model}  data={cfg.data}  device={device}  output={out}")

# %% [markdown]
# ## 1. Presets: what each one needs
#
# `UQ_MODEL` takes a preset name, a local folder written by `save_pretrained`, or a hub id. Pretrained
# base models (SmolLM2, Qwen2.5) do not know MUSE-mini's fictional people, so the runner first
# **fine-tunes** them on forget + retain into a target (and on retain alone into the retrain oracle),
# exactly as notebook 02 trained the tiny model. MUSE's own targets (Llama-2-7B fine-tuned on BBC News or
# Harry Potter) come with their retrained models and need no fine-tuning.

# %%
presets = pd.DataFrame(
    [{"preset": p.name, "hub id": p.hub_id or "(trained here)", "data": p.data,
      "GPU GiB to evaluate": p.gpu_gb_eval, "GPU GiB to unlearn": p.gpu_gb_unlearn,
      "KnowMem shots": p.knowmem_shots, "description": p.description} for p in PRESETS.values()]
).set_index("preset")
presets

# %% [markdown]
# Before anything is loaded, the runner compares the preset's estimate with the device and stops with a
# clear message if the run cannot fit — rather than failing an hour later with an out-of-memory error.

# %%
print(check_fits(cfg.model, device))
if device.type == "cuda":
    print(f"{torch.cuda.get_device_name(device)}: bf16 supported = {supports_bf16(device)}")

# %% [markdown]
# **bf16 matters here.** Notebook 04 showed that the recovery needs the weights *stored* in bf16 with a
# small learning rate: an update smaller than half a bf16 step is lost, so only small weights — inside
# the 4-bit zero bin — move. On an A100/H100/L4 the runner trains in bf16, as the paper's Trainer did. A
# free Colab **T4 has no native bf16**: PyTorch emulates it (correct, slower), so the stored weights and
# the mechanism are the same, only the speed differs. Training in fp16 would *not* be the same regime
# (fp16 has 3 more mantissa bits, so smaller weights' updates survive).
#
# ## 2. Run the study
#
# One call runs every stage. Each finished stage is written to `<out>/stages/` under a temporary name and
# then renamed, and unlearned models are cached by recipe, so rerunning this cell after an interruption
# skips what is done. The same runs from a shell:
#
# ```bash
# python -m utils.study --model smollm2-135m --device cuda --out runs/smollm2
# accelerate launch --config_file configs/accelerate_fsdp.yaml -m utils.study --model muse-news-7b --data news --out runs/news
# ```

# %%
settings = StudySettings(
    model=cfg.model, data=cfg.data, seed=cfg.seed, device=cfg.device, out=out,
    methods=tuple(METHODS.split(",")), quantizers=tuple(QUANTIZERS.split(",")),
    steps=UNLEARN_STEPS, finetune_steps=FINETUNE_STEPS, cache_dir=cfg.cache_dir,
)
results = run_study(settings)
results.round(3).head(8)

# %% [markdown]
# ## 3. The recovery table
#
# Rows are the target and the unlearning methods, columns the precisions; the cells are KnowMem accuracy
# on the forget questions (higher = more knowledge left) and on the retain questions (utility).

# %%
forget_table = recovery_table(results, "knowmem_forget_acc")
retain_table = recovery_table(results, "knowmem_retain_acc")
pd.concat({"forget VerbMem": recovery_table(results, "verbmem_forget"), "forget KnowMem acc": forget_table,
           "retain KnowMem acc (utility)": retain_table}, axis=1).round(2)

# %% [markdown]
# The paper's headline, next to this run: the share of the target's forget knowledge that the
# utility-constrained methods keep, at full precision and after 4-bit quantization (the paper:
# 21% → 83%, averaged over GA_GDR, GA_KLR, NPO_GDR, NPO_KLR on MUSE with Llama-2-7B).

# %%
four_bit = "rtn4" if "rtn4" in set(results["precision"]) else [p for p in results["precision"].unique() if "4" in p][0]
summary = kept_summary(results, four_bit=four_bit)
summary.style.format("{:.0%}")

# %%
from IPython.display import Image, display

display(Image(filename=str(out / "recovery.png")))

# %% [markdown]
# ## 4. Weight deltas of a real run
#
# The researcher's view of notebook 04, on whatever model this run used: how far each weight moved, in
# units of its 4-bit quantization step (±½ step marked: inside it, rounding undoes the move), and the
# share of 4-bit codes that unlearning left unchanged per layer and module type.

# %%
from utils.models import load_model
from utils.plots.deltas import plot_code_identity_heatmap, plot_delta_in_steps
from utils.quantization import code_identity, delta_in_steps, quantizable_modules
from utils.unlearning import UnlearnRecipe, unlearn_cached_result
from utils.study import build_world

world = build_world(cfg.model, cfg.data, seed=cfg.seed, cache_dir=cfg.cache_dir, device=device, finetune_steps=FINETUNE_STEPS)
method = "NPO_KLR" if "NPO_KLR" in METHODS.split(",") else METHODS.split(",")[-1]
recipe = UnlearnRecipe() if UNLEARN_STEPS is None else UnlearnRecipe(steps=UNLEARN_STEPS)
unlearned = unlearn_cached_result(world, method, recipe, seed=cfg.seed, cache_dir=cfg.cache_dir, progress=False, device=device).model
target_bf16 = world.target.to(torch.bfloat16)
deltas = torch.cat([
    delta_in_steps(dict(quantizable_modules(unlearned))[name].weight.detach().float().cpu(), module.weight.detach().float().cpu(), "rtn4").flatten()
    for name, module in quantizable_modules(target_bf16)
])
fig = plot_delta_in_steps(deltas, title=f"{method} vs target (bf16), RTN 4-bit steps")

# %%
identity = code_identity(target_bf16, unlearned, "rtn4")
fig = plot_code_identity_heatmap(identity)
print(f"4-bit codes identical between target and {method}: {(identity.frac_identical * identity.n_weights).sum() / identity.n_weights.sum():.2%}")

# %% [markdown]
# ## 5. On Colab and on several GPUs
#
# - **Colab:** open any notebook from its badge; the first cell installs this repository and keeps
#   Colab's torch. Set `UQ_MODEL` in the parameters cell (e.g. `smollm2-135m` on a free T4,
#   `qwen2.5-0.5b` on an L4/A100) and run all.
# - **MUSE's 7B targets** need the MUSE data (`UQ_DATA=news` or `books`) and a large GPU (see the
#   table above). Unlearning with AdamW and a frozen reference copy does not fit one 80 GB card for
#   NPO/KLR at full batch: run the runner under `accelerate launch` with the FSDP config shipped in
#   `configs/`; the training loop uses `accelerate` itself, no home-made distribution.
# - **Run times** are written by the runner into its log; this project's CI has no GPU, so GPU timings
#   are not measured here (see the README for what was measured where).
#
# ## Summary
#
# - One parameters cell switches between the offline tiny world and real models; the loaders, the
#   unlearning loop, the quantizers and the metrics are the same code.
# - The runner is headless, resumable and writes tables and figures that you can compare with the paper.
# - Check the preset's memory estimate and the card's bf16 support before you start: the mechanism
#   depends on bf16 weight storage.
#
# ## Exercises
#
# 1. Run the study with `UQ_STEPS=300`. Does the recovery after RTN 4-bit get stronger or weaker? Why?
#    <details><summary>Hint</summary>Fewer steps = a smaller edit; compare it with the 4-bit step.</details>
#    <details><summary>Answer</summary>Weaker forgetting at full precision, and an even more complete
#    recovery at 4 bits: a smaller edit stays further inside the zero bins.</details>
# 2. Interrupt the study cell while it evaluates (Kernel → Interrupt), then run it again. What does it redo?
#    <details><summary>Answer</summary>Only the (model, precision) cells whose stage file was not yet
#    renamed into `stages/`; unlearned models come from the cache.</details>
# 3. On a GPU, run `UQ_MODEL=smollm2-135m`. Is the share of forgotten knowledge kept after 4-bit closer
#    to the paper's 83%?
#    <details><summary>Answer</summary>Measure it: the answer depends on the learning rate relative to
#    the model's weight scale, which is exactly the regime that notebook 04 explains.</details>
#
# ## Questionnaire
#
# 1. Why does the runner fine-tune SmolLM2 before unlearning, but not MUSE's targets?
# 2. Why is fp16 storage not a substitute for bf16 in this experiment?
# 3. What makes a stage "finished" for the runner, and why does it write to a temporary name first?
# 4. What does `check_fits` compare, and why before loading the model?

# %% [markdown]
# ## Check
#
# On the offline default (tiny model, MUSE-mini) the claims of notebooks 03–04 must hold through the
# runner: every utility-constrained method unlearns the forget text at full precision (VerbMem ≤ 0.6 × the
# target's) and it comes back after RTN 4-bit (VerbMem up by ≥ 0.2), and KnowMem forget comes back by
# ≥ 0.1 on average over the four. For every model the table is
# complete (every model × precision) with metrics in range, and every stage is on disk for a resume.

# %%
expected = {(m, p) for m in ["target", *METHODS.split(",")] for p in ["full", *QUANTIZERS.split(",")]}
assert set(zip(results["model"], results["precision"])) == expected, "the results table is incomplete"
assert results["knowmem_forget_acc"].between(0, 1).all() and results["knowmem_retain_acc"].between(0, 1).all()
assert len(list((out / "stages").glob("eval__*.json"))) == len(expected) and not list((out / "stages").glob("*.tmp"))
assert (out / "results.csv").exists() and (out / "recovery.png").exists()
if cfg.offline_default:
    # the same claims as notebook 04's on the same cached models: for each constrained method, VerbMem is
    # unlearned in full precision (<= 0.6 x the target's) and rises by >= 0.2 after RTN 4-bit; KnowMem
    # forget rises after RTN 4-bit by >= 0.1 on average over the constrained methods
    verb, ft, kept = recovery_table(results, "verbmem_forget"), forget_table, kept_summary(results, four_bit="rtn4")
    constrained = [m for m in ("GA_GDR", "GA_KLR", "NPO_GDR", "NPO_KLR") if m in ft.index]
    for m in constrained:
        assert verb.loc[m, "full"] <= 0.6 * verb.loc["target", "full"], f"{m} did not unlearn the text at full precision"
        assert verb.loc[m, "rtn4"] >= verb.loc[m, "full"] + 0.2, f"{m}: the text did not come back after RTN 4-bit"
    if constrained:
        assert (ft.loc[constrained, "rtn4"] - ft.loc[constrained, "full"]).mean() >= 0.1, "KnowMem did not come back after RTN 4-bit"
    print(kept.round(2))
print("checks passed")
