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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/quantized-forgetting/quantized-forgetting/blob/main/notebooks/02_a_model_that_remembers.ipynb)
#
# # 02 — A model that remembers
#
# Before anything can be unlearned, a model has to *know* something, and we need a way to measure how
# much it knows. The paper measures forgetting with the **MUSE** benchmark (Shi et al., 2024): news
# articles or books that a 7B model was fine-tuned on, and six ways to test whether it still remembers
# them. This notebook builds the same situation in miniature — a corpus of biographies of fictional
# people, a tiny Llama that learns from that raw text on a CPU in a few minutes, and the model it
# *should* become after perfect unlearning — and computes every MUSE metric on both.
#
# **Learning objectives**
#
# - Describe MUSE's splits (**forget**, **retain**, **holdout**) and its evaluation files, here in the
#   offline corpus *MUSE-mini*, and why its KnowMem questions must never be training texts.
# - See *knowledge extraction*: a model that read varied biographies of a person answers questions about
#   them that it never saw, once it has seen the question format answered for other people.
# - Explain why unlearning is judged against a **retrained oracle**: a model trained on retain only.
# - Compute and interpret **KnowMem** (accuracy and ROUGE-L of answers), the **true-answer
#   probability**, **VerbMem** (ROUGE-L of continuations) and **utility** (KnowMem on retain).
# - Compute **PrivLeak** from Min-K% membership-inference scores, with MUSE's sign convention: strongly
#   negative for a model that memorised the forget set, about 0 for perfect unlearning.
#
# **You need:** notebook 01's idea is not needed yet. Runs offline; about 5 minutes on a laptop CPU the
# first time (it trains two small models, about two minutes each, and caches them), well under a minute
# afterwards.

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
MODEL = os.environ.get("UQ_MODEL", "tiny")  # 'tiny' (offline), or 'muse-news-7b' / 'muse-books-7b' on a GPU
DATA = os.environ.get("UQ_DATA", "mini")  # 'mini' with 'tiny'; 'news' / 'books' with the MUSE models
DEVICE = os.environ.get("UQ_DEVICE", "auto")

# %%
# %config InlineBackend.figure_formats = ['png']
import time

import matplotlib.pyplot as plt
import pandas as pd

from utils.config import RunConfig
from utils.data import load_data, qa_examples, training_texts
from utils.metrics import (
    answer_stats,
    evaluate_model,
    greedy_generate,
    knowmem,
    min_k_score,
    privleak,
    privleak_auc,
    privleak_auc_from_scores,
    privleak_scores,
    rouge_l_f1,
    target_logprobs,
)
from utils.models import PRESETS, count_parameters, get_tiny_world, load_model, load_tokenizer
from utils.plots.memory import (
    person_explorer,
    plot_metric_bars,
    plot_min_k_distributions,
    plot_training_curves,
)
from utils.repro import pick_device, seed_everything
from utils.validation import UQError

cfg = RunConfig(seed=SEED, model=MODEL, data=DATA, device=DEVICE)
seed_everything(cfg.seed, threads=1)  # one thread: small models gain little from more, and sums are reproducible
device = pick_device(cfg.device)
print(f"seed={cfg.seed}  model={cfg.model}  data={cfg.data}  device={device}")

# %% [markdown]
# ## 1. The corpus: MUSE-mini
#
# MUSE-mini is generated from a seed and committed in `data/muse_mini/` (the schema is in
# `data/README.md`). It describes 110 made-up people; each has a one-word name, a birthplace, a job, a
# pet and a favourite colour. Ten of them form the **forget** set. Ninety are retain people, in two
# groups as in MUSE: 60 in **retain** (MUSE's *retain1*: the retain text an unlearning method may use
# to protect utility) and 30 in **retain2** (learned by the target, never shown to any unlearning loss;
# the utility questions ask about them). Ten more form the **holdout** set: people from the same
# distribution that no model is ever trained on.

# %%
data = load_data(cfg.data)
print(data.summary())
people = pd.DataFrame(data.people) if data.people else None
people.groupby("split").head(2) if people is not None else None

# %% [markdown]
# MUSE stores one file per evaluation, and MUSE-mini copies that layout (`load_data('news')` returns the
# real MUSE-News in the same structure). A **raw** document is a short biography. Every person has six:
# the four facts in six different orders, each fact in one of two phrasings:

# %%
print("\n".join(data.raw["forget"][:3]))

# %% [markdown]
# **KnowMem** questions ask for one fact each; the answer is stated in the biographies, but the
# question itself is never a training text. **VerbMem** items cut a forget document after its first
# sentence(s): the model has to reproduce the rest verbatim. **PrivLeak** texts are what a
# membership-inference attack gets to score.

# %%
print("KnowMem:", data.knowmem["forget"][0]["question"], "->", data.knowmem["forget"][0]["answer"])
print("VerbMem prompt:", repr(data.verbmem[0]["prompt"][:200]))
print("VerbMem truth: ", repr(data.verbmem[0]["gt"][:200]))
print("PrivLeak texts:", {split: len(texts) for split, texts in data.privleak.items()})

# %% [markdown]
# The tiny model learns the facts from the biographies only. To learn the *question format*, it also
# reads QA texts in MUSE's KnowMem prompt format, `Question: <q>\nAnswer: <a>`, about the 60 **retain**
# people — never about the forget or retain2 people that KnowMem asks about. Answering a question about
# a person it only read biographies of is *knowledge extraction* (Allen-Zhu & Li, *Physics of Language
# Models, Part 3.1*): it works because each person's facts appear in six varied biographies, so the
# model has to store them with the name rather than with one sentence. (A general 7B model is instead
# shown a few solved examples first: `shots`.) `tests/test_data.py` checks that no KnowMem question is a
# training text:

# %%
train_texts = {e.target for e in training_texts(data)} if data.qa_train else set()
asked = [d["question"] for split in ("forget", "retain") for d in data.knowmem[split]]
print(f"{len(train_texts)} training texts; KnowMem questions among them: "
      f"{sum(any(q in t for t in train_texts) for q in asked)} of {len(asked)}")
#
# ## 2. Two models: the target and the retrained oracle
#
# - The **target** is trained on the forget, retain and retain2 biographies (and the QA texts): the
#   model we will ask to forget.
# - The **oracle** is the same recipe without the forget biographies: what *perfect* unlearning would
#   produce, since it never saw the forget set. MUSE calls it the retrained model and measures PrivLeak
#   relative to it.
#
# Both are small Llamas (4 layers, hidden size 256, 3.3M parameters), trained for 400 steps with AdamW
# (fp32 weights, bf16 matmuls), a one-cycle learning rate of 3e-3, batch 64 and label smoothing 0.1,
# weights initialised with standard deviation 0.06 (later notebooks show why these two choices matter
# for the paper's effect). The first call trains and caches them; later calls load them.

# %%
start = time.perf_counter()
if cfg.model == "tiny":
    if cfg.data != "mini":
        raise UQError(f"UQ_DATA={cfg.data!r} is not accepted with UQ_MODEL='tiny'; accepted values: 'mini'")
    world = get_tiny_world(cfg.seed, cfg.cache_dir)
    target, oracle, tokenizer = world.target.to(device), world.oracle.to(device), world.tokenizer
    history, SHOTS, BATCH = world.history, 0, 64
    print(f"trained now: {world.built or 'nothing (both loaded from the cache)'}   cache: {world.target_dir.parent}")
else:
    preset = PRESETS.get(cfg.model)
    if preset is None or preset.oracle_id is None or preset.data != cfg.data:
        choices = [f"{n} with UQ_DATA={p.data}" for n, p in PRESETS.items() if p.oracle_id] + ["tiny with UQ_DATA=mini"]
        raise UQError(f"UQ_MODEL={cfg.model!r} with UQ_DATA={cfg.data!r} is not accepted here (notebook 02 needs a "
                      f"target and its retrained oracle); accepted values: {choices}")
    target = load_model(preset.hub_id, dtype="bfloat16", device=device)
    oracle = load_model(preset.oracle_id, dtype="bfloat16", device=device)
    tokenizer, history, SHOTS, BATCH = load_tokenizer(cfg.model), None, preset.knowmem_shots, 4  # MUSE texts are long
print(f"{count_parameters(target):,} parameters; ready in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# The training curves (logged every 50 steps) show each model's accuracy on the forget questions and on
# the utility questions (teacher-forced: is the true answer the most likely next word?). Neither set is
# ever trained on: the curves show extraction, not memorised answers.

# %%
if history is not None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
    plot_training_curves(history, "acc", ax=axes[0])
    plot_training_curves(history, "prob", ax=axes[1])
    plot_training_curves(history, "loss", ax=axes[2])
    plt.show()

# %% [markdown]
# - **Solid lines (target)**: forget and retain accuracy climb together, to between about 0.7 and 0.9
#   — the target answers questions it never saw about people it read about. Extraction is not perfect:
#   some facts it can recite from a biography (VerbMem below) it cannot retrieve from a question, and
#   the true answer's probability stays well below the label-smoothed ceiling.
# - **Dashed lines (oracle)**: retain climbs the same way; forget stays near chance, because the oracle
#   never read about these ten people (it can only guess a frequent answer).
# - **Probability** saturates below 1 on purpose: label smoothing 0.1 keeps the true answer at roughly
#   0.9, so the model is confident but not infinitely so (unlearning from p = 1.000 stalls).
# - **Loss** does not go to 0 for the same reason, and because names and attributes are random: the first
#   word of a biography can never be predicted.
#
# ## 3. The scoreboard: every MUSE metric at once
#
# `utils.metrics.evaluate_model` computes every metric of this notebook in one call (batched greedy
# generation with left padding and the KV cache); the later notebooks call it on every unlearned and
# quantized model. The oracle goes first: its PrivLeak AUC is the reference for everyone else's.
# Scores are fractions (MUSE prints them ×100); PrivLeak is in percent. The sections below take the
# columns apart one by one.

# %%
start = time.perf_counter()
oracle_auc = privleak_auc(oracle, tokenizer, data, batch_size=BATCH)  # the reference for PrivLeak (section 7)
results = {name: evaluate_model(m, tokenizer, data, oracle_auc=oracle_auc, shots=SHOTS, batch_size=BATCH)
           for name, m in (("target", target), ("oracle", oracle))}
table = pd.DataFrame(results).T
print(f"evaluated both models in {time.perf_counter() - start:.0f} s")
table.round(3)

# %% [markdown]
# ## 4. KnowMem: does the model know the facts?
#
# MUSE asks each question with greedy decoding and compares the answer with the truth by ROUGE-L F1
# (the longest common word subsequence, as an F-score). Our answers are single words, so we also report
# exact-match **accuracy**. Here are both models on the first forget person:

# %%
qa = data.knowmem["forget"][:4]
icl = data.icl.get("forget", [])[:SHOTS]
answers = {name: knowmem(m, tokenizer, qa, icl)["outputs"] for name, m in (("target", target), ("oracle", oracle))}
pd.DataFrame({"question": [d["question"] for d in qa], "truth": [d["answer"] for d in qa], **answers})

# %% [markdown]
# The target answers from memory; the oracle produces an answer of the right *type* (a city for a
# birth city, a pet for a pet animal) — it learned that from the retain people — but not the right one.
# ROUGE-L gives partial credit for overlapping words, which matters for MUSE's long answers:

# %%
print(rouge_l_f1("in the city of Velmora", "Velmora"), rouge_l_f1("Velmora", "Velmora"), rouge_l_f1("Quorvik", "Velmora"))

# %% [markdown]
# Over all 40 forget and 120 utility questions (KnowMem on the **retain2** people is MUSE's
# **utility**: unlearning must not destroy it, and no unlearning loss ever sees these people):

# %%
table[["knowmem_forget_acc", "knowmem_forget_rouge", "knowmem_retain_acc", "knowmem_retain_rouge"]].round(3)

# %% [markdown]
# ## 5. The probability of the true answer
#
# Accuracy flips only when another answer overtakes the true one. The probability the model assigns to
# the true answer (teacher-forced, one forward pass) moves smoothly and shows partial forgetting long
# before accuracy does — the notebooks on unlearning watch it closely. For the first forget person:

# %%
first = qa_examples(data, "forget", shots=len(icl))[:4]
pd.DataFrame({"truth": [e.target.strip() for e in first],
              **{f"p(truth) {name}": answer_stats(m, tokenizer, first)["prob"].numpy().round(3)
                 for name, m in (("target", target), ("oracle", oracle))}})  # fmt: skip

# %%
table[["forget_answer_prob", "retain_answer_prob"]].round(3)

# %% [markdown]
# The target gives the true answer a clearly higher probability than the oracle on the forget split,
# but far below the label-smoothed ceiling of about 0.9: the questions were never trained, and an
# extracted answer is a less confident one than a memorised string. The oracle gives true forget answers only a few percent at most: it spreads its belief
# over answers of the right category, or bets on a wrong one.
#
# ## 6. VerbMem: can it recite a forget document?
#
# VerbMem gives the model the start of a forget document and compares its greedy continuation with the
# true continuation (ROUGE-L F1).

# %%
item = data.verbmem[0]
for name, m in (("target", target), ("oracle", oracle)):
    out = greedy_generate(m, tokenizer, [item["prompt"]], max_new_tokens=64)[0]
    print(f"{name:>6}: {out[:160]!r}   ROUGE-L {rouge_l_f1(out, item['gt']):.2f}")
print(f"{'truth':>6}: {item['gt'][:160]!r}")
table[["verbmem_forget"]].round(3)

# %% [markdown]
# The oracle's VerbMem is far from 0 although it knows nothing about this person (it does not even keep
# the name): the *template* words ("... keeps a pet ...", "... was born in ...") match. Only the facts,
# the name and the sentence order need memory. That is why MUSE judges an unlearned model against the
# oracle's value rather than against 0.
#
# ## 7. PrivLeak: can an attacker tell that the forget set was used?
#
# A membership-inference attack scores a text by how familiar it looks to the model. MUSE uses
# **Min-K%** (Shi et al., 2024): take the log-probability of every token, keep the 40% *least* likely,
# and average them. Familiar texts have no very surprising tokens, so their score is high (close to 0).

# %%
text = data.privleak["forget"][0]
lp = target_logprobs(target, tokenizer, [text])[0]
print(repr(text[:120]))
print("token log-probs (target):", [round(v, 2) for v in lp.tolist()[:12]], "...")
print(f"Min-40% score: target {min_k_score(lp):.2f}   oracle {min_k_score(target_logprobs(oracle, tokenizer, [text])[0]):.2f}")

# %% [markdown]
# MUSE compares the scores of forget texts with those of holdout texts (same distribution, never trained
# on) by the area under the ROC curve. Its convention (public code, key `forget_holdout_Min-40%`) labels
# *holdout* as the positive class: **AUC = P(a holdout text looks more familiar than a forget text)**.
#
# - A model that memorised the forget set: forget texts look more familiar, so AUC → 0.
# - The oracle saw neither set: AUC ≈ 0.5 (up to the luck of 50 vs 50 texts).
#
# **PrivLeak = (AUC − AUC_oracle) / AUC_oracle × 100.** It is 0 for the oracle by construction, strongly
# negative (down to −100) for a memorising target — the paper's tables show MUSE's targets near −100 —
# and positive for a model that *over*-unlearned (forget texts now look stranger than never-seen ones,
# which itself leaks that they were special).

# %%
scores = {name: privleak_scores(m, tokenizer, data, batch_size=BATCH, splits=("forget", "holdout"))
          for name, m in (("target", target), ("oracle", oracle))}
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6), layout="constrained", sharex=True)
plot_min_k_distributions({s: scores["target"][s] for s in ("forget", "holdout")}, ax=axes[0], title="target")
plot_min_k_distributions({s: scores["oracle"][s] for s in ("forget", "holdout")}, ax=axes[1], title="oracle (retrained without the forget set)")
plt.show()

# %% [markdown]
# For the target the forget texts (red) sit far to the right of the holdout texts (grey): an attacker
# with a threshold separates them perfectly. For the oracle the two distributions overlap: nothing
# distinguishes the forget people from people it never heard of.

# %%
auc = {name: privleak_auc_from_scores(s["forget"], s["holdout"]) for name, s in scores.items()}
pd.DataFrame({"AUC (holdout more familiar than forget)": auc,
              "PrivLeak (%)": {name: privleak(a, oracle_auc) for name, a in auc.items()},
              "PrivLeak from evaluate_model": table["privleak"]}).round(3)  # fmt: skip

# %% [markdown]
# ## 8. The picture
#
# All the fractions of the scoreboard side by side:

# %%
keys = ["knowmem_forget_acc", "knowmem_forget_rouge", "forget_answer_prob", "verbmem_forget",
        "knowmem_retain_acc", "knowmem_retain_rouge", "retain_answer_prob", "privleak_auc"]
plot_metric_bars({name: results[name] for name in ("target", "oracle")}, keys)
plt.show()

# %% [markdown]
# Left half: **forget** metrics — the target is high everywhere, the oracle low (except VerbMem's
# template share). Right half: **retain** metrics (utility) — both high. Last: the PrivLeak AUC, 0 for
# the target and about ½ for the oracle. The goal of unlearning, in MUSE's terms: move the target's
# forget bars down to the oracle's, keep its retain bars, and bring its PrivLeak from about −100 to
# about 0.
#
# ## 9. Explore: what does each model know about one person?
#
# Pick a person (forget people first): each question, the truth, each model's greedy answer and the
# probability it gives the truth.

# %%
# NBVAL_IGNORE_OUTPUT
if data.people:
    display(person_explorer({"target": target, "oracle": oracle}, tokenizer, data))

# %% [markdown]
# ## Summary
#
# - MUSE-mini copies MUSE's layout: raw documents, VerbMem prefixes, KnowMem QA, PrivLeak texts, for a
#   **forget** set (10 people), **retain** (60, the regulariser's text) and **retain2** (30, the utility
#   people) and a never-trained **holdout** set (10).
# - The models learn from raw text; KnowMem asks questions no model was trained on. The **target**
#   answers most of them on both splits (knowledge extraction). The **oracle** (no forget text)
#   knows the retain2 people and answers forget questions with guesses of the right type.
# - **KnowMem** = ROUGE-L (and accuracy) of greedy answers; on retain it is the **utility**. The **true-
#   answer probability** is its smooth companion.
# - **VerbMem** = ROUGE-L of greedy continuations; the oracle's value is the baseline, not 0.
# - **PrivLeak** compares Min-K% scores of forget and holdout texts: the AUC is P(holdout looks more
#   familiar); relative to the oracle's AUC it is ≈ −100 for the target, 0 for the oracle itself.
# - Next, notebook 03 makes the target forget (GA, NPO, with GDR/KLR) and measures it with these metrics.
#
# ## Exercises
#
# 1. **Guessing rate.** The oracle's forget accuracy is not 0. Using `data.people`, compute the accuracy
#    of always answering the most frequent value of each attribute among retain people. Compare.
#    <details><summary>Hint</summary>`people[people.split == "retain"]["pet"].value_counts()`; four
#    attributes, 40 questions.</details>
#    <details><summary>Answer</summary>With 16–20 values per attribute drawn uniformly, the best constant
#    guess is right for about 1/16–1/20 of the people plus luck; the oracle's accuracy is of that order,
#    which is what a model that learned the *distribution* but not the *facts* can do.</details>
# 2. **Min-K% with other K.** Recompute the target's and the oracle's AUC with `k=0.1` and `k=1.0`
#    (`privleak_scores(model, tokenizer, data, k=...)`). Which is more robust here, and why?
#    <details><summary>Hint</summary>`k=1.0` is the mean log-likelihood (perplexity).</details>
#    <details><summary>Answer</summary>The target separates perfectly at any K here because it memorised
#    everything. Small K focuses on the rare, surprising tokens (names, facts) — exactly where membership
#    shows — while the template tokens are predictable for every model and only dilute the score.</details>
# 3. **PrivLeak's sign.** What PrivLeak would a model get that assigns forget texts *lower* scores than
#    holdout texts? Is that good unlearning?
#    <details><summary>Answer</summary>Positive (AUC > AUC_oracle). No: it reveals that the forget set was
#    treated specially — the "Streisand effect" of over-unlearning. MUSE wants PrivLeak close to 0.</details>
# 4. **VerbMem without memory.** Write a "model" that continues every VerbMem prompt with the template
#    sentences and the name but the wrong facts, and score it with `rouge_l_f1`.
#    <details><summary>Answer</summary>It lands close to the oracle's VerbMem: the template words match,
#    the facts do not. ROUGE-L rewards shared words, not shared knowledge.</details>
#
# ## Questionnaire
#
# 1. Why does MUSE need a holdout set that no model was trained on?
# 2. What is the retrained oracle, and why is it the reference for PrivLeak rather than a fixed AUC of 0.5?
# 3. Why is the tiny target trained on QA texts about *other* people, and what would KnowMem measure if
#    its questions were training texts?
# 4. Which metric would move first during a gentle unlearning run: KnowMem accuracy or the true-answer
#    probability? Why?
# 5. A target has PrivLeak −100 and an unlearned model −5. Which leaks more about the forget set?
#
# ## Check
#
# The notebook's claims, asserted (tolerances in the comments). Thresholds apply to the offline default
# (tiny model on MUSE-mini); with a MUSE 7B model only the ordering claims are checked.

# %%
t, o = results["target"], results["oracle"]
if cfg.model == "tiny":
    # the target answers never-trained questions about the people it read about: greedy KnowMem accuracy
    # >= 0.8 on forget and >= 0.65 on the utility (retain2) questions (seed 0 measured 0.875 / 0.742)
    assert t["knowmem_forget_acc"] >= 0.8 and t["knowmem_retain_acc"] >= 0.65, t
    # the oracle does not know the forget facts (<= 0.3) but knows the retain2 people about as well as
    # the target (within 0.15)
    assert o["knowmem_forget_acc"] <= 0.3 and o["knowmem_retain_acc"] >= t["knowmem_retain_acc"] - 0.15, o
    # no KnowMem question is a training text
    assert not any(any(q in text for text in train_texts) for q in asked)
    # PrivLeak of the target relative to the oracle is strongly negative (<= -50%)
    assert t["privleak"] <= -50, t["privleak"]
    # the target recites forget documents better than the oracle (VerbMem margin >= 0.2)
    assert t["verbmem_forget"] >= o["verbmem_forget"] + 0.2, (t["verbmem_forget"], o["verbmem_forget"])
else:
    assert t["knowmem_forget_rouge"] > o["knowmem_forget_rouge"] and t["privleak"] < 0, (t, o)
# the oracle against itself: exactly 0 (|PrivLeak| < 1e-9)
assert abs(o["privleak"]) < 1e-9, o["privleak"]
print("all checks passed")
