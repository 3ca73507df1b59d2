"""The mechanism of quantized recovery: level tables, the fates of changed weights, the fp32 LR search, the claims."""

import copy
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils.mechanism import (
    CLAIM_COLUMNS,
    FATES,
    bf16_reference,
    bf16_threshold,
    bin_edges,
    closest_lr,
    code_identity_grid,
    edit_fates,
    edit_fates_table,
    bracket,
    final_metric,
    flat_edit,
    geometric_midpoint,
    level_table,
    levels_frame,
    match_fp32_lr,
    overall_identity,
    quantized_value_identity,
    quantized_weights,
    recovered_claims,
    unchanged_claims,
    zero_bin_codes,
    zero_bin_edges,
)
from utils.quantization import quantization_step, quantize_codes, zero_bin_halfwidth
from utils.unlearning import UnlearnRecipe


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


# ------------------------------------------------------------------ level tables
def test_level_tables_shapes_and_range():
    rtn4, fp4, nf4, rtn8 = (level_table(q) for q in ("rtn4", "fp4", "nf4", "rtn8"))
    assert rtn4.numel() == 15 and torch.allclose(rtn4.diff(), torch.full((14,), 1 / 7, dtype=torch.float64))
    assert rtn8.numel() == 255
    assert fp4.numel() == 15 and nf4.numel() == 16  # FP4's +0 and -0 coincide
    for levels in (rtn4, fp4, nf4):
        assert levels.min() == -1 and levels.max() == 1 and bool((levels == 0).any())
        assert bool((levels.diff() > 0).all())
    # NF4 is denser near zero: its smallest positive level is below RTN's first step
    assert nf4[nf4 > 0].min() < rtn4[rtn4 > 0].min()


@pytest.mark.parametrize("quantizer", ["rtn4", "fp4", "nf4"])
def test_zero_bin_edges_match_quantization_module(quantizer):
    torch.manual_seed(1)
    w = torch.randn(8, 64)
    absmax = w.abs().amax(1, keepdim=True).expand_as(w)
    half = zero_bin_halfwidth(w, quantizer) / absmax
    lower, upper = zero_bin_edges(level_table(quantizer))
    assert torch.allclose(half[w >= 0], torch.full_like(half[w >= 0], upper), atol=1e-6)
    assert torch.allclose(half[w < 0], torch.full_like(half[w < 0], -lower), atol=1e-6)


def test_zero_bin_widths_order_and_frame():
    frame = levels_frame(("rtn4", "fp4", "nf4"))
    width = frame["zero bin width"]
    assert width["nf4"] < width["rtn4"] < width["fp4"]  # NF4's zero bin is about half as wide
    assert frame.loc["fp4", "distinct levels"] == 15 and frame.loc["nf4", "distinct levels"] == 16
    # without merging FP4's tiny ±1/192 levels its zero bin is tiny
    lo, hi = zero_bin_edges(level_table("fp4"), merge_tiny_levels=False)
    assert hi == pytest.approx(1 / 384, rel=1e-6) and lo == pytest.approx(-1 / 384, rel=1e-6)


def test_bin_edges_give_round_to_nearest():
    levels = level_table("nf4")
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    by_edges = levels[torch.bucketize(x, bin_edges(levels))]
    nearest = levels[(x[:, None] - levels[None, :]).abs().argmin(1)]
    assert torch.equal(by_edges, nearest)


def test_level_errors_name_the_parameter():
    with pytest.raises(ValueError, match="quantizer='gptq4'.*'rtn4'"):
        level_table("gptq4")
    with pytest.raises(ValueError, match="no level 0"):
        zero_bin_edges(torch.tensor([-1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="not strictly increasing"):
        bin_edges(torch.tensor([0.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="levels="):
        bin_edges([0.0, 1.0])


# ------------------------------------------------------------------ where the edit lands
def test_bf16_reference_copies_and_rounds():
    model = tiny_llama()
    ref = bf16_reference(model)
    assert all(p.dtype == torch.bfloat16 for p in ref.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    w = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(ref.model.layers[0].self_attn.q_proj.weight, w.to(torch.bfloat16))
    with pytest.raises(ValueError, match="model=str"):
        bf16_reference("model")


def test_bf16_threshold():
    assert bf16_threshold(2e-5) == pytest.approx(256 * 2e-5)
    with pytest.raises(ValueError, match="lr=0"):
        bf16_threshold(0)


def _edited(reference):
    """Three edits to layer 0's q_proj: one inside the zero bin, one inside another bin, one across an edge."""
    model = copy.deepcopy(reference)
    w = model.model.layers[0].self_attn.q_proj.weight
    with torch.no_grad():
        w0 = w.detach().clone()
        codes = quantize_codes(w0, "rtn4")
        step = quantization_step(w0, "rtn4")
        pos = w0 / step  # position on the grid, in steps
        deep_zero = ((pos.abs() < 0.2) & (w0 != 0)).nonzero()[0]
        mid_other = ((codes.abs() >= 1) & (codes.abs() <= 5) & ((pos - codes).abs() < 0.2)).nonzero()[0]
        crossing = ((pos.abs() < 0.2) & (w0 != 0)).nonzero()[1]
        w[tuple(deep_zero)] = w0[tuple(deep_zero)] * 0.5
        w[tuple(mid_other)] = w0[tuple(mid_other)] + 0.1 * step[tuple(mid_other)]
        w[tuple(crossing)] = 2.0 * step[tuple(crossing)]
    return model


def test_edit_fates_counts_each_fate():
    reference = tiny_llama()
    unlearned = _edited(reference)
    n = sum(w.numel() for w in quantized_weights(reference).values())
    out = edit_fates(reference, unlearned, "rtn4", lr=1e-3)
    assert out["n_weights"] == n
    assert out["frac_changed"] == pytest.approx(3 / n)
    for fate in FATES:
        assert out[fate] == pytest.approx(1 / 3)
    assert sum(out[f] for f in FATES) == pytest.approx(1.0)
    assert out["frac_codes_changed"] == pytest.approx(1 / n) == pytest.approx(out["frac_codes_changed_merged"])
    # at 8 bits the same edits all change their code (0.1 of a 4-bit step is 1.8 8-bit steps)
    out8 = edit_fates(reference, unlearned, "rtn8", lr=1e-3)
    assert out8["crossed a bin edge"] == pytest.approx(1.0)


def test_flat_edit_lines_up_every_weight():
    reference = tiny_llama()
    unlearned = _edited(reference)
    flat = flat_edit(reference, unlearned, "rtn4")
    n = sum(w.numel() for w in quantized_weights(reference).values())
    assert all(v.shape == (n,) for v in flat.values())
    moved = flat["w_ref"] != flat["w_new"]
    assert int(moved.sum()) == 3
    assert torch.allclose(flat["halfwidth"], flat["step"] / 2)
    # the edit placed at 2 steps from a weight at < 0.2 steps measures between 1.8 and 2.2 steps
    assert float(flat["delta_steps"][moved].abs().max()) == pytest.approx(2.0, abs=0.2)
    assert bool((flat["delta_steps"][~moved] == 0).all())


def test_fp4_tiny_levels_count_as_zero_bin():
    assert zero_bin_codes("fp4") == (-1, 0, 1) and zero_bin_codes("nf4") == (0,) and zero_bin_codes("rtn8") == (0,)
    reference = tiny_llama()
    unlearned = copy.deepcopy(reference)
    w0 = reference.model.layers[0].mlp.up_proj.weight.detach()
    absmax = w0.reshape(-1, 64).abs().amax(1).reshape(w0.shape[0], -1)[0, 0]
    # the first block's first weight: from 0 to just above 1/384 of the absmax (rounds to the tiny level 1/192)
    with torch.no_grad():
        reference.model.layers[0].mlp.up_proj.weight[0, 1] = 0.0
        unlearned.model.layers[0].mlp.up_proj.weight[0, 1] = 1.5 * float(absmax) / 384
    out = edit_fates(reference, unlearned, "fp4", lr=1e-4)
    n = out["n_weights"]
    assert out["frac_codes_changed"] == pytest.approx(1 / n)  # the raw code changed (0 -> tiny level) ...
    assert out["frac_codes_changed_merged"] == 0  # ... but it stayed in the merged zero bin
    assert out["stayed in the zero bin"] == 1.0


def test_edit_fates_of_identical_models():
    model = tiny_llama()
    out = edit_fates(model, copy.deepcopy(model), "fp4", lr=2e-5)
    assert out["frac_changed"] == 0 and out["frac_codes_changed"] == 0
    assert all(pd.isna(out[f]) for f in FATES)


def test_edit_fates_threshold_share():
    reference = tiny_llama()
    unlearned = copy.deepcopy(reference)
    w = unlearned.model.layers[1].mlp.down_proj.weight
    with torch.no_grad():
        w.mul_(1.001)  # every weight changes
    small = float((reference.model.layers[1].mlp.down_proj.weight.abs() < bf16_threshold(1e-5)).float().mean())
    out = edit_fates(reference, unlearned, "rtn4", lr=1e-5)
    assert out["frac_below_bf16_threshold"] == pytest.approx(small)


def test_edit_fates_rejects_other_architectures():
    other = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=64, max_position_embeddings=32))
    with pytest.raises(ValueError, match="same architecture"):
        edit_fates(tiny_llama(), other, "rtn4", lr=1e-5)
    with pytest.raises(ValueError, match="quantizer='rtn5'"):
        edit_fates(tiny_llama(), tiny_llama(), "rtn5", lr=1e-5)


def test_edit_fates_table_rows():
    reference = tiny_llama()
    table = edit_fates_table(reference, {"A": _edited(reference), "B": copy.deepcopy(reference)}, ["rtn4", "nf4"], lr=1e-4)
    assert list(zip(table["method"], table["quantizer"])) == [("A", "rtn4"), ("A", "nf4"), ("B", "rtn4"), ("B", "nf4")]
    assert table.loc[2, "frac_changed"] == 0
    with pytest.raises(ValueError, match="models="):
        edit_fates_table(reference, {}, ["rtn4"], lr=1e-4)


def test_code_identity_grid_and_overall_identity():
    reference = tiny_llama()
    models = {"edited": _edited(reference), "same": copy.deepcopy(reference)}
    grid = code_identity_grid(reference, models, ["rtn4", "fp4"])
    assert {"method", "quantizer", "layer", "module_type", "frac_identical", "n_weights"} <= set(grid.columns)
    assert len(grid) == 2 * 2 * 14  # 2 layers x 7 Linears
    overall = overall_identity(grid)
    assert list(overall.index) == ["edited", "same"] and list(overall.columns) == ["rtn4", "fp4"]
    assert (overall.loc["same"] == 1.0).all()
    n = grid.loc[(grid["method"] == "edited") & (grid["quantizer"] == "rtn4"), "n_weights"].sum()
    assert overall.loc["edited", "rtn4"] == pytest.approx(1 - 1 / n)
    # FP4 with merged tiny levels can only be at least as identical as the raw codes
    fp4 = grid[grid["quantizer"] == "fp4"]
    assert (fp4["frac_identical"] >= fp4["frac_identical_raw"]).all()
    rtn = grid[grid["quantizer"] == "rtn4"]
    assert (rtn["frac_identical"] == rtn["frac_identical_raw"]).all()
    raw = code_identity_grid(reference, models, ["fp4"], merge_tiny_levels=False)
    assert (raw["frac_identical"] == raw["frac_identical_raw"]).all()
    with pytest.raises(ValueError, match="column='frac'"):
        overall_identity(grid, "frac")
    with pytest.raises(ValueError, match="grid is not accepted"):
        overall_identity(grid.drop(columns="n_weights"))


# ------------------------------------------------------------------ the fp32 LR search
def _result(forget, retain=0.9):
    return SimpleNamespace(history=pd.DataFrame({"step": [0, 900], "forget_acc": [1.0, forget], "retain_acc": [1.0, retain]}))


def test_final_metric():
    assert final_metric(_result(0.4)) == 0.4
    assert final_metric(_result(0.4, 0.8), "retain_acc") == 0.8
    with pytest.raises(ValueError, match="no history column 'x'"):
        final_metric(_result(0.4), "x")
    with pytest.raises(ValueError, match="no history column"):
        final_metric(SimpleNamespace())


def test_closest_lr():
    assert closest_lr({1e-6: 0.8, 2e-6: 0.45, 4e-6: 0.1}, 0.4) == 2e-6
    assert closest_lr({1e-6: 0.5, 2e-6: 0.3}, 0.4) == 1e-6  # a tie goes to the smaller learning rate
    with pytest.raises(ValueError, match="forget_by_lr is empty"):
        closest_lr({}, 0.4)
    with pytest.raises(ValueError, match="goal=1.5"):
        closest_lr({1e-6: 0.5}, 1.5)


class FakeUnlearn:
    """Stands in for unlearn_cached_result: forget accuracy falls with the learning rate; records the recipes."""

    def __init__(self, scale=4e-6):
        self.recipes, self.scale = [], scale

    def __call__(self, world, method, recipe, *, seed, cache_dir, progress, device):
        self.recipes.append(recipe)
        return _result(max(0.0, 1.0 - recipe.lr / self.scale))


def test_bracket_and_midpoint():
    assert bracket({1e-6: 0.75, 2e-6: 0.5, 4e-6: 0.0}, 0.4) == (2e-6, 4e-6)
    assert bracket({1e-6: 0.75, 2e-6: 0.5}, 0.4) is None  # nothing forgets enough yet
    assert bracket({1e-6: 0.3}, 0.4) is None
    assert geometric_midpoint(1e-6, 2e-6) == 1.4e-6
    with pytest.raises(ValueError, match="hi=1e-06"):
        geometric_midpoint(2e-6, 1e-6)


def test_match_fp32_lr_walks_up_then_refines():
    fake = FakeUnlearn()  # forget accuracy 1 - lr / 4e-6
    match = match_fp32_lr(None, "GA_GDR", 0.45, (4e-6, 1e-6, 2e-6, 8e-6), start=1e-6, unlearn_fn=fake, progress=False)
    tried = [r.lr for r in fake.recipes]
    assert tried == [1e-6, 2e-6, 4e-6, 2.8e-6]  # up until 4e-6 forgets enough, then the midpoint of (2e-6, 4e-6)
    assert all(r.precision == "fp32" and r.steps == UnlearnRecipe().steps for r in fake.recipes)
    assert match.lr == 2e-6  # 0.5 is closer to 0.45 than 0.3 (2.8e-6)
    assert list(match.table.columns) == ["lr", "forget_acc", "retain_acc", "gap", "chosen"]
    assert match.table["chosen"].sum() == 1 and match.table.loc[match.table["chosen"], "gap"].iloc[0] == pytest.approx(0.05)
    assert final_metric(match.result) == pytest.approx(0.5)


def test_match_fp32_lr_walks_down_and_can_skip_refinement():
    fake = FakeUnlearn(scale=1e-6)  # forgets fast: 1e-6 already forgets everything
    match = match_fp32_lr(None, "NPO_KLR", 0.4, (2.5e-7, 5e-7, 1e-6, 2e-6), start=1e-6, refine=0, unlearn_fn=fake,
                          recipe=UnlearnRecipe(steps=10))  # fmt: skip
    assert [r.lr for r in fake.recipes] == [1e-6, 5e-7]  # down until the forget accuracy is above the goal
    assert match.lr == 5e-7 and fake.recipes[0].steps == 10


def test_match_fp32_lr_runs_the_precision_asked_for():
    fake = FakeUnlearn()
    match_fp32_lr(None, "GA_GDR", 0.45, (1e-6, 2e-6, 4e-6), start=1e-6, refine=0, precision="mixed", unlearn_fn=fake)
    assert {r.precision for r in fake.recipes} == {"mixed"}
    with pytest.raises(ValueError, match="precision='bf16'"):
        match_fp32_lr(None, "GA_GDR", 0.45, precision="bf16", unlearn_fn=fake)


def test_match_fp32_lr_stops_at_the_end_of_the_list():
    fake = FakeUnlearn(scale=1.0)  # never forgets
    match = match_fp32_lr(None, "GA", 0.1, (1e-6, 2e-6), start=1e-6, unlearn_fn=fake)
    assert [r.lr for r in fake.recipes] == [1e-6, 2e-6] and match.lr == 2e-6


def test_match_fp32_lr_errors():
    fake = FakeUnlearn()
    with pytest.raises(ValueError, match="method='GAX'"):
        match_fp32_lr(None, "GAX", 0.5, unlearn_fn=fake)
    with pytest.raises(ValueError, match="candidates"):
        match_fp32_lr(None, "GA", 0.5, (), unlearn_fn=fake)
    with pytest.raises(ValueError, match="candidates=-1"):
        match_fp32_lr(None, "GA", 0.5, (-1.0,), unlearn_fn=fake)
    with pytest.raises(ValueError, match="refine=9"):
        match_fp32_lr(None, "GA", 0.5, refine=9, unlearn_fn=fake)
    with pytest.raises(ValueError, match="start=0"):
        match_fp32_lr(None, "GA", 0.5, start=0, unlearn_fn=fake)
    assert not fake.recipes


# ------------------------------------------------------------------ claims
def _results():
    rows = []
    table = {"target": (1.0, 1.0, 0.98, 1.0), "GA_GDR": (0.4, 0.42, 0.95, 0.3), "NPO_KLR": (0.2, 0.35, 0.80, 0.2)}
    for model, values in table.items():
        for precision, v in zip(("full", "rtn8", "rtn4", "nf4"), values):
            rows.append({"model": model, "precision": precision, "knowmem_forget_acc": v})
    return pd.DataFrame(rows)


def test_recovered_claims_hold_and_fail():
    claims = recovered_claims(_results(), ["GA_GDR", "NPO_KLR"], ["rtn4"])
    assert list(claims.columns) == list(CLAIM_COLUMNS)
    by = claims.set_index("model")
    assert by.loc["GA_GDR", "holds"] and by.loc["GA_GDR", "bound"] == pytest.approx(0.9 * 0.98)
    assert not by.loc["NPO_KLR", "holds"]  # 0.80 < 0.882
    assert not recovered_claims(_results(), ["GA_GDR"], ["nf4"])["holds"].any()


def test_unchanged_claims_hold_and_fail():
    claims = unchanged_claims(_results(), ["GA_GDR", "NPO_KLR"], ["rtn8", "rtn4"], tolerance=0.1)
    holds = claims.set_index(["model", "precision"])["holds"]
    assert holds[("GA_GDR", "rtn8")] and not holds[("NPO_KLR", "rtn8")]  # 0.02 vs 0.15 apart
    assert not holds[("GA_GDR", "rtn4")]
    assert claims["reference"].tolist() == [0.4, 0.4, 0.2, 0.2]


def test_claims_errors():
    with pytest.raises(ValueError, match="no row for model='GA'"):
        recovered_claims(_results(), ["GA"], ["rtn4"])
    with pytest.raises(ValueError, match="precision='fp4'"):
        unchanged_claims(_results(), ["GA_GDR"], ["fp4"])
    with pytest.raises(ValueError, match="results is not accepted"):
        recovered_claims(_results(), ["GA_GDR"], ["rtn4"], metric="privleak")
    with pytest.raises(ValueError, match="share=1.5"):
        recovered_claims(_results(), ["GA_GDR"], ["rtn4"], share=1.5)
    with pytest.raises(ValueError, match="tolerance=-0.1"):
        unchanged_claims(_results(), ["GA_GDR"], ["rtn4"], tolerance=-0.1)


# ------------------------------------------------------------------ value identity after any quantizer
def test_quantized_value_identity_matches_code_identity_for_rtn():
    reference = tiny_llama()
    unlearned = _edited(reference)
    grid = code_identity_grid(reference, {"edited": unlearned}, ["rtn4"])
    expected = float((grid["frac_identical_values"] * grid["n_weights"]).sum() / grid["n_weights"].sum())
    assert quantized_value_identity(reference, unlearned, "rtn4") == pytest.approx(expected)
    assert quantized_value_identity(reference, copy.deepcopy(reference), "nf4") == 1.0


def test_quantized_value_identity_with_calibration():
    reference = tiny_llama()
    calibration = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    same = quantized_value_identity(reference, copy.deepcopy(reference), "gptq4", calibration=calibration)
    assert same == 1.0  # deterministic: the same model lands on the same grid points
    with pytest.raises(ValueError, match="calibration=None"):
        quantized_value_identity(reference, reference, "gptq4")
    with pytest.raises(ValueError, match="unlearned=str"):
        quantized_value_identity(reference, "x", "rtn4")
