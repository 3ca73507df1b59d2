"""AWQ: alpha = 0 is RTN, the search never does worse than RTN, outputs stay on the scaled grid."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils.awq import _clip_search, _quantize_rows, activation_scale, awq_fake_quantize, awq_quantize_model, awq_quantize_weight, awq_scales
from utils.gptq import output_error, quantizable_linears, rtn_groups
from utils.quantization import QuantSpec, fake_quantize_model, get_quantizer


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, initializer_range=0.06)
    return LlamaForCausalLM(cfg).eval()


def outlier_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    """Inputs whose channels differ in magnitude by 100x (what makes activation-aware scaling pay)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.logspace(-1, 1, d)[torch.randperm(d, generator=g)]


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return torch.randint(0, 64, (16, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("scheme", ["minmax", "absmax"])
def test_alpha_zero_is_rtn(scheme):
    w, x = torch.randn(8, 32), outlier_inputs(64, 32, 0)
    rtn = rtn_groups(w, bits=4, group_size=8, scheme=scheme).weight
    assert torch.equal(awq_fake_quantize(w, activation_scale(x), 0.0, group_size=8, scheme=scheme), rtn)
    assert torch.equal(awq_scales(activation_scale(x), 0.0), torch.ones(32))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scheme", ["minmax", "absmax"])
def test_chosen_alpha_never_worse_than_rtn_and_helps_with_outliers(seed, scheme):
    w, x = torch.randn(16, 64, generator=torch.Generator().manual_seed(seed + 5)), outlier_inputs(256, 64, seed)
    q = awq_quantize_weight(w, x, group_size=16, n_grid=10, scheme=scheme, clip=False)
    losses = q.info["losses"]
    assert sorted(losses) == [k / 10 for k in range(11)]
    assert losses[q.info["alpha"]] == min(losses.values()) <= losses[0.0]
    rtn_loss = output_error(w, rtn_groups(w, group_size=16, scheme=scheme).weight, x)
    assert losses[0.0] == pytest.approx(rtn_loss, rel=1e-4)
    assert q.info["alpha"] > 0 and q.info["loss"] < 0.9 * rtn_loss
    assert q.info["loss"] == pytest.approx(losses[q.info["alpha"]], rel=1e-5)


@pytest.mark.parametrize("clip", [False, True])
def test_awq_weights_lie_on_the_scaled_grid(clip):
    w, x = torch.randn(8, 32), outlier_inputs(128, 32, 3)
    q = awq_quantize_weight(w, x, group_size=8, clip=clip)
    assert q.codes.dtype == torch.int16 and 0 <= q.codes.min() and q.codes.max() <= 15
    scale, zero = q.scale.repeat_interleave(8, 1), q.zero.repeat_interleave(8, 1)
    on_grid = (q.weight * q.info["s"]) / scale + zero  # unscale: integer codes again
    assert torch.allclose(on_grid, q.codes.float(), atol=1e-3)


def test_clipping_never_increases_a_groups_partial_output_error():
    w, x = torch.randn(6, 32), outlier_inputs(128, 32, 4)
    bound = _clip_search(w, x, bits=3, group_size=8, scheme="minmax", n_grid=20, max_shrink=0.5)
    full = w.abs().reshape(6, 4, 8).amax(-1)
    assert (bound <= full + 1e-7).all() and (bound < full).any()

    def group_error(b):
        wc = torch.maximum(torch.minimum(w, b.repeat_interleave(8, 1)), -b.repeat_interleave(8, 1))
        q = _quantize_rows(wc.reshape(-1, 8), 3, "minmax").reshape(6, 4, 8)
        xg = x.reshape(-1, 4, 8)
        return ((torch.einsum("ngk,rgk->rng", xg, q - w.reshape(6, 4, 8))) ** 2).mean(1)

    assert (group_error(bound) <= group_error(full) + 1e-6).all()


def test_model_copy_is_quantized_original_untouched_and_qk_not_clipped(calib):
    model = tiny_llama()
    before = copy.deepcopy(model.state_dict())
    qmodel = awq_quantize_model(model, calib, group_size=16, n_grid=10, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(qmodel.state_dict()["lm_head.weight"], before["lm_head.weight"])
    layers = qmodel.quantization_info["layers"]
    assert set(layers) == set(quantizable_linears(model))
    for name, info in layers.items():
        assert 0.0 <= info["alpha"] <= 1.0 and info["clipped"] == (name.split(".")[-1] not in ("q_proj", "k_proj"))
        assert not torch.equal(quantizable_linears(qmodel)[name].weight, before[name + ".weight"])
    assert all(info["loss"] <= info["rtn_loss"] * 1.05 for info in layers.values())
    with torch.no_grad():
        ref = model(calib).logits
        err_awq = ((qmodel(calib).logits - ref) ** 2).mean()
    rtn = copy.deepcopy(model)
    for lin in quantizable_linears(rtn).values():
        lin.weight.data = rtn_groups(lin.weight, group_size=16).weight
    with torch.no_grad():
        err_rtn = ((rtn(calib).logits - ref) ** 2).mean()
    assert err_awq < err_rtn


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": 1}, "bits=1"), ({"bits": 9}, "bits=9"), ({"group_size": 24}, r"group_size=24.*must divide"),
    ({"n_grid": 0}, "n_grid=0"), ({"scheme": "nf4"}, "scheme='nf4'"), ({"clip": "yes"}, "clip='yes'"),
])
def test_bad_arguments_raise(kwargs, match, calib):
    args = {"group_size": 16, "progress": False} | kwargs
    with pytest.raises(ValueError, match=match):
        awq_quantize_model(tiny_llama(), calib, **args)


@pytest.mark.parametrize("ids", [torch.zeros(0, dtype=torch.long), torch.rand(2, 4)])
def test_empty_calibration_raises(ids):
    with pytest.raises(ValueError, match="calibration_ids"):
        awq_quantize_model(tiny_llama(), ids, group_size=16, progress=False)
    with pytest.raises(ValueError, match="x with shape"):
        awq_quantize_weight(torch.randn(4, 8), torch.zeros(0, 8), group_size=8)


def test_registered_in_utils_quantization(calib):
    spec = get_quantizer("awq4")
    assert (spec.method, spec.bits, spec.scheme, spec.group_size, spec.needs_calibration) == ("awq", 4, "minmax", 64, True)
    model = tiny_llama()
    custom = QuantSpec("awq4_g16", method="awq", group_size=16, scheme="minmax", needs_calibration=True,
                       options={"n_grid": 5, "progress": False})
    via_registry = fake_quantize_model(model, custom, calibration=calib).state_dict()
    direct = awq_quantize_model(model, calib, group_size=16, n_grid=5, progress=False).state_dict()
    assert all(torch.equal(via_registry[k], direct[k]) for k in direct)
