"""GPTQ: beats RTN on correlated inputs, equals RTN without correlations, stays on its grid."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils.quantization import QuantSpec, fake_quantize_model, get_quantizer, rtn_encode
from utils.gptq import (
    check_calibration_ids,
    gptq_quantize_model,
    gptq_quantize_weight,
    hessian,
    linear_groups_in_call_order,
    output_error,
    quantizable_linears,
    rtn_groups,
)


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, initializer_range=0.06)
    return LlamaForCausalLM(cfg).to(dtype).eval()


def correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 0.5 * torch.randn(n, 1, generator=g)


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ one weight
@pytest.mark.parametrize("scheme", ["minmax", "absmax"])
@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gptq_output_error_is_below_rtn_on_the_same_grid(scheme, bits, seed):
    x = correlated_inputs(512, 64, seed)
    w = torch.randn(24, 64, generator=torch.Generator().manual_seed(seed + 10))
    gptq = gptq_quantize_weight(w, hessian(x), bits=bits, group_size=16, scheme=scheme)
    rtn = rtn_groups(w, bits=bits, group_size=16, scheme=scheme)
    assert output_error(w, gptq.weight, x) < 0.9 * output_error(w, rtn.weight, x)


@pytest.mark.parametrize("scheme", ["minmax", "absmax"])
def test_gptq_equals_rtn_when_inputs_are_uncorrelated(scheme):
    w = torch.randn(16, 32)
    rtn = rtn_groups(w, bits=4, group_size=8, scheme=scheme).weight
    assert torch.allclose(gptq_quantize_weight(w, torch.eye(32), group_size=8, scheme=scheme).weight, rtn, atol=1e-6)
    # diagonal H with unequal variances: still no cross-column error feedback
    diag = torch.diag(torch.rand(32) * 5 + 0.1)
    assert torch.allclose(gptq_quantize_weight(w, diag, group_size=8, scheme=scheme).weight, rtn, atol=1e-6)


@pytest.mark.parametrize("scheme,qmin,qmax", [("minmax", 0, 15), ("absmax", -7, 7)])
def test_gptq_weights_lie_on_their_group_grid(scheme, qmin, qmax):
    w = torch.randn(8, 64)
    q = gptq_quantize_weight(w, hessian(correlated_inputs(256, 64, 3)), group_size=16, scheme=scheme)
    codes = q.codes
    assert codes.dtype == torch.int16 and codes.min() >= qmin and codes.max() <= qmax
    scale = q.scale.repeat_interleave(16, dim=1)
    zero = q.zero.repeat_interleave(16, dim=1)
    assert torch.allclose(q.weight, (codes - zero) * scale, atol=1e-6)
    # Q(Q(w)) = Q(w): unscaling puts every weight back on an integer code
    assert torch.allclose(q.weight / scale + zero, codes.float(), atol=1e-4)
    # ... and rounding the result again on the same grid changes nothing
    assert torch.equal(rtn_encode(q.weight, scale, zero, 4, scheme), codes)
    assert q.scale.shape == (8, 4)


@pytest.mark.parametrize("scheme", ["minmax", "absmax"])
def test_act_order_groups_columns_by_activation_and_stays_on_grid(scheme):
    x = correlated_inputs(512, 64, 7) * torch.linspace(0.1, 3.0, 64)
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(7))
    q = gptq_quantize_weight(w, hessian(x), group_size=16, scheme=scheme, act_order=True)
    assert torch.equal(torch.bincount(q.group_index), torch.full((4,), 16))
    most_active = torch.argsort(torch.diag(hessian(x)), descending=True)[:16]
    assert set(q.group_index[most_active].tolist()) == {0}  # the 16 most active columns form group 0
    assert torch.allclose(q.weight, (q.codes - q.zero_point_per_weight()) * q.step_per_weight(), atol=1e-6)
    assert output_error(w, q.weight, x) < output_error(w, rtn_groups(w, group_size=16, scheme=scheme).weight, x)


def test_gptq_keeps_dead_columns_and_raises_dampening_when_needed():
    w = torch.randn(4, 16)
    x = correlated_inputs(64, 16, 0)
    x[:, 3] = 0.0  # a channel that never fires
    q = gptq_quantize_weight(w, hessian(x), group_size=8)
    assert q.info["dead_columns"] == 1 and q.weight[:, 3].abs().sum() > 0
    singular = hessian(torch.randn(2, 16))  # rank 2
    assert gptq_quantize_weight(w, singular, group_size=8, damp=0.0).weight.isfinite().all()


# ------------------------------------------------------------------ whole model
def test_model_copy_is_quantized_and_original_untouched(calib):
    model = tiny_llama()
    before = copy.deepcopy(model.state_dict())
    qmodel = gptq_quantize_model(model, calib, group_size=16, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    qstate = qmodel.state_dict()
    assert torch.equal(qstate["lm_head.weight"], before["lm_head.weight"])
    assert torch.equal(qstate["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    for name, lin in quantizable_linears(qmodel).items():
        assert not torch.equal(lin.weight, before[name + ".weight"])
        groups = lin.weight.detach().reshape(lin.out_features, -1, 16)
        distinct = max(len(torch.unique(g)) for g in groups.reshape(-1, 16))
        assert distinct <= 16, name
    assert set(qmodel.quantization_info["layers"]) == set(quantizable_linears(model))


def test_model_gptq_beats_rtn_on_logits_and_keeps_dtype(calib):
    model = tiny_llama(dtype=torch.bfloat16)
    qmodel = gptq_quantize_model(model, calib, group_size=16, progress=False)
    rtn = copy.deepcopy(model)
    for lin in quantizable_linears(rtn).values():
        lin.weight.data = rtn_groups(lin.weight, group_size=16).weight.to(lin.weight.dtype)
    assert all(p.dtype == torch.bfloat16 for p in qmodel.parameters())
    with torch.no_grad():
        ref = model(calib).logits.float()
        err_gptq = ((qmodel(calib).logits.float() - ref) ** 2).mean()
        err_rtn = ((rtn(calib).logits.float() - ref) ** 2).mean()
    assert err_gptq < err_rtn


def test_linears_are_grouped_by_shared_input_in_call_order(calib):
    model = tiny_llama()
    ids, mask = check_calibration_ids(calib)
    groups = linear_groups_in_call_order(model, quantizable_linears(model), ids, mask)
    short = [[n.split(".")[-1] for n in g] for g in groups[:4]]
    assert short == [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]]
    assert len(groups) == 8 and groups[4][0].startswith("model.layers.1.")


def test_padding_is_excluded_by_the_attention_mask(calib):
    model = tiny_llama()
    padded = torch.cat([calib, torch.randint(0, 64, (calib.shape[0], 5))], dim=1)
    mask = torch.cat([torch.ones_like(calib), torch.zeros(calib.shape[0], 5, dtype=torch.long)], dim=1)
    a = gptq_quantize_model(model, calib, group_size=16, progress=False).state_dict()
    b = gptq_quantize_model(model, padded, group_size=16, attention_mask=mask, progress=False).state_dict()
    c = gptq_quantize_model(model, padded, group_size=16, progress=False).state_dict()
    differ = lambda s: sum(int(((s[k] - a[k]).abs() > 1e-4).sum()) for k in a) / sum(v.numel() for v in a.values())  # noqa: E731
    assert differ(b) < 0.01 < differ(c)


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("bits", [1, 9, 2.5, True])
def test_bad_bits_raise(bits, calib):
    with pytest.raises(ValueError, match="bits"):
        gptq_quantize_model(tiny_llama(), calib, bits=bits, group_size=16, progress=False)
    with pytest.raises(ValueError, match="bits"):
        gptq_quantize_weight(torch.randn(4, 8), torch.eye(8), bits=bits, group_size=8)


def test_group_size_that_does_not_divide_raises(calib):
    with pytest.raises(ValueError, match=r"group_size=24.*32.*1, 2, 4, 8, 16, 32"):
        gptq_quantize_model(tiny_llama(), calib, group_size=24, progress=False)
    with pytest.raises(ValueError, match="group_size=0"):
        gptq_quantize_weight(torch.randn(4, 8), torch.eye(8), group_size=0)


@pytest.mark.parametrize("ids", [torch.zeros(0, dtype=torch.long), torch.zeros(3, 0, dtype=torch.long), torch.rand(2, 4), [1, 2, 3]])
def test_empty_or_malformed_calibration_raises(ids):
    with pytest.raises(ValueError, match="calibration_ids"):
        gptq_quantize_model(tiny_llama(), ids, group_size=16, progress=False)


def test_other_bad_arguments_raise(calib):
    with pytest.raises(ValueError, match=r"scheme='nf4'.*'absmax', 'minmax'"):
        gptq_quantize_weight(torch.randn(4, 8), torch.eye(8), group_size=8, scheme="nf4")
    with pytest.raises(ValueError, match="damp"):
        gptq_quantize_weight(torch.randn(4, 8), torch.eye(8), group_size=8, damp=-0.1)
    with pytest.raises(ValueError, match="H with shape"):
        gptq_quantize_weight(torch.randn(4, 8), torch.eye(4), group_size=8)
    with pytest.raises(ValueError, match="attention_mask"):
        gptq_quantize_model(tiny_llama(), calib, group_size=16, attention_mask=torch.zeros_like(calib), progress=False)


# ------------------------------------------------------------------ utils.quantization plug-in
def test_registered_in_utils_quantization(calib):
    spec = get_quantizer("gptq4")
    assert (spec.method, spec.bits, spec.scheme, spec.group_size, spec.needs_calibration) == ("gptq", 4, "absmax", 64, True)
    model = tiny_llama()
    custom = QuantSpec("gptq4_g16", method="gptq", bits=4, scheme="minmax", group_size=16, needs_calibration=True,
                       options={"progress": False})
    via_registry = fake_quantize_model(model, custom, calibration=calib).state_dict()
    direct = gptq_quantize_model(model, calib, group_size=16, scheme="minmax", progress=False).state_dict()
    assert all(torch.equal(via_registry[k], direct[k]) for k in direct)
    with pytest.raises(ValueError, match="calibration=None"):
        fake_quantize_model(model, custom)
    with pytest.raises(ValueError, match="include_embeddings=True"):
        fake_quantize_model(model, custom, calibration=calib, include_embeddings=True)
    bad = QuantSpec("gptq_bad", method="gptq", group_size=16, needs_calibration=True, options={"dampening": 0.1})
    with pytest.raises(ValueError, match=r"option='dampening'.*'damp'"):
        fake_quantize_model(model, bad, calibration=calib)


def test_include_lm_head_quantizes_the_head(calib):
    model = tiny_llama()
    qmodel = gptq_quantize_model(model, calib, group_size=16, include_lm_head=True, progress=False)
    assert not torch.equal(qmodel.lm_head.weight, model.lm_head.weight)
    assert "lm_head" in qmodel.quantization_info["layers"]
