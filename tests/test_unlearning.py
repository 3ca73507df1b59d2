"""Tests of utils.unlearning: every loss against a hand computation, the training loop's contracts
(bf16 storage, frozen parameters, determinism), the cache and every bad-argument error."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from conftest import fact_batch, tiny_model
from utils import unlearning as U
from utils.data import Example
from utils.models import build_word_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

FORGET = fact_batch(12, 1)
RETAIN = fact_batch(24, 2)


def hand_log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    z = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - z for v in row]


# --- a tiny hand-made example: batch 2, length 3, vocabulary 3 -----------------------------------------
LOGITS = torch.tensor([
    [[1.0, 2.0, 0.0], [0.5, -1.0, 2.0], [0.0, 0.0, 0.0]],
    [[2.0, 0.0, 1.0], [1.0, 1.0, -1.0], [3.0, 0.0, 0.0]],
])
# example 0 covers tokens 1 and 2 (predicted by positions 0 and 1); example 1 covers token 2 only
LABELS = torch.tensor([[-100, 1, 2], [-100, -100, 0]])


def hand_sequence_ll() -> list[float]:
    ex0 = hand_log_softmax([1.0, 2.0, 0.0])[1] + hand_log_softmax([0.5, -1.0, 2.0])[2]
    ex1 = hand_log_softmax([1.0, 1.0, -1.0])[0]
    return [ex0, ex1]


def test_token_and_sequence_log_likelihood_match_hand_computation():
    ll = hand_sequence_ll()
    assert torch.allclose(U.sequence_log_likelihood(LOGITS, LABELS), torch.tensor(ll), atol=1e-6)
    per_token = U.token_log_probs(LOGITS, LABELS)
    assert per_token.shape == (3,)
    assert torch.allclose(per_token.sum(), torch.tensor(sum(ll)), atol=1e-6)


def test_an_example_without_covered_tokens_has_log_likelihood_zero():
    labels = torch.tensor([[-100, 1, 2], [-100, -100, -100]])
    assert U.sequence_log_likelihood(LOGITS, labels)[1].item() == 0.0


def test_nll_and_ga_are_the_mean_sequence_nll_with_opposite_signs():
    ll = hand_sequence_ll()
    expected_nll = -(ll[0] + ll[1]) / 2
    assert U.nll_loss(LOGITS, LABELS).item() == pytest.approx(expected_nll, abs=1e-6)
    assert U.ga_loss(LOGITS, LABELS).item() == pytest.approx(-expected_nll, abs=1e-6)
    assert U.gdr_loss(LOGITS, LABELS, alpha=2.5).item() == pytest.approx(2.5 * expected_nll, abs=1e-6)


def test_npo_matches_hand_computation():
    ll = hand_sequence_ll()
    ref_logits = LOGITS * 0.5
    ref_ll = [
        hand_log_softmax([0.5, 1.0, 0.0])[1] + hand_log_softmax([0.25, -0.5, 1.0])[2],
        hand_log_softmax([0.5, 0.5, -0.5])[0],
    ]
    beta = 0.3
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    expected = -(2 / beta) * sum(log_sigmoid(-beta * (a - b)) for a, b in zip(ll, ref_ll)) / 2
    assert U.npo_loss(LOGITS, ref_logits, LABELS, beta=beta).item() == pytest.approx(expected, abs=1e-5)


def test_npo_at_the_reference_is_2_ln2_over_beta():
    for beta in (0.1, 1.0):
        assert U.npo_loss(LOGITS, LOGITS.clone(), LABELS, beta).item() == pytest.approx(2 * math.log(2) / beta, rel=1e-6)


def test_npo_gradient_equals_ga_gradient_at_the_reference():
    model = tiny_model(0).float()
    ref_logits = model(input_ids=FORGET["input_ids"]).logits.detach()

    def grads(loss_fn):
        model.zero_grad()
        loss_fn(model(input_ids=FORGET["input_ids"]).logits).backward()
        return torch.cat([p.grad.flatten().clone() for p in model.parameters()])

    g_ga = grads(lambda lg: U.ga_loss(lg, FORGET["labels"]))
    g_npo = grads(lambda lg: U.npo_loss(lg, ref_logits, FORGET["labels"], beta=0.1))
    assert g_ga.norm() > 0
    assert torch.allclose(g_npo, g_ga, rtol=1e-4, atol=1e-7)
    # away from the reference NPO's weights sigma(beta * delta) shrink: its gradient is smaller than GA's
    far_ref = ref_logits.clone()
    rows = torch.arange(FORGET["labels"].shape[0])
    far_ref[rows, -2, FORGET["labels"][:, -1]] += 30.0  # the reference made the answers far likelier
    g_far = grads(lambda lg: U.npo_loss(lg, far_ref, FORGET["labels"], beta=1.0))  # weights 2 sigma(-4) ~ 0.04
    assert g_far.norm() < 0.5 * g_ga.norm()


def test_kl_matches_hand_computation_and_is_zero_at_the_reference():
    ref_logits = LOGITS.flip(-1)
    expected = []
    for ex, positions in ((0, (0, 1)), (1, (1,))):
        total = 0.0
        for t in positions:
            p = hand_log_softmax(ref_logits[ex, t].tolist())
            q = hand_log_softmax(LOGITS[ex, t].tolist())
            total += sum(math.exp(a) * (a - b) for a, b in zip(p, q))
        expected.append(total)
    assert U.kl_to_reference(LOGITS, ref_logits, LABELS).item() == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert U.klr_loss(LOGITS, ref_logits, LABELS, alpha=5.0).item() == pytest.approx(5 * sum(expected) / 2, abs=1e-5)
    assert U.kl_to_reference(LOGITS, LOGITS.clone(), LABELS).item() == 0.0
    model = tiny_model(1)
    logits = model(input_ids=RETAIN["input_ids"]).logits.detach()
    assert U.kl_to_reference(logits, logits.clone(), RETAIN["labels"]).item() == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 50.0))
def test_kl_is_never_negative(seed, scale):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 7, generator=g) * scale
    ref = torch.randn(3, 5, 7, generator=g) * scale
    labels = torch.randint(0, 7, (3, 5), generator=g)
    labels[:, 0] = -100
    assert U.kl_to_reference(logits, ref, labels).item() >= 0.0


def test_kl_ignores_a_constant_shift_of_the_logits_but_the_reference_code_kl_goes_negative():
    ref = LOGITS.clone()
    shifted = ref + 3.0  # the same distributions
    assert U.kl_to_reference(shifted, ref, LABELS).item() == pytest.approx(0.0, abs=1e-6)
    raw = U.reference_code_kl(shifted, ref)
    assert raw.item() < 0  # the defect: a "KL" below zero for identical distributions
    expected = -3.0 * ref.exp().sum().item() / ref.shape[0]  # sum exp(ref) * (ref - (ref + 3)) / batch
    assert raw.item() == pytest.approx(expected, rel=1e-5)
    assert raw.item() == pytest.approx(F.kl_div(shifted, ref, reduction="batchmean", log_target=True).item(), rel=1e-6)


def test_reference_code_npo_uses_every_logit():
    beta = 0.1
    expected = -F.logsigmoid(beta * (LOGITS - (LOGITS + 1.0))).mean() * 2 / beta
    assert U.reference_code_npo_loss(LOGITS + 1.0, LOGITS, beta).item() == pytest.approx(expected.item(), rel=1e-6)
    # unlike NPO it changes when every logit moves by the same constant (same distributions)
    assert U.reference_code_npo_loss(LOGITS + 1.0, LOGITS, beta).item() != pytest.approx(U.reference_code_npo_loss(LOGITS, LOGITS, beta).item())
    assert U.npo_loss(LOGITS + 1.0, LOGITS, LABELS, beta).item() == pytest.approx(U.npo_loss(LOGITS, LOGITS, LABELS, beta).item(), abs=1e-5)


@pytest.mark.parametrize("method", U.METHODS)
def test_unlearning_loss_is_the_sum_of_its_terms(method):
    ref = LOGITS.flip(-1)
    terms = U.unlearning_loss(method, LOGITS, LABELS, ref_forget_logits=ref, retain_logits=LOGITS * 2,
                              retain_labels=LABELS, ref_retain_logits=ref, alpha=3.0, beta=0.2)
    forget = U.ga_loss(LOGITS, LABELS) if method.startswith("GA") else U.npo_loss(LOGITS, ref, LABELS, 0.2)
    retain = {None: 0.0, "GDR": U.gdr_loss(LOGITS * 2, LABELS, 3.0).item(), "KLR": U.klr_loss(LOGITS * 2, ref, LABELS, 3.0).item()}[U.retain_loss_name(method)]
    assert terms["forget_term"].item() == pytest.approx(forget.item(), abs=1e-5)
    assert terms["retain_term"].item() == pytest.approx(retain, abs=1e-5)
    assert terms["loss"].item() == pytest.approx(forget.item() + retain, abs=1e-5)


def test_cached_reference_quantities_give_the_same_loss():
    model, ref = tiny_model(2), tiny_model(3)
    f_logits, r_logits = model(input_ids=FORGET["input_ids"]).logits, model(input_ids=RETAIN["input_ids"]).logits
    ref_f, ref_r = ref(input_ids=FORGET["input_ids"]).logits, ref(input_ids=RETAIN["input_ids"]).logits
    direct = U.unlearning_loss("NPO_KLR", f_logits, FORGET["labels"], ref_forget_logits=ref_f, retain_logits=r_logits,
                               retain_labels=RETAIN["labels"], ref_retain_logits=ref_r)
    ll = U.reference_log_likelihoods(ref, FORGET, batch_size=5)
    packed, offsets = U.reference_covered_log_probs(ref, RETAIN, batch_size=7)
    index = torch.arange(RETAIN["input_ids"].shape[0])
    cached = U.unlearning_loss("NPO_KLR", f_logits, FORGET["labels"], ref_forget_log_likelihood=ll, retain_logits=r_logits,
                               retain_labels=RETAIN["labels"], ref_retain_log_probs=U.gather_packed(packed, offsets, index))
    assert cached["loss"].item() == pytest.approx(direct["loss"].item(), rel=1e-5)
    sub = torch.tensor([5, 0, 3])
    assert torch.equal(U.gather_packed(packed, offsets, sub), packed[sub])  # one covered token per row


def test_method_helpers():
    assert [U.forget_loss_name(m) for m in U.METHODS] == ["GA"] * 3 + ["NPO"] * 3
    assert [U.retain_loss_name(m) for m in U.METHODS] == [None, "GDR", "KLR"] * 2
    assert [U.needs_reference(m) for m in U.METHODS] == [False, False, True, True, True, True]
    assert U.default_alpha("GA_GDR") == 1.0 and U.default_alpha("NPO_KLR") == 1.0 and U.default_alpha("GA") == 0.0


# --- batches -----------------------------------------------------------------------------------------
def test_batch_stream_visits_every_row_once_per_pass_and_is_seeded():
    data = fact_batch(10, 0)
    seen = []
    stream = U.BatchStream(data, 4, torch.Generator().manual_seed(0))
    for _ in range(5):  # 20 rows = two passes
        index, batch = stream.next()
        assert torch.equal(batch["input_ids"], data["input_ids"][index])
        seen += index.tolist()
    assert sorted(seen) == sorted(list(range(10)) * 2)
    again = U.BatchStream(data, 4, torch.Generator().manual_seed(0))
    assert again.next()[0].tolist() == seen[:4]


def test_trim_padding_drops_shared_padding_columns():
    batch = {"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]]),
             "labels": torch.tensor([[-100, 6, -100, -100], [-100, -100, -100, -100]])}
    out = U.trim_padding(batch)
    assert out["input_ids"].tolist() == [[5, 6], [7, 0]]


def test_encode_examples_covers_only_the_target():
    tok = build_word_tokenizer(["Question : Where ? Answer : Paris Rome the cat sat"])
    enc = U.encode(tok, [Example("Question : Where ? Answer :", " Paris"), Example("", "the cat sat")])
    labels = enc["labels"]
    assert (labels[0] != -100).sum() == 1 and tok.decode([int(labels[0][labels[0] != -100][0])]) == "Paris"
    assert (labels[1] != -100).sum() == 3  # a passage: every token after <bos>


def test_spaced_subset():
    assert U.spaced_subset(10, 3) == [0, 4, 9] or U.spaced_subset(10, 3) == [0, 5, 9]
    assert U.spaced_subset(3, 10) == [0, 1, 2]
    assert U.spaced_subset(5, 1) == [0] and U.spaced_subset(0, 4) == []


# --- the loop ------------------------------------------------------------------------------------------
def run(method="GA_GDR", model=None, **kw):
    args = dict(method=method, steps=6, lr=1e-3, batch_size=8, eval_every=3, progress=False, seed=0)
    args.update(kw)
    return U.unlearn(model if model is not None else tiny_model(0), None, FORGET, RETAIN, **args)


def forget_prob(model):
    with torch.no_grad():
        return U.sequence_log_likelihood(model.float()(input_ids=FORGET["input_ids"]).logits, FORGET["labels"]).exp().mean().item()


def test_bf16_mode_stores_and_updates_bf16_weights_and_fp32_mode_fp32():
    target = tiny_model(0)
    result = run(precision="bf16", model=target)
    assert {p.dtype for p in result.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in target.parameters()} == {torch.float32}  # the caller's model is untouched
    before = target.to(torch.bfloat16).state_dict()
    changed = [n for n, t in result.model.state_dict().items() if not torch.equal(t, before[n])]
    assert changed  # the bf16 weights themselves moved
    result32 = run(precision="fp32")
    assert {p.dtype for p in result32.model.parameters()} == {torch.float32}


def test_mixed_mode_stores_fp32_weights_but_multiplies_in_bf16():
    assert U.precision_dtype("mixed") == torch.float32
    with U.compute_context("mixed", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with U.compute_context("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with U.compute_context("bf16", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    target = tiny_model(0)
    mixed = run(precision="mixed", model=target, lr=1e-6, steps=3)
    assert {p.dtype for p in mixed.model.parameters()} == {torch.float32} and mixed.settings["precision"] == "mixed"
    again = run(precision="mixed", model=target, lr=1e-6, steps=3)
    fp32 = run(precision="fp32", model=target, lr=1e-6, steps=3)
    w0 = target.model.layers[0].mlp.down_proj.weight
    w_mixed, w_fp32 = (r.model.model.layers[0].mlp.down_proj.weight for r in (mixed, fp32))
    assert torch.equal(w_mixed, again.model.model.layers[0].mlp.down_proj.weight)  # deterministic
    assert not torch.equal(w_mixed, w_fp32)  # other arithmetic (bf16 matmuls) ...
    assert (w_mixed != w0).float().mean().item() > 0.9  # ... but fp32 storage: every small update registers
    with pytest.raises(ValueError, match="precision='fp16'"):
        U.compute_context("fp16", torch.device("cpu"))


def test_bf16_rounding_swallows_updates_that_fp32_keeps():
    """At a tiny LR, bf16 storage loses the update of most large weights (bf16 drops an update smaller than half the spacing of its neighbours)."""
    target = tiny_model(0)
    w0 = target.model.layers[0].mlp.down_proj.weight.detach().clone()
    w16 = run(model=target, precision="bf16", lr=1e-6, steps=3).model.model.layers[0].mlp.down_proj.weight.float()
    w32 = run(model=target, precision="fp32", lr=1e-6, steps=3).model.model.layers[0].mlp.down_proj.weight
    moved16 = (w16 != w0.to(torch.bfloat16).float()).float().mean().item()
    moved32 = (w32 != w0).float().mean().item()
    assert moved32 > 0.9 and moved16 < 0.5 * moved32


@pytest.mark.parametrize("method", ["GA_KLR", "NPO"])
def test_frozen_parameters_are_bit_identical(method):
    target = tiny_model(0)
    frozen = "model.layers.0.self_attn.q_proj.weight"
    result = run(method, model=target, trainable=lambda name: name != frozen)
    before = target.to(torch.bfloat16).state_dict()
    after = result.model.state_dict()
    assert torch.equal(after[frozen], before[frozen])
    assert not torch.equal(after["model.layers.1.mlp.up_proj.weight"], before["model.layers.1.mlp.up_proj.weight"])
    assert all(p.requires_grad for p in result.model.parameters())  # the flags are restored
    only = run(method, trainable={"lm_head.weight"}).model.state_dict()
    assert all(torch.equal(only[n], before[n]) for n in before if n != "lm_head.weight")
    assert not torch.equal(only["lm_head.weight"], before["lm_head.weight"])


@pytest.mark.parametrize("method", ["NPO_KLR", "GA_GDR"])
def test_same_seed_gives_identical_weights(method):
    a, b, c = (run(method, seed=s).model.state_dict() for s in (7, 7, 8))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("method", U.METHODS)
def test_every_method_lowers_the_forget_answer_probability(method):
    target = tiny_model(0)
    result = run(method, model=target, precision="fp32", steps=10, eval_every=5)
    assert forget_prob(result.model) < 0.8 * forget_prob(copy.deepcopy(target))


def test_history_records_losses_and_eval_metrics_at_the_eval_steps():
    calls = []

    def eval_fn(model):
        calls.append(model.training)
        return {"forget_prob": forget_prob(copy.deepcopy(model))}

    result = run("NPO_GDR", steps=7, eval_every=3, eval_fn=eval_fn)
    h = result.history
    assert h["step"].tolist() == [0, 3, 6, 7]
    assert {"loss", "forget_term", "retain_term", "grad_norm", "forget_prob", "seconds"} <= set(h.columns)
    assert math.isnan(h["loss"][0]) and h["loss"][1:].notna().all()
    assert calls == [False] * 4  # evaluated in eval mode
    assert h["forget_prob"].iloc[-1] < h["forget_prob"].iloc[0]
    assert result.model.training is False


def test_clipping_bounds_the_recorded_gradient_norm_before_clipping():
    h = run("GA", clip=1e-3, eval_every=1).history
    assert (h["grad_norm"][1:] > 1e-3).all()  # the norm is logged before clipping


# --- recipe and cache -------------------------------------------------------------------------------------
def test_recipe_defaults_per_method():
    r = U.UnlearnRecipe()
    assert (r.steps, r.lr, r.batch_size, r.beta, r.precision, r.clip, r.forget_on) == (900, 2e-5, 16, 0.1, "bf16", 1.0, "text")
    assert r.for_method("GA_GDR").alpha == 1.0 and r.for_method("NPO_KLR").alpha == 1.0 and r.for_method("GA").alpha == 0.0
    assert U.UnlearnRecipe(alpha=2.0).for_method("GA_KLR").alpha == 2.0
    assert r.kwargs("NPO")["method"] == "NPO"


def test_cache_key_changes_with_every_ingredient():
    base = U.cache_key("t", "d", "GA", U.UnlearnRecipe(), 0)
    assert base == U.cache_key("t", "d", "GA", U.UnlearnRecipe(), 0)
    variants = [U.cache_key("t2", "d", "GA", U.UnlearnRecipe(), 0), U.cache_key("t", "d2", "GA", U.UnlearnRecipe(), 0),
                U.cache_key("t", "d", "NPO", U.UnlearnRecipe(), 0), U.cache_key("t", "d", "GA", U.UnlearnRecipe(lr=1e-5), 0),
                U.cache_key("t", "d", "GA", U.UnlearnRecipe(), 1)]
    assert len({base, *variants}) == 6


def test_unlearn_cached_trains_once_then_loads(tmp_path, monkeypatch):
    tok = build_word_tokenizer(["Question : Who ? Answer : a b c d e f g h the cat"])
    data = SimpleNamespace(knowmem={"forget": [], "retain": []}, raw={"forget": ["the cat a b"], "retain": ["the cat d e"]})
    forget = [Example("Question : Who ? Answer :", w) for w in (" a", " b", " c")]
    retain = [Example("Question : Who ? Answer :", w) for w in (" d", " e", " f", " g")]
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      vocab_size=len(tok), tie_word_embeddings=False)
    torch.manual_seed(0)
    world = SimpleNamespace(target=LlamaForCausalLM(cfg).eval(), tokenizer=tok, data=data)
    recipe = U.UnlearnRecipe(steps=4, batch_size=2, lr=1e-3)
    monkeypatch.setattr("utils.data.qa_examples", lambda d, split: forget if split == "forget" else retain)
    monkeypatch.setattr("utils.data.text_examples", lambda d, split: forget if split == "forget" else retain)
    first = U.unlearn_cached_result(world, "GA_GDR", recipe, cache_dir=tmp_path, eval_every=2, progress=False, device="cpu")
    second = U.unlearn_cached_result(world, "GA_GDR", recipe, cache_dir=tmp_path, eval_every=2, progress=False, device="cpu")
    model = U.unlearn_cached(world, "GA_GDR", recipe, cache_dir=tmp_path, progress=False, device="cpu")
    folders = list((tmp_path / "unlearned").glob("ga_gdr-*"))
    assert len([f for f in folders if f.is_dir()]) == 1
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a) and all(torch.equal(a[n], model.state_dict()[n]) for n in a)
    assert next(second.model.parameters()).dtype == torch.bfloat16
    assert second.history["step"].tolist() == first.history["step"].tolist() == [0, 2, 4]
    assert second.settings["key"] == first.settings["key"]


# --- errors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"method": "GAX"}, "method"),
    ({"beta": 0.0}, "beta"),
    ({"beta": -1.0}, "beta"),
    ({"alpha": -0.1}, "alpha"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -1e-5}, "lr"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"precision": "fp16"}, "precision"),
    ({"clip": 0.0}, "clip"),
    ({"eval_every": 0}, "eval_every"),
    ({"seed": -1}, "seed"),
])
def test_unlearn_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        run(**kwargs)


def test_unlearn_rejects_empty_forget_and_missing_retain():
    with pytest.raises(ValueError, match="forget"):
        U.unlearn(tiny_model(0), None, [], RETAIN, method="GA", steps=1, progress=False)
    with pytest.raises(ValueError, match="forget"):
        U.unlearn(tiny_model(0), None, {k: v[:0] for k, v in FORGET.items()}, RETAIN, method="GA", steps=1, progress=False)
    with pytest.raises(ValueError, match="retain"):
        U.unlearn(tiny_model(0), None, FORGET, None, method="GA_GDR", steps=1, progress=False)
    no_target = dict(FORGET, labels=torch.full_like(FORGET["labels"], -100))
    with pytest.raises(ValueError, match="covers no token"):
        U.unlearn(tiny_model(0), None, no_target, RETAIN, method="GA", steps=1, progress=False)


def test_trainable_errors():
    with pytest.raises(ValueError, match="not parameters"):
        run(trainable={"no.such.weight"})
    with pytest.raises(ValueError, match="selects no parameter"):
        run(trainable=lambda name: False)
    with pytest.raises(ValueError, match="trainable"):
        run(trainable="lm_head.weight")


@pytest.mark.parametrize("kwargs, name", [
    ({"forget_on": "passages"}, "forget_on"), ({"alpha": -1.0}, "alpha"), ({"beta": 0.0}, "beta"),
    ({"lr": 0.0}, "lr"), ({"steps": 0}, "steps"), ({"precision": "int8"}, "precision"), ({"batch_size": 1.5}, "batch_size"),
])
def test_recipe_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        U.UnlearnRecipe(**kwargs)


def test_loss_errors_name_the_parameter():
    with pytest.raises(ValueError, match="beta"):
        U.npo_loss(LOGITS, LOGITS, LABELS, beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        U.gdr_loss(LOGITS, LABELS, alpha=-1.0)
    with pytest.raises(ValueError, match="method"):
        U.unlearning_loss("KL", LOGITS, LABELS)
    with pytest.raises(ValueError, match="ref_forget_logits"):
        U.unlearning_loss("NPO", LOGITS, LABELS)
    with pytest.raises(ValueError, match="retain_logits"):
        U.unlearning_loss("GA_GDR", LOGITS, LABELS)
    with pytest.raises(ValueError, match="ref_retain_logits"):
        U.unlearning_loss("GA_KLR", LOGITS, LABELS, retain_logits=LOGITS, retain_labels=LABELS)
    with pytest.raises(ValueError, match="logits"):
        U.sequence_log_likelihood(LOGITS[0], LABELS)
    with pytest.raises(ValueError, match="ref_logits"):
        U.kl_to_reference(LOGITS, LOGITS[:1], LABELS)
    with pytest.raises(ValueError, match="forget_on"):
        U.forget_retain_examples(None, "raw")
    with pytest.raises(ValueError, match="max_examples"):
        U.answer_eval_fn(None, [Example("a", "b")], [Example("a", "b")], max_examples=0)


def test_concat_batches_pads_to_a_common_width():
    a = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.tensor([[1, 1, 1]]), "labels": torch.tensor([[-100, 2, 3]])}
    b = {"input_ids": torch.tensor([[4, 5]]), "attention_mask": torch.tensor([[1, 1]]), "labels": torch.tensor([[-100, 5]])}
    out = U.concat_batches(a, b)
    assert out["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["labels"].tolist() == [[-100, 2, 3], [-100, 5, -100]]
