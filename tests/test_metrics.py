"""Metrics: known answers for the pure functions, batching invariances for the model passes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from utils.data import load_muse_mini, qa_examples
from utils.metrics import (
    answer_stats,
    evaluate_model,
    exact_match,
    greedy_generate,
    knowmem,
    min_k_score,
    normalize_answer,
    privleak,
    privleak_auc_from_scores,
    privleak_scores,
    roc_auc,
    rouge_l_f1,
    target_logprobs,
    truncate_answer,
)
from utils.models import build_word_tokenizer, corpus_texts


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


# --- pure functions with known answers ----------------------------------------------------------------
def test_rouge_known_answers():
    assert rouge_l_f1("the cat sat", "the cat sat") == 1.0
    assert rouge_l_f1("dog runs far", "the cat sat") == 0.0
    assert rouge_l_f1("", "the cat sat") == 0.0
    # LCS 'a c' of lengths 3 and 2 -> P = 2/3, R = 1 -> F1 = 0.8
    assert rouge_l_f1("a b c", "a c") == pytest.approx(0.8)


def test_answer_normalisation():
    assert normalize_answer("  Velmora. ") == "velmora"
    assert exact_match("Velmora.", "velmora") and not exact_match("Velmora Question", "Velmora")
    assert truncate_answer("Paris\n\nQuestion: who?") == "Paris"
    assert truncate_answer("Paris\nQuestion: who?") == "Paris"


def test_min_k_score():
    logp = [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert min_k_score(logp, 0.4) == pytest.approx(-4.5)  # the lowest 2 of 5
    assert min_k_score(logp, 0.1) == pytest.approx(-5.0)  # at least one token
    assert min_k_score(logp, 1.0) == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="k=0"):
        min_k_score(logp, 0)


def test_auc_known_answers():
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert roc_auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5
    assert roc_auc([2, 0], [1]) == 0.5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=12), st.lists(st.integers(-5, 5), min_size=1, max_size=12))
def test_auc_matches_brute_force_and_is_antisymmetric(pos, neg):
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert roc_auc(pos, neg) == pytest.approx(brute)
    assert roc_auc(pos, neg) + roc_auc(neg, pos) == pytest.approx(1.0)


def test_privleak_sign_convention():
    # a target that memorised the forget set scores forget texts higher than holdout texts ...
    forget, holdout = [-0.1, -0.2, -0.3], [-3.0, -4.0, -5.0]
    auc = privleak_auc_from_scores(forget, holdout)
    assert auc == 0.0
    # ... and MUSE reports it strongly negative relative to an oracle at chance
    assert privleak(auc, 0.5) == pytest.approx(-100.0)
    assert privleak(0.5, 0.5) == 0.0  # the oracle against itself
    assert privleak(0.75, 0.5) == pytest.approx(50.0)  # over-unlearning is positive
    with pytest.raises(ValueError, match="oracle_auc=0"):
        privleak(0.3, 0.0)


# --- model passes -----------------------------------------------------------------------------------
def test_target_logprobs_match_a_manual_pass_and_ignore_padding(model, tokenizer, mini):
    texts = mini.privleak["forget"][:3]
    batched = target_logprobs(model, tokenizer, texts, batch_size=3)
    for text, lp in zip(texts, batched):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        manual = logits.gather(1, ids[0, 1:, None])[:, 0]
        assert torch.allclose(lp, manual, atol=1e-5)
        assert len(lp) == ids.shape[1] - 1


def test_answer_stats_are_consistent(model, tokenizer, mini):
    examples = qa_examples(mini, "forget")[:8]
    stats = answer_stats(model, tokenizer, examples, batch_size=3)
    assert torch.allclose(stats["prob"], stats["logprob"].exp())
    lps = target_logprobs(model, tokenizer, examples)
    assert torch.allclose(stats["logprob"], torch.stack([lp.mean() for lp in lps]), atol=1e-5)
    for ex, ok in zip(examples, stats["correct"]):
        ids = tokenizer(ex.prompt + ex.target, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            pred = model(ids).logits[0, -2].argmax()
        assert bool(ok) == bool(pred == ids[0, -1])


def test_batched_generation_equals_one_by_one(model, tokenizer, mini):
    prompts = [mini.verbmem[0]["prompt"], qa_examples(mini, "forget")[0].prompt, mini.verbmem[1]["prompt"]]
    batched = greedy_generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    single = [greedy_generate(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert tokenizer.padding_side == "right", "generation must restore the tokenizer's padding side"


def test_evaluate_model_keys_and_ranges(model, tokenizer, mini):
    out = evaluate_model(model, tokenizer, mini, oracle_auc=0.5, batch_size=64, verbmem_max_new_tokens=8,
                         knowmem_max_new_tokens=4)
    expected = {"knowmem_forget_acc", "knowmem_forget_rouge", "knowmem_retain_acc", "knowmem_retain_rouge",
                "forget_answer_prob", "retain_answer_prob", "verbmem_forget", "privleak_auc", "privleak"}
    assert set(out) == expected
    for key in expected - {"privleak"}:
        assert 0.0 <= out[key] <= 1.0, key
    assert out["privleak"] == pytest.approx((out["privleak_auc"] - 0.5) / 0.5 * 100)
    assert math.isfinite(out["privleak"])
    assert not model.training


def test_oracle_privleak_against_itself_is_zero(model, tokenizer, mini):
    out = evaluate_model(model, tokenizer, mini, include=("privleak",))
    again = evaluate_model(model, tokenizer, mini, oracle_auc=out["privleak_auc"], include=("privleak",))
    assert again["privleak"] == 0.0


def test_knowmem_counts_a_correct_answer():
    """A stand-in 'model' whose generate() always answers the stored answer gets accuracy 1."""

    class Echo(torch.nn.Module):
        def __init__(self, tok, answers):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.tok, self.answers = tok, answers

        def generate(self, input_ids, **kw):
            rows = [self.tok(" " + a, add_special_tokens=False)["input_ids"] for a in self.answers[: len(input_ids)]]
            width = max(map(len, rows))
            new = torch.tensor([r + [self.tok.pad_token_id] * (width - len(r)) for r in rows])
            return torch.cat([input_ids, new], 1)

    data = load_muse_mini()
    tok = build_word_tokenizer(corpus_texts(data))
    qa = data.knowmem["forget"][:5]
    res = knowmem(Echo(tok, [d["answer"] for d in qa]), tok, qa, batch_size=5)
    assert res["acc"] == 1.0 and res["rouge"] == 1.0
    wrong = knowmem(Echo(tok, ["teal"] * 5), tok, [d for d in qa if d["answer"] != "teal"], batch_size=5)
    assert wrong["acc"] == 0.0


def test_bad_parameters_name_themselves(model, tokenizer):
    with pytest.raises(ValueError, match="batch_size=0"):
        greedy_generate(model, tokenizer, ["a"], batch_size=0)
    with pytest.raises(ValueError, match="include='ppl'"):
        evaluate_model(model, tokenizer, load_muse_mini(), include=("ppl",))
    with pytest.raises(ValueError, match="positive"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="splits='train'"):
        privleak_scores(model, tokenizer, load_muse_mini(), splits=("train",))


def test_privleak_scores_per_split(model, tokenizer, mini):
    scores = privleak_scores(model, tokenizer, mini, splits=("forget",))
    assert list(scores) == ["forget"] and scores["forget"].shape == (len(mini.privleak["forget"]),)
    assert (scores["forget"] <= 0).all()  # means of log-probabilities


# --- the figures and widget of notebook 02 (utils/plots/memory.py) -----------------------------------
def test_memory_plots_draw_what_they_are_given(model, tokenizer, mini):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.plots.memory import plot_metric_bars, plot_min_k_distributions, plot_training_curves

    history = {"target": [{"step": 0, "loss": 5.0, "forget_acc": 0.0, "retain_acc": 0.0},
                          {"step": 10, "loss": 1.0, "forget_acc": 1.0, "retain_acc": 0.9}],
               "oracle": [{"step": 0, "loss": 5.0, "forget_acc": 0.0, "retain_acc": 0.0},
                          {"step": 10, "loss": 1.2, "forget_acc": 0.1, "retain_acc": 0.9}]}
    fig = plot_training_curves(history, "acc")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4 and list(lines[0].get_ydata()) == [0.0, 1.0]
    assert "accuracy" in fig.axes[0].get_ylabel()
    fig = plot_training_curves(history, "loss")
    assert [list(l.get_ydata()) for l in fig.axes[0].get_lines()] == [[1.0], [1.2]]  # step 0 has no loss yet
    fig = plot_min_k_distributions({"forget": [-0.1, -0.2], "holdout": [-3.0, -4.0, -5.0]}, title="t")
    heights = [sum(p.get_height() for p in c) for c in fig.axes[0].containers]
    assert heights == [2, 3]
    fig = plot_metric_bars({"target": {"a": 1.0, "b": 0.5}, "oracle": {"a": 0.1, "b": 0.4}}, ["a", "b"])
    assert sorted(round(p.get_height(), 2) for p in fig.axes[0].patches) == [0.1, 0.4, 0.5, 1.0]
    plt.close("all")
    with pytest.raises(ValueError, match="metric='f1'"):
        plot_training_curves(history, "f1")
    with pytest.raises(ValueError, match="keys="):
        plot_metric_bars({"target": {"a": 1.0}}, ["zzz"])


def test_person_explorer_shows_each_models_answers(model, tokenizer, mini):
    from utils.plots.memory import answer_table, person_explorer

    person = next(p for p in mini.people if p["split"] == "forget")
    table = answer_table({"random": model}, tokenizer, mini, person["name"])
    assert list(table["true answer"]) == [person[a] for a in ("city", "job", "pet", "color")]
    assert {"random says", "random p(true)"} <= set(table.columns)
    assert ((table["random p(true)"] >= 0) & (table["random p(true)"] <= 1)).all()
    widget = person_explorer({"random": model}, tokenizer, mini, names=[person["name"]])
    assert widget.children[0].value == person["name"]
    with pytest.raises(ValueError, match="name='Nobody'"):
        answer_table({"random": model}, tokenizer, mini, "Nobody")
