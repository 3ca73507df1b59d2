"""Tests for utils.quantization: RTN grids, bitsandbytes fake-quant, registry, models, diagnostics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import utils.quantization as Q
from utils.quantization import (
    QUANTIZERS,
    QuantSpec,
    code_identity,
    delta_in_steps,
    fake_quantize_model,
    fake_quantize_weight,
    get_quantizer,
    load_quantized_pretrained,
    quantizable_modules,
    quantization_step,
    quantize_codes,
    register_model_quantizer,
    register_quantizer,
    rtn_decode,
    rtn_dequantize,
    rtn_encode,
    rtn_grid_params,
    rtn_quantize,
    rtn_spec,
    zero_bin_halfwidth,
)

bnbf = pytest.importorskip("bitsandbytes.functional")

BUILTIN = ["rtn8", "rtn4", "int8", "fp4", "nf4"]
HYP = settings(max_examples=40, deadline=None)


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, tie_word_embeddings=False)  # fmt: skip
    return LlamaForCausalLM(cfg).to(dtype).eval()


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def weights(rows: int = 8, cols: int = 128, seed: int = 0, scale: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * scale


# hypothesis: a weight matrix from a seed and a scale, with a shape that 16-groups divide
weight_st = st.builds(lambda rows, cols, seed, scale: weights(rows, cols * 16, seed, scale),
                      st.integers(1, 6), st.integers(1, 8), st.integers(0, 10_000), st.floats(1e-3, 300.0))  # fmt: skip
rtn_args_st = st.tuples(st.integers(2, 8), st.sampled_from(Q.SCHEMES), st.sampled_from(Q.GRANULARITIES))


# ------------------------------------------------------------------------------------------------ registry


def test_registry_has_the_five_named_quantizers():
    assert set(BUILTIN) <= set(QUANTIZERS)
    for name in BUILTIN:
        spec = get_quantizer(name)
        assert isinstance(spec, QuantSpec) and spec.name == name
    assert get_quantizer("rtn4") == QuantSpec("rtn4", "rtn", 4, "absmax", "group", 64)
    assert get_quantizer("rtn8").bits == 8 and get_quantizer("int8").granularity == "channel"
    assert get_quantizer("fp4").is_bitsandbytes and not get_quantizer("rtn4").is_bitsandbytes
    spec = rtn_spec(4, granularity="channel")
    assert get_quantizer(spec) is spec and spec.name == "rtn4_channel" and spec.group_size is None
    assert rtn_spec(3, "minmax", group_size=128).name == "rtn3_minmax_g128"
    assert "RTN 4-bit" in get_quantizer("rtn4").describe()
    assert {"rtn", "int8", "fp4", "nf4", "gptq", "awq"} <= set(Q.known_methods())
    assert not any(get_quantizer(n).is_plugin for n in BUILTIN)


def test_unknown_quantizer_lists_the_names():
    with pytest.raises(ValueError, match="quantizer='rtn5'.*'rtn8'.*'nf4'"):
        get_quantizer("rtn5")
    with pytest.raises(ValueError, match="quantizer="):
        get_quantizer(4)


def test_quantspec_is_frozen_and_hashable():
    spec = QuantSpec("x", options={"b": 1, "a": 2})
    assert spec.options == (("a", 2), ("b", 1))
    assert hash(spec) == hash(QuantSpec("x", options={"a": 2, "b": 1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.bits = 8


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"bits": 9}, "bits"),
        ({"bits": 1}, "bits"),
        ({"bits": 4.0}, "bits"),
        ({"method": "fp4", "bits": 3}, "bits"),
        ({"method": "nf4", "group_size": 100}, "group_size"),
        ({"method": "int8", "bits": 8, "granularity": "channel", "group_size": 64}, "group_size"),
        ({"method": "int8", "bits": 4, "granularity": "channel", "group_size": None}, "bits"),
        ({"method": "fp4", "scheme": "minmax"}, "scheme"),
        ({"scheme": "sym"}, "scheme"),
        ({"granularity": "row"}, "granularity"),
        ({"group_size": 0}, "group_size"),
        ({"granularity": "channel", "group_size": 64}, "group_size"),
        ({"method": "gptqx"}, "method"),
        ({"name": ""}, "name"),
        ({"options": [1, 2]}, "options"),
    ],
)
def test_quantspec_rejects_bad_fields(kwargs, param):
    fields = {"name": "bad", **kwargs}
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        QuantSpec(**fields)


@pytest.fixture
def toy_method():
    """Register a plug-in method 'toyq' (zeroes the Linear weights) and clean up afterwards."""
    calls = []

    def toy(model, spec, *, calibration, include_lm_head, include_embeddings):
        calls.append((spec.name, calibration, include_lm_head, include_embeddings))
        out = fake_quantize_model(model, "rtn8")
        with torch.no_grad():
            for _, mod in quantizable_modules(out, include_lm_head=include_lm_head):
                mod.weight.zero_()
        return out

    register_model_quantizer("toyq", toy)  # first the method, then specs that name it
    spec = QuantSpec("toy4", method="toyq", bits=4, scheme="minmax", needs_calibration=True, options={"damp": 0.01})
    register_model_quantizer("toyq", toy, specs=[spec])
    yield calls
    QUANTIZERS.pop("toy4", None)
    Q._MODEL_QUANTIZERS.pop("toyq", None)


def test_plugin_quantizer_dispatch(llama, toy_method):
    assert get_quantizer("toy4").method == "toyq" and get_quantizer("toy4").is_plugin and "toyq" in Q.known_methods()
    ids = torch.randint(0, 64, (2, 8))
    out = fake_quantize_model(llama, "toy4", calibration=ids)
    assert toy_method[0][0] == "toy4" and toy_method[0][1] is ids
    assert all(m.weight.abs().sum() == 0 for _, m in quantizable_modules(out))
    assert all(m.weight.abs().sum() > 0 for _, m in quantizable_modules(llama))
    with pytest.raises(ValueError, match="calibration"):
        fake_quantize_model(llama, "toy4")
    for fn in (quantize_codes, quantization_step, zero_bin_halfwidth, fake_quantize_weight):
        with pytest.raises(ValueError, match="quantizer='toy4'"):
            fn(weights(), "toy4")
    with pytest.raises(ValueError, match="quantizer='toy4'"):
        code_identity(llama, llama, "toy4")


def test_progress_reaches_a_plugin_that_takes_it_and_spares_one_that_does_not(llama, toy_method):
    ids = torch.randint(0, 64, (2, 8))
    fake_quantize_model(llama, "toy4", calibration=ids, progress=False)  # the toy plug-in has no ``progress``
    assert len(toy_method) == 1
    seen = []

    def with_progress(model, spec, *, calibration, include_lm_head, include_embeddings, progress=True):
        seen.append(progress)
        return model

    register_model_quantizer("toyq", with_progress)
    for progress in (None, False, True):
        fake_quantize_model(llama, "toy4", calibration=ids, progress=progress)
    assert seen == [True, False, True]  # None: the plug-in's own default


def test_register_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method='rtn'"):
        register_model_quantizer("rtn", lambda *a, **k: None)
    with pytest.raises(ValueError, match="method='Bad Name'"):
        register_model_quantizer("Bad Name", lambda *a, **k: None)
    with pytest.raises(ValueError, match="fn="):
        register_model_quantizer("newq", 3)
    with pytest.raises(ValueError, match="spec="):
        register_quantizer("rtn4")


def test_register_quantizer_adds_a_name():
    spec = register_quantizer(rtn_spec(6, granularity="channel"))
    try:
        assert get_quantizer("rtn6_channel") is spec
    finally:
        QUANTIZERS.pop("rtn6_channel")


def test_missing_plugin_module_is_a_clear_error(monkeypatch, llama):
    monkeypatch.setitem(Q._PLUGIN_MODULES, "ghostq", "utils._no_such_plugin")
    monkeypatch.setitem(Q._PLUGIN_NAMES, "ghost4", "ghostq")
    with pytest.raises(ValueError, match="utils._no_such_plugin"):
        get_quantizer("ghost4")
    spec = QuantSpec("ghost4", method="ghostq")  # a known plug-in method name is a valid spec
    with pytest.raises(ValueError, match="ghostq"):
        fake_quantize_model(llama, spec)


def test_known_but_unregistered_plugin_method_is_a_clear_error(monkeypatch, llama):
    monkeypatch.setitem(Q._PLUGIN_MODULES, "emptyq", "utils.validation")  # imports fine, registers nothing
    with pytest.raises(ValueError, match="no implementation is registered for method 'emptyq'"):
        fake_quantize_model(llama, QuantSpec("empty4", method="emptyq"))


# ------------------------------------------------------------------------------------------------ RTN


def test_paper_toy_steps():
    w = torch.tensor([[200.0, -50.0, 3.0, 0.4]])
    for bits, qmax in ((8, 127), (4, 7)):
        q = rtn_quantize(w, bits=bits, granularity="tensor")
        assert q.scales.item() == pytest.approx(200 / qmax)
        assert q.codes.tolist()[0][0] == qmax and q.codes.tolist()[0][3] == 0
    assert rtn_quantize(w, 4, granularity="tensor").codes.tolist() == [[7, -2, 0, 0]]


@HYP
@given(w=weight_st, args=rtn_args_st)
def test_rtn_error_is_at_most_half_a_step(w, args):
    bits, scheme, granularity = args
    q = rtn_quantize(w, bits, scheme, granularity, group_size=16)
    err = (rtn_dequantize(q) - w).abs()
    step = q.step_per_weight()
    assert (err <= step / 2 * (1 + 1e-5) + 1e-7 * w.abs().max()).all()
    assert q.codes.dtype == torch.int16 and q.codes.shape == w.shape
    lo, hi = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if scheme == "absmax" else (0, 2**bits - 1)
    assert q.codes.min() >= lo and q.codes.max() <= hi


@HYP
@given(w=weight_st, args=rtn_args_st)
def test_rtn_is_idempotent(w, args):
    bits, scheme, granularity = args
    q1 = rtn_quantize(w, bits, scheme, granularity, group_size=16)
    v1 = rtn_dequantize(q1)
    q2 = rtn_quantize(v1, bits, scheme, granularity, group_size=16)
    assert torch.equal(q1.codes, q2.codes)
    torch.testing.assert_close(rtn_dequantize(q2), v1, rtol=1e-6, atol=1e-6 * float(w.abs().max()))


@HYP
@given(w=weight_st, bits=st.integers(2, 8), frac=st.floats(-0.45, 0.45), seed=st.integers(0, 1000))
def test_a_nudge_inside_the_bin_keeps_the_code(w, bits, frac, seed):
    """Move one weight that is not its group's largest to another point of its own bin: same codes."""
    q = rtn_quantize(w, bits, "absmax", "group", 16)
    step = q.step_per_weight()
    g = torch.Generator().manual_seed(seed)
    i, j = int(torch.randint(w.shape[0], (1,), generator=g)), int(torch.randint(w.shape[1], (1,), generator=g))
    group = w[i, (j // 16) * 16:(j // 16 + 1) * 16].abs()
    if w[i, j].abs() >= group.max() or int(q.codes[i, j]).__abs__() >= 2 ** (bits - 1) - 1:
        return  # the largest weight sets the scale; the top code's bin is open-ended
    nudged = w.clone()
    nudged[i, j] = (q.codes[i, j].float() + frac) * step[i, j]  # a point strictly inside the bin
    assert torch.equal(rtn_quantize(nudged, bits, "absmax", "group", 16).codes, q.codes)


def test_minmax_represents_zero_and_handles_one_sided_groups():
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0], [-5.0, -1.0, 0.0, -2.0]])
    q = rtn_quantize(w, bits=4, scheme="minmax", granularity="channel")
    v = rtn_dequantize(q)
    assert v[0, 0] == 0 and v[1, 2] == 0
    assert (v - w).abs().max() <= q.scales.max() / 2 + 1e-6
    assert q.zeros.tolist() == [[0], [15]]


def test_all_zero_group_dequantizes_to_zero():
    w = torch.zeros(2, 32)
    w[1, :16] = torch.linspace(-1, 1, 16)
    for scheme in Q.SCHEMES:
        q = rtn_quantize(w, 4, scheme, "group", 16)
        assert torch.equal(rtn_dequantize(q)[0], torch.zeros(32)) and q.scales[0, 0] == 1


def test_grid_helpers_match_rtn_quantize():
    w = weights(4, 64)
    scale, zero = rtn_grid_params(w.reshape(4, 4, 16), bits=3, scheme="minmax")
    codes = rtn_encode(w.reshape(4, 4, 16), scale, zero, bits=3, scheme="minmax")
    q = rtn_quantize(w, 3, "minmax", "group", 16)
    assert torch.equal(codes.reshape(4, 64), q.codes)
    assert torch.equal(rtn_decode(codes, scale, zero).reshape(4, 64), rtn_dequantize(q))


def test_granularities_have_the_expected_scale_shapes():
    w = weights(4, 64)
    assert rtn_quantize(w, granularity="tensor").scales.shape == (1, 1)
    assert rtn_quantize(w, granularity="channel").scales.shape == (4, 1)
    assert rtn_quantize(w, granularity="group", group_size=16).scales.shape == (4, 4)
    one_d = rtn_quantize(torch.linspace(-1, 1, 32), bits=4, granularity="group", group_size=16)
    assert one_d.codes.shape == (32,) and rtn_dequantize(one_d).shape == (32,)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"bits": 1}, "bits"),
        ({"bits": 9}, "bits"),
        ({"bits": True}, "bits"),
        ({"scheme": "sym"}, "scheme"),
        ({"granularity": "block"}, "granularity"),
        ({"group_size": 48}, "group_size"),
        ({"group_size": 0}, "group_size"),
        ({"group_size": "64"}, "group_size"),
    ],
)
def test_rtn_quantize_rejects_bad_arguments(kwargs, param):
    with pytest.raises(ValueError, match=rf"\b{param}="):
        rtn_quantize(weights(2, 64), **kwargs)


@pytest.mark.parametrize("bad", [[1.0, 2.0], torch.ones(2, 4, dtype=torch.int64), torch.empty(0, 4),
                                 torch.tensor(3.0), torch.tensor([[1.0, float("nan")]])])  # fmt: skip
def test_bad_weights_are_rejected(bad):
    with pytest.raises(ValueError, match=r"\bw\b"):
        rtn_quantize(bad, granularity="tensor")
    with pytest.raises(ValueError, match=r"\bw\b"):
        quantize_codes(bad, "nf4")


def test_helper_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="q="):
        rtn_dequantize(torch.ones(3))
    with pytest.raises(ValueError, match="bits="):
        rtn_grid_params(torch.ones(3), bits=10)
    with pytest.raises(ValueError, match="scheme="):
        rtn_encode(torch.ones(3), torch.ones(1), torch.zeros(1), scheme="x")
    with pytest.raises(ValueError, match="merge_tiny_levels="):
        zero_bin_halfwidth(weights(), "fp4", merge_tiny_levels="yes")
    with pytest.raises(ValueError, match=r"\bw\b.*even"):
        fake_quantize_weight(torch.ones(3, 5), "fp4")
    with pytest.raises(ValueError, match="w_new"):
        delta_in_steps(weights(2, 64), weights(4, 64), "rtn4")
    with pytest.raises(ValueError, match="w_ref"):
        delta_in_steps(weights(2, 64), "x", "rtn4")


# ------------------------------------------------------------------------------------------------ bitsandbytes


def test_levels_are_bitsandbytes_code_books():
    assert torch.equal(torch.tensor(Q.FP4_LEVELS), bnbf.get_4bit_type("fp4", device="cpu"))
    assert torch.equal(torch.tensor(Q.NF4_LEVELS), bnbf.get_4bit_type("nf4", device="cpu"))


@pytest.mark.parametrize("method", ["fp4", "nf4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(8, 128), (3, 50), (64,)])
def test_4bit_fake_quant_equals_bitsandbytes(method, dtype, shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1)).mul(0.05).to(dtype)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type=method)
    ours = fake_quantize_weight(w, method)
    assert ours.dtype == dtype and ours.shape == w.shape
    assert torch.equal(ours, bnbf.dequantize_4bit(packed, state).reshape(shape))  # bnb returns (1, n) for 1-D


def test_int8_fake_quant_equals_bitsandbytes_int8params():
    w = weights(16, 96)
    codes, row_absmax, _ = bnbf.int8_vectorwise_quant(w.half())
    assert torch.equal(fake_quantize_weight(w, "int8"), bnbf.int8_vectorwise_dequant(codes, row_absmax))
    assert torch.equal(quantize_codes(w, "int8"), codes.to(torch.int16))
    w[3] = 0  # an all-zero row (bitsandbytes would divide by zero): codes and values 0
    assert quantize_codes(w, "int8")[3].abs().sum() == 0 and fake_quantize_weight(w, "int8")[3].abs().sum() == 0


@pytest.mark.parametrize("method, lo, hi", [("fp4", -7, 7), ("nf4", -7, 8)])
def test_4bit_codes_index_the_distinct_levels(method, lo, hi):
    w = weights(8, 128)
    codes = quantize_codes(w, method)
    assert codes.min() >= lo and codes.max() <= hi and codes.dtype == torch.int16
    distinct = torch.unique(torch.tensor(Q.FP4_LEVELS if method == "fp4" else Q.NF4_LEVELS))
    absmax = w.reshape(-1, 64).abs().amax(1).repeat_interleave(64).reshape(w.shape)
    rebuilt = distinct[codes.long() - lo] * absmax
    torch.testing.assert_close(rebuilt, fake_quantize_weight(w, method), rtol=0, atol=1e-7)
    assert (codes[fake_quantize_weight(w, method) == 0] == 0).all()


def test_fp4_plus_and_minus_zero_share_code_zero():
    w = weights(1, 64)
    w[0, 5], w[0, 6] = 1e-6, -1e-6
    codes = quantize_codes(w, "fp4")
    assert codes[0, 5] == 0 and codes[0, 6] == 0


@pytest.mark.parametrize("low, high", [("rtn4", "rtn8"), ("fp4", "int8"), ("nf4", "int8"), ("rtn4", "int8")])
def test_8bit_error_is_far_below_4bit(low, high):
    w = weights(32, 256)
    err_low = (fake_quantize_weight(w, low) - w).abs().mean()
    err_high = (fake_quantize_weight(w, high) - w).abs().mean()
    assert err_high < err_low / 8


# ------------------------------------------------------------------------------------------------ diagnostics


@pytest.mark.parametrize("name", BUILTIN)
def test_error_is_at_most_half_the_local_step(name):
    w = torch.cat([weights(8, 128), weights(2, 128, seed=3) * 1e-3])
    err = (fake_quantize_weight(w, name) - w).abs()
    step = quantization_step(w, name)
    assert step.shape == w.shape and (step > 0).all()
    cast = (w.half().float() - w).abs() if name == "int8" else 0  # LLM.int8 rounds the weight to fp16 first
    assert (err <= step / 2 * (1 + 1e-4) + cast + 1e-9).all()


def test_rtn_step_is_the_group_scale_and_int8_step_is_row_absmax_over_127():
    w = weights(4, 128)
    q = rtn_quantize(w, 4, "absmax", "group", 64)
    assert torch.equal(quantization_step(w, "rtn4"), q.step_per_weight())
    assert quantization_step(w, "rtn4")[0, 0] == pytest.approx(float(w[0, :64].abs().max() / 7))
    row = w.half().float().abs().amax(1, keepdim=True) / 127
    torch.testing.assert_close(quantization_step(w, "int8"), row.expand_as(w))


@pytest.mark.parametrize("method", ["fp4", "nf4"])
def test_4bit_step_is_the_gap_of_the_bracketing_levels(method):
    levels = torch.unique(torch.tensor(Q.FP4_LEVELS if method == "fp4" else Q.NF4_LEVELS)).tolist()
    x = torch.tensor([[1.0, 0.3, -0.3, 0.01, -0.01, 0.0] + [0.0] * 58])  # absmax of the block is 1
    step = quantization_step(x, method)[0, :6].tolist()
    for value, got in zip(x[0, :6].tolist(), step):
        k = max(i for i, lv in enumerate(levels[:-1]) if lv <= value)
        assert got == pytest.approx(levels[k + 1] - levels[k])


def test_delta_in_steps():
    w = weights(4, 128)
    step = quantization_step(w, "rtn4")
    new = w + 0.25 * step
    torch.testing.assert_close(delta_in_steps(new, w, "rtn4"), torch.full_like(w, 0.25))
    assert delta_in_steps(w, w, "nf4").abs().max() == 0


@pytest.mark.parametrize("name", BUILTIN)
def test_zero_bin_halfwidth_separates_weights_rounded_to_zero(name):
    w = torch.cat([weights(8, 128), weights(4, 128, seed=5) * 0.05])  # many small weights
    half = zero_bin_halfwidth(w, name, merge_tiny_levels=False)
    value = fake_quantize_weight(w, name)
    inside, outside = w.abs() < half * (1 - 1e-5), w.abs() > half * (1 + 1e-5)
    assert inside.any() and outside.any()
    assert (value[inside] == 0).all() and (value[outside] != 0).all()


def test_zero_bin_halfwidth_values():
    x = torch.tensor([[1.0, 0.02, -0.02] + [0.0] * 61])
    assert zero_bin_halfwidth(x, "rtn4")[0, 1].item() == pytest.approx(1 / 14)
    assert zero_bin_halfwidth(x, "rtn8")[0, 1].item() == pytest.approx(1 / 254)
    nf4 = zero_bin_halfwidth(x, "nf4")[0]
    assert nf4[1].item() == pytest.approx(Q.NF4_LEVELS[8] / 2) and nf4[2].item() == pytest.approx(-Q.NF4_LEVELS[6] / 2)
    assert zero_bin_halfwidth(x, "fp4")[0, 1].item() == pytest.approx((1 / 192 + 1 / 6) / 2)
    assert zero_bin_halfwidth(x, "fp4", merge_tiny_levels=False)[0, 1].item() == pytest.approx(1 / 384)
    merged = zero_bin_halfwidth(weights(4, 128), "fp4")
    w = weights(4, 128)
    inside = w.abs() < merged * (1 - 1e-5)
    absmax = w.reshape(-1, 64).abs().amax(1).repeat_interleave(64).reshape(w.shape)
    assert (fake_quantize_weight(w, "fp4")[inside].abs() <= absmax[inside] / 192 * (1 + 1e-6)).all()


# ------------------------------------------------------------------------------------------------ models


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", BUILTIN)
def test_fake_quantize_model_replaces_every_linear_and_leaves_the_original(llama, name):
    before = _state(llama)
    out = fake_quantize_model(llama, name)
    assert out is not llama
    for k, v in llama.state_dict().items():
        assert torch.equal(v, before[k]), f"original changed: {k}"
    linears = [n for n, m in llama.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]
    assert len(linears) == 14
    for n in linears:
        expected = fake_quantize_weight(llama.get_submodule(n).weight, name)
        assert torch.equal(out.get_submodule(n).weight, expected), n
    assert torch.equal(out.lm_head.weight, llama.lm_head.weight)
    assert torch.equal(out.model.embed_tokens.weight, llama.model.embed_tokens.weight)
    assert torch.equal(out.model.norm.weight, llama.model.norm.weight)


def test_fake_quantize_model_head_embeddings_and_dtype():
    model = tiny_llama(dtype=torch.bfloat16)
    out = fake_quantize_model(model, "nf4", include_lm_head=True, include_embeddings=True)
    assert out.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(out.lm_head.weight, fake_quantize_weight(model.lm_head.weight, "nf4"))
    assert torch.equal(out.model.embed_tokens.weight, fake_quantize_weight(model.model.embed_tokens.weight, "nf4"))
    names = [n for n, _ in quantizable_modules(model, include_lm_head=True, include_embeddings=True)]
    assert names[0] == "model.embed_tokens" and names[-1] == "lm_head"


@pytest.mark.parametrize("name", ["rtn4", "fp4", "nf4", "int8"])
def test_fake_quantize_model_is_idempotent(llama, name):
    once = fake_quantize_model(llama, name)
    twice = fake_quantize_model(once, name)
    for n, m in quantizable_modules(once):
        torch.testing.assert_close(twice.get_submodule(n).weight, m.weight, rtol=1e-6, atol=1e-8)


def test_tied_weights_are_quantized_once():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=64, tie_word_embeddings=True))  # fmt: skip
    out = fake_quantize_model(model, "rtn4", include_lm_head=True)
    assert out.lm_head.weight is out.model.embed_tokens.weight
    assert torch.equal(out.lm_head.weight, fake_quantize_weight(model.lm_head.weight, "rtn4"))


@pytest.mark.parametrize(
    "kwargs, param",
    [({"include_lm_head": "yes"}, "include_lm_head"), ({"include_embeddings": 1.5}, "include_embeddings"),
     ({"calibration": torch.ones(3)}, "calibration"), ({"progress": "x"}, "progress"), ({"quantizer": "q4"}, "quantizer")],
)  # fmt: skip
def test_fake_quantize_model_rejects_bad_arguments(llama, kwargs, param):
    args = {"quantizer": "rtn4", **kwargs}
    with pytest.raises(ValueError, match=rf"\b{param}="):
        fake_quantize_model(llama, **args)
    with pytest.raises(ValueError, match="model="):
        fake_quantize_model("a model", "rtn4")


def test_group_that_does_not_divide_a_layer_names_group_size():
    model = nn.Sequential(nn.Linear(48, 8, bias=False))
    with pytest.raises(ValueError, match="group_size=64.*48"):
        fake_quantize_model(model, "rtn4")
    out = fake_quantize_model(model, rtn_spec(4, granularity="channel"))
    assert not torch.equal(out[0].weight, model[0].weight)


# ------------------------------------------------------------------------------------------------ code identity


def test_code_identity_of_a_model_with_itself(llama):
    df = code_identity(llama, llama, "rtn4")
    assert list(df.columns) == ["module", "layer", "module_type", "n_weights", "frac_identical", "frac_identical_values"]
    assert len(df) == 14 and (df["frac_identical"] == 1).all() and (df["frac_identical_values"] == 1).all()
    assert df["layer"].tolist() == [0] * 7 + [1] * 7
    assert set(df["module_type"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert df.set_index("module").loc["model.layers.1.mlp.down_proj", "n_weights"] == 64 * 128


@pytest.mark.parametrize("name", ["rtn4", "nf4", "fp4", "int8", "rtn8"])
def test_code_identity_counts_exactly_the_changed_codes(llama, name):
    edited = tiny_llama()
    target = "model.layers.1.self_attn.v_proj"
    w = edited.get_submodule(target).weight
    codes = quantize_codes(w, name)
    with torch.no_grad():  # move two weights that are neither zero-coded nor a block's largest to 0
        moved = 0
        for idx in (codes.abs() >= 2).nonzero().tolist():
            i, j = idx
            block = w.reshape(-1, 64) if get_quantizer(name).method in ("fp4", "nf4") else None
            row_max = w[i].abs().max() if block is None else block[(i * w.shape[1] + j) // 64].abs().max()
            if w[i, j].abs() < row_max:
                w[i, j] = 0.0
                moved += 1
            if moved == 2:
                break
    df = code_identity(llama, edited, name).set_index("module")
    assert df.loc[target, "frac_identical"] == pytest.approx(1 - 2 / w.numel())
    assert df.drop(index=target)["frac_identical"].eq(1).all()


def test_code_identity_rejects_different_architectures(llama):
    other = nn.Sequential(nn.Linear(64, 64))
    with pytest.raises(ValueError, match="model_a and model_b"):
        code_identity(llama, other, "rtn4")
    with pytest.raises(ValueError, match="model_b="):
        code_identity(llama, None, "rtn4")


# ------------------------------------------------------------------------------------------------ bitsandbytes round trip


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory, llama):
    folder = tmp_path_factory.mktemp("tiny_llama")
    llama.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name, layer_type", [("fp4", "Linear4bit"), ("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_load_quantized_pretrained_agrees_with_fake_quant(saved_llama, llama, name, layer_type):
    loaded = load_quantized_pretrained(saved_llama, name, device_map="cpu")
    fake = fake_quantize_model(llama, name)
    n_checked = 0
    for n, m in quantizable_modules(loaded):
        assert type(m).__name__ == layer_type, n
        if name == "int8":
            deq = bnbf.int8_vectorwise_dequant(m.weight.data, m.weight.SCB)
        else:
            deq = bnbf.dequantize_4bit(m.weight.data, m.weight.quant_state)
        assert torch.equal(deq.to(torch.float32), fake.get_submodule(n).weight), n
        n_checked += 1
    assert n_checked == 14
    assert type(loaded.lm_head).__name__ == "Linear"


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16"])
def test_load_quantized_pretrained_bf16(tmp_path, dtype):
    model = tiny_llama(seed=2, dtype=torch.bfloat16)
    model.save_pretrained(tmp_path)
    loaded = load_quantized_pretrained(tmp_path, "nf4", dtype=dtype)
    fake = fake_quantize_model(model, "nf4")
    for n, m in quantizable_modules(loaded):
        assert torch.equal(bnbf.dequantize_4bit(m.weight.data, m.weight.quant_state), fake.get_submodule(n).weight), n


@pytest.mark.parametrize(
    "quantizer, param",
    [("rtn4", "quantizer"), ("q4", "quantizer"), (QuantSpec("fp4_b128", "fp4", 4, group_size=128), "group_size")],
)
def test_load_quantized_pretrained_rejects_bad_quantizers(saved_llama, quantizer, param):
    with pytest.raises(ValueError, match=rf"\b{param}="):
        load_quantized_pretrained(saved_llama, quantizer)


def test_load_quantized_pretrained_rejects_three_bits_and_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="bits=3"):
        load_quantized_pretrained(tmp_path, QuantSpec("fp3", "fp4", bits=3))
    with pytest.raises(ValueError, match="path="):
        load_quantized_pretrained(tmp_path / "missing", "nf4")
    with pytest.raises(ValueError, match="dtype="):
        load_quantized_pretrained(tmp_path, "nf4", dtype="int8")
    with pytest.raises(ValueError, match="dtype="):
        load_quantized_pretrained(tmp_path, "nf4", dtype=torch.int8)
