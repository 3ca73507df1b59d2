"""Tests of utils.sure: the saliency is the forget-loss gradient norm (checked against autograd), the
percentile selection and its errors, the mask (frozen weights come back bit-identical, the optimizer never
sees them, row masks leave unselected rows untouched), the cache, and the cheap sweep metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import fact_batch, tiny_model
from utils import sure as S
from utils import unlearning as U
from utils.data import Example, MuseData, qa_examples
from utils.metrics import answer_stats
from utils.models import build_word_tokenizer

LINEAR_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

pytestmark = pytest.mark.usefixtures("one_thread")

FORGET = fact_batch(10, 1)
RETAIN = fact_batch(16, 2)


def full_set_ga_gradients(model, data) -> dict[str, torch.Tensor]:
    """Reference: autograd of utils.unlearning.ga_loss over the whole set in one batch."""
    model.zero_grad(set_to_none=True)
    U.ga_loss(model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits, data["labels"]).backward()
    out = {name: m.weight.grad.detach().clone() for name, m in S.candidate_modules(model)}
    model.zero_grad(set_to_none=True)
    return out


# --------------------------------------------------------------------------------------------------
# saliency
# --------------------------------------------------------------------------------------------------
def test_forget_gradients_equal_autograd_of_the_ga_loss_for_any_batch_size():
    model = tiny_model()
    reference = full_set_ga_gradients(model, FORGET)
    for batch_size in (3, 4, 64):
        grads = S.forget_gradients(model, None, FORGET, batch_size=batch_size)
        assert grads.keys() == reference.keys()
        for name in reference:
            assert torch.allclose(grads[name], reference[name], atol=1e-6, rtol=1e-4), (batch_size, name)


def test_forget_gradients_leave_the_model_as_it_was():
    model = tiny_model()
    model.model.layers[0].self_attn.q_proj.weight.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    S.forget_gradients(model, None, FORGET, batch_size=4)
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert not model.training


def test_npo_gradient_at_the_target_equals_the_ga_gradient():
    """Why one saliency map serves GA and NPO methods: at θ = ref, ∇L_NPO = ∇L_GA (σ(0)·2 = 1)."""
    model = tiny_model(3)
    with torch.no_grad():
        ref_logits = model(input_ids=FORGET["input_ids"]).logits
    logits = model(input_ids=FORGET["input_ids"]).logits
    w = model.model.layers[1].mlp.down_proj.weight
    (g_npo,) = torch.autograd.grad(U.npo_loss(logits, ref_logits, FORGET["labels"], beta=0.1), w, retain_graph=True)
    (g_ga,) = torch.autograd.grad(U.ga_loss(logits, FORGET["labels"]), w)
    assert torch.allclose(g_npo, g_ga, atol=1e-7, rtol=1e-4)
    assert g_ga.abs().sum() > 0


def test_module_saliency_is_the_gradient_norm_of_every_linear_weight():
    model = tiny_model()
    table = S.module_saliency(model, None, FORGET, batch_size=4)
    reference = full_set_ga_gradients(model, FORGET)
    assert list(table.columns) == ["module", "layer", "module_type", "n_weights", "saliency"]
    assert len(table) == 2 * 7 and "lm_head" not in set(table["module"])
    assert set(table["module_type"]) == set(LINEAR_TYPES)
    assert table["layer"].tolist() == [0] * 7 + [1] * 7
    for _, row in table.iterrows():
        assert row["saliency"] == pytest.approx(float(reference[row["module"]].norm()), rel=1e-4)
        assert row["n_weights"] == reference[row["module"]].numel()
    with_head = S.module_saliency(model, None, FORGET, include_lm_head=True)
    assert len(with_head) == 15 and with_head["module"].iloc[-1] == "lm_head" and pd.isna(with_head["layer"].iloc[-1])


def test_row_saliency_norms_combine_into_the_module_norm():
    model = tiny_model()
    modules = S.module_saliency(model, None, FORGET)
    rows = S.module_saliency(model, None, FORGET, granularity="row")
    assert "row" in rows.columns
    for name, group in rows.groupby("module", sort=False):
        weight = dict(model.named_modules())[name].weight
        assert group["row"].tolist() == list(range(weight.shape[0]))
        total = math.sqrt(float((group["saliency"] ** 2).sum()))
        assert total == pytest.approx(float(modules.set_index("module").loc[name, "saliency"]), rel=1e-4)


def test_saliency_rejects_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="granularity='column'.*'module', 'row'"):
        S.module_saliency(model, None, FORGET, granularity="column")
    with pytest.raises(ValueError, match="batch_size=0"):
        S.forget_gradients(model, None, FORGET, batch_size=0)
    with pytest.raises(ValueError, match="forget"):
        S.forget_gradients(model, None, [])
    with pytest.raises(ValueError, match="gradients is empty"):
        S.saliency_from_gradients({})


# --------------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------------
def hand_table(values) -> pd.DataFrame:
    return pd.DataFrame({"module": [f"m{i}" for i in range(len(values))], "layer": list(range(len(values))),
                         "module_type": "q_proj", "n_weights": 10, "saliency": list(values)})


def test_select_modules_keeps_those_strictly_above_the_percentile():
    table = hand_table([3.0, 1.0, 10.0, 7.0, 2.0, 9.0, 4.0, 5.0, 6.0, 8.0])  # 1..10 shuffled
    assert S.saliency_threshold(table, 80) == pytest.approx(8.2)  # numpy's linear interpolation
    assert S.select_modules(table, 80) == ["m2", "m5"]  # saliencies 10 and 9, in model order
    assert S.select_modules(table, 50) == ["m2", "m3", "m5", "m8", "m9"]  # > 5.5: 10, 7, 9, 6, 8
    assert S.select_modules(table, 99.9) == ["m2"]
    assert len(S.select_modules(table, 0.5)) == 9  # the smallest is never above its own percentile
    summary = S.selection_summary(table, ["m2", "m5"])
    assert summary == {"modules_selected": 2, "modules_total": 10, "weights_selected": 20, "share_of_linear_weights": 0.2}


@pytest.mark.parametrize("gamma", [0, 100, -5, 150, float("nan"), "90", None])
def test_select_modules_rejects_a_threshold_outside_0_100(gamma):
    with pytest.raises(ValueError, match=f"gamma={gamma!r}".replace("(", r"\(").replace(")", r"\)")):
        S.select_modules(hand_table([1.0, 2.0, 3.0]), gamma)


def test_select_modules_raises_when_the_threshold_selects_nothing():
    with pytest.raises(ValueError, match=r"gamma=90 selects no module.*lower gamma"):
        S.select_modules(hand_table([2.0, 2.0, 2.0, 2.0]), 90)
    with pytest.raises(ValueError, match=r"gamma=60 selects no module"):
        S.select_modules(hand_table([1.0, 5.0, 5.0]), 60)  # the top is tied: nothing is strictly above


def test_select_modules_rejects_bad_tables():
    rows = hand_table([1.0, 2.0]).assign(row=0)
    with pytest.raises(ValueError, match="select_rows"):
        S.select_modules(rows, 50)
    with pytest.raises(ValueError, match="columns"):
        S.select_modules(pd.DataFrame({"module": ["a"]}), 50)
    with pytest.raises(ValueError, match="NaN"):
        S.select_modules(hand_table([1.0, float("nan")]), 50)
    with pytest.raises(ValueError, match="not in the saliency table"):
        S.selection_summary(hand_table([1.0, 2.0]), ["nope"])


def test_select_rows_builds_one_bool_mask_per_module():
    table = pd.DataFrame({"module": ["a"] * 4 + ["b"] * 3, "row": [0, 1, 2, 3, 0, 1, 2],
                          "saliency": [1.0, 9.0, 2.0, 3.0, 8.0, 0.5, 7.0]})
    masks = S.select_rows(table, 50)  # median 3 -> rows with 9, 8, 7
    assert list(masks) == ["a", "b"]
    assert masks["a"].tolist() == [False, True, False, False]
    assert masks["b"].tolist() == [True, False, True]
    top = S.select_rows(table, 80)  # 80th percentile 7.8 -> rows with 9 and 8
    assert top["a"].tolist() == [False, True, False, False] and top["b"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="gamma=100"):
        S.select_rows(table, 100)


# --------------------------------------------------------------------------------------------------
# masked unlearning
# --------------------------------------------------------------------------------------------------
def run_masked(mask, method="GA_GDR", steps=4, lr=1e-2, model=None):
    model = model or tiny_model(5)
    result = S.sure_unlearn(model, None, FORGET, RETAIN, mask=mask, method=method, steps=steps, lr=lr, batch_size=4,
                            eval_every=None, progress=False, device="cpu")
    return model, result


def test_non_selected_parameters_come_back_bit_identical():
    mask = ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.v_proj"]
    target, result = run_masked(mask)
    assert next(result.model.parameters()).dtype == torch.bfloat16
    reference = dict(target.to(torch.bfloat16).named_parameters())
    changed = S.changed_parameters(target, result.model)
    assert sorted(changed) == sorted(S.mask_parameter_names(mask))  # the selected ones did move
    for name, p in result.model.named_parameters():
        if name not in S.mask_parameter_names(mask):
            assert torch.equal(p, reference[name]), name  # bit-identical to the target's bf16 weights
    assert all(p.requires_grad for p in result.model.parameters())  # flags restored
    assert result.settings["trainable"] == 2 and result.settings["mask_modules"] == mask


def test_the_optimizer_is_given_only_the_selected_weights(monkeypatch):
    seen: list[set[int]] = []
    real = torch.optim.AdamW

    class SpyAdamW(real):
        def __init__(self, params, *args, **kwargs):
            params = list(params)
            seen.append({id(p) for p in params})
            super().__init__(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    model = tiny_model(5)
    work = model  # trained in place so the parameter objects can be named afterwards
    mask = ["model.layers.1.mlp.up_proj"]
    S.sure_unlearn(work, None, FORGET, RETAIN, mask=mask, method="NPO_KLR", steps=2, lr=1e-3, batch_size=4,
                   eval_every=None, progress=False, device="cpu", inplace=True)
    by_id = {id(p): n for n, p in work.named_parameters()}
    assert len(seen) == 1 and {by_id[i] for i in seen[0]} == {"model.layers.1.mlp.up_proj.weight"}


def test_a_row_mask_moves_only_the_selected_rows():
    module = "model.layers.1.mlp.gate_proj"
    rows = torch.zeros(64, dtype=torch.bool)
    rows[[0, 5, 17, 40]] = True
    target, result = run_masked({module: rows}, lr=5e-2)
    before = dict(target.to(torch.bfloat16).named_modules())[module].weight
    after = dict(result.model.named_modules())[module].weight
    moved = (after != before).any(1)
    assert not moved[~rows].any()  # unselected rows: bit-identical
    assert moved[rows].all()
    assert S.changed_parameters(target, result.model) == [f"{module}.weight"]


def test_a_full_mask_trains_like_unlearn_with_the_same_trainable_filter():
    names = [n for n, _ in S.candidate_modules(tiny_model())]
    _, masked = run_masked(names[:3], steps=3)
    plain = U.unlearn(tiny_model(5), None, FORGET, RETAIN, method="GA_GDR", steps=3, lr=1e-2, batch_size=4, eval_every=None,
                      progress=False, device="cpu", trainable=S.mask_parameter_names(names[:3]))
    a, b = masked.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same loop, same seed: the same bits


def test_masks_are_validated():
    with pytest.raises(ValueError, match="not an nn.Linear module"):
        run_masked(["model.layers.0.mlp.nope"])
    with pytest.raises(ValueError, match="not an nn.Linear module"):
        run_masked(["model.embed_tokens"])
    with pytest.raises(ValueError, match="mask is empty"):
        run_masked([])
    with pytest.raises(ValueError, match="mask='model.layers.0.mlp.up_proj' is not accepted"):
        run_masked("model.layers.0.mlp.up_proj")
    with pytest.raises(ValueError, match=r"shape \(64,\)"):
        run_masked({"model.layers.0.mlp.up_proj": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="selects no row"):
        run_masked({"model.layers.0.mlp.up_proj": torch.zeros(64, dtype=torch.bool)})
    with pytest.raises(ValueError, match="trainable is set by sure_unlearn"):
        S.sure_unlearn(tiny_model(), None, FORGET, mask=["model.layers.0.mlp.up_proj"], method="GA", trainable=None)


def test_mask_fingerprint_depends_on_the_mask_not_its_order():
    a = S.mask_fingerprint(["x", "y"])
    assert a == S.mask_fingerprint(["y", "x"])
    assert len({a, S.mask_fingerprint(["x"]), S.mask_fingerprint(None),
                S.mask_fingerprint({"x": torch.tensor([True, False]), "y": torch.tensor([True])}),
                S.mask_fingerprint({"x": torch.tensor([False, True]), "y": torch.tensor([True])})}) == 5
    recipe = U.UnlearnRecipe()
    base = S.sure_cache_key("t", "d", "GA", recipe, ["x"], 0)
    assert base == S.sure_cache_key("t", "d", "GA", recipe, ["x"], 0)
    assert len({base, S.sure_cache_key("t", "d", "GA", recipe, ["y"], 0), S.sure_cache_key("t", "d", "GA", recipe, ["x"], 1),
                S.sure_cache_key("t", "d", "GA", U.UnlearnRecipe(lr=1e-4), ["x"], 0)}) == 4


# --------------------------------------------------------------------------------------------------
# the cache and the cheap metrics, on a small MUSE-shaped world
# --------------------------------------------------------------------------------------------------
NAMES = ("ana", "bo", "cy", "dee", "eli", "fay")
CITIES = ("rome", "oslo", "lima", "kiev", "nice", "bern")


def small_world(seed: int = 0):
    knowmem = {"forget": [{"question": f"Where was {n} born ?", "answer": c} for n, c in zip(NAMES[:2], CITIES[:2])],
               "retain": [{"question": f"Where was {n} born ?", "answer": c} for n, c in zip(NAMES[2:], CITIES[2:])]}
    privleak = {"forget": [f"{n} was born in {c} ." for n, c in zip(NAMES[:2], CITIES[:2])],
                "retain": [f"{n} was born in {c} ." for n, c in zip(NAMES[2:4], CITIES[2:4])],
                "holdout": [f"{n} was born in {c} ." for n, c in zip(NAMES[4:], CITIES[4:])]}
    data = MuseData(name="mini", raw={"forget": privleak["forget"], "retain": privleak["retain"], "holdout": privleak["holdout"]},
                    verbmem=[], knowmem=knowmem, privleak=privleak)
    texts = [f"Question: {d['question']}\nAnswer: {d['answer']}" for qa in knowmem.values() for d in qa] + sum(privleak.values(), [])
    tok = build_word_tokenizer(texts)
    from types import SimpleNamespace

    return SimpleNamespace(target=tiny_model(seed, vocab=len(tok), layers=1, hidden=64), tokenizer=tok, data=data)  # rows of 64: one RTN group


def test_sure_cached_result_trains_once_then_loads(tmp_path):
    world = small_world()
    recipe = U.UnlearnRecipe(steps=3, batch_size=2, lr=1e-2)
    mask = ["model.layers.0.self_attn.o_proj"]
    first = S.sure_cached_result(world, "GA_GDR", recipe, mask, cache_dir=tmp_path, progress=False, device="cpu")
    second = S.sure_cached_result(world, "GA_GDR", recipe, mask, cache_dir=tmp_path, progress=False, device="cpu")
    folders = [f for f in (tmp_path / "sure").glob("ga_gdr-*") if f.is_dir()]
    assert len(folders) == 1 and folders[0].name.endswith(first.settings["key"])
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert next(second.model.parameters()).dtype == torch.bfloat16
    assert second.settings["mask"] == S.mask_fingerprint(mask) and second.settings["key"] == first.settings["key"]
    assert S.changed_parameters(world.target, second.model) == [f"{mask[0]}.weight"]
    other = S.sure_cached_result(world, "GA_GDR", recipe, ["model.layers.0.mlp.up_proj"], cache_dir=tmp_path, progress=False, device="cpu")
    assert other.settings["key"] != first.settings["key"]
    # a damaged cache folder is rebuilt, not trusted
    (folders[0] / "model.safetensors").write_bytes(b"broken")
    again = S.sure_cached_result(world, "GA_GDR", recipe, mask, cache_dir=tmp_path, progress=False, device="cpu")
    assert all(torch.equal(a[n], again.model.state_dict()[n]) for n in a)


def test_sure_cached_result_without_a_mask_is_the_shared_unlearning_cache(tmp_path):
    world = small_world()
    recipe = U.UnlearnRecipe(steps=2, batch_size=2, lr=1e-3)
    full = S.sure_cached_result(world, "GA", recipe, None, cache_dir=tmp_path, progress=False, device="cpu")
    assert [f.name for f in (tmp_path / "unlearned").iterdir() if f.is_dir()] == [f"ga-{full.settings['key']}"]
    with pytest.raises(ValueError, match="method='SURE'"):
        S.sure_cached_result(world, "SURE", recipe, None, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="seed=-1"):
        S.sure_cached_result(world, "GA", recipe, ["model.layers.0.mlp.up_proj"], seed=-1, cache_dir=tmp_path)


def test_answer_metrics_match_answer_stats_and_fit_evaluate_grid():
    from utils.metrics import privleak_auc
    from utils.study import evaluate_grid

    world = small_world(1)
    out = S.answer_metrics(world.target, world.tokenizer, world.data, oracle_auc=0.5)
    assert set(out) == set(S.CHEAP_METRICS)
    stats = answer_stats(world.target, world.tokenizer, qa_examples(world.data, "forget"))
    assert out["forget_acc"] == pytest.approx(float(stats["correct"].float().mean()))
    assert out["forget_prob"] == pytest.approx(float(stats["prob"].mean()))
    assert out["privleak_auc"] == pytest.approx(privleak_auc(world.target, world.tokenizer, world.data))
    assert out["privleak"] == pytest.approx((out["privleak_auc"] - 0.5) / 0.5 * 100)
    only = S.answer_metrics(world.target, world.tokenizer, world.data, include=("answers",))
    assert set(only) == {"forget_acc", "forget_prob", "retain_acc", "retain_prob"}
    with pytest.raises(ValueError, match="include='rouge'"):
        S.answer_metrics(world.target, world.tokenizer, world.data, include=("rouge",))
    grid = evaluate_grid(world, {"a": world.target}, ("rtn4",), evaluate=S.answer_metrics, progress=False)
    assert grid["precision"].tolist() == ["full", "rtn4"] and set(S.CHEAP_METRICS) - {"privleak"} <= set(grid.columns)


def test_sweep_helpers_label_and_compare_precisions():
    assert S.sweep_name(90, 1e-4) == "SURE γ=90 lr=1e-04"
    assert S.sweep_name(None, 2e-5) == "full lr=2e-05"
    with pytest.raises(ValueError, match="gamma=100"):
        S.sweep_name(100, 1e-4)
    with pytest.raises(ValueError, match="lr=0"):
        S.sweep_name(90, 0)
    results = pd.DataFrame({"model": ["a", "a", "b", "b", "c"], "precision": ["full", "rtn4", "full", "rtn4", "full"],
                            "forget_acc": [0.1, 0.9, 0.0, 0.05, 0.5]})
    table = S.sweep_table(results, {"a": {"gamma": 90, "lr": 1e-4}, "b": {"gamma": None, "lr": 2e-5}})
    assert list(table["model"]) == ["a", "a", "b", "b"] and table.loc[0, "gamma"] == 90
    gaps = S.precision_gaps(table)
    assert gaps.loc["a", "rtn4"] == pytest.approx(0.8) and gaps.loc["b", "rtn4"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="labels is empty"):
        S.sweep_table(results, {})
    with pytest.raises(ValueError, match="'privleak'"):
        S.precision_gaps(table, "privleak")
    assert np.isfinite(gaps.to_numpy()).all()
