"""Tests for utils.toy, notebook 01's toy network: it memorizes, forgets, and bf16 forgetting hides in the
4-bit zero bin.

The expensive objects (the trained target at the notebook's seed 0 and its two unlearned copies) are built
once per module; everything else runs on small networks. One torch thread, as in the notebook.
"""

from __future__ import annotations

import copy
import re
import types

import pandas as pd
import pytest
import torch
from torch import nn

from utils import toy as T
from utils.mechanism import flat_edit
from utils.quantization import fake_quantize_model, quantizable_modules, quantization_step, zero_bin_halfwidth
from utils.validation import UQError

#: a small toy (rows of 64 weights, so that the 4-bit groups of 64 fit) for the fast tests
SMALL = dict(n_points=4, dim=64)


#: one thread (tests/conftest.py): the notebook's setting (same float sums), and the machine is shared
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    """The notebook's section 4 at seed 0: points, trained target, and the fp32 and bf16 unlearned copies."""
    x, y = T.make_points(0)
    target = T.train_memorizer(T.make_mlp(0), x, y)
    fp32, steps_fp32 = T.forget_by_gradient_ascent(target, x, y, torch.float32)
    bf16, steps_bf16 = T.forget_by_gradient_ascent(target, x, y, torch.bfloat16)
    return types.SimpleNamespace(x=x, y=y, target=target, fp32=fp32, bf16=bf16, steps_fp32=steps_fp32, steps_bf16=steps_bf16)


def small_net(seed: int = 0) -> nn.Sequential:
    return T.make_mlp(seed, hidden=64, **SMALL)


def assert_one_clear_error(call, names: str) -> str:
    """``call()`` raises a one-line UQError that names ``names`` and states the accepted values."""
    with pytest.raises(UQError) as info:
        call()
    message = str(info.value)
    assert re.search(names, message), f"the message does not name {names!r}: {message}"
    assert re.search(r"accepted values|must be", message), f"no accepted values in: {message}"
    assert "\n" not in message.strip()
    return message


# ---------------------------------------------------------------------------------------------- data


def test_make_points_shapes_and_labels():
    x, y = T.make_points(0)
    assert x.shape == (T.N_POINTS, T.DIM) and x.dtype == torch.float32
    assert y.tolist() == list(range(T.N_POINTS)) and y.dtype == torch.int64
    x2, y2 = T.make_points(3, n_points=5, dim=7)
    assert x2.shape == (5, 7) and y2.tolist() == [0, 1, 2, 3, 4]


def test_make_points_is_seeded_not_global():
    torch.manual_seed(123)
    a, _ = T.make_points(0)
    torch.manual_seed(456)
    b, _ = T.make_points(0)
    c, _ = T.make_points(1)
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------------------------- model


def test_make_mlp_architecture():
    net = T.make_mlp(0)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(T.HIDDEN, T.DIM), (T.HIDDEN, T.HIDDEN), (T.N_POINTS, T.HIDDEN)]
    assert all(m.bias is None for m in linears) and sum(isinstance(m, nn.ReLU) for m in net) == 2
    assert all(p.dtype == torch.float32 for p in net.parameters())
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert abs(w.std().item() - T.INIT_STD) < 0.005 and abs(w.mean().item()) < 0.005
    assert T.make_mlp(0, init_std=0.06).state_dict()["0.weight"].std().item() == pytest.approx(0.06, abs=0.002)


def test_make_mlp_is_deterministic_and_independent_of_points():
    torch.manual_seed(1)
    a = small_net(0)
    torch.manual_seed(2)
    b = small_net(0)
    c = small_net(1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a[0].weight, c[0].weight)
    # seeded with seed + 1: the first weights are not the points' first inputs scaled
    x, _ = T.make_points(0, **SMALL)
    assert not torch.allclose(a[0].weight.reshape(-1)[:64] / T.INIT_STD, x.reshape(-1)[:64])


def test_train_memorizer_memorizes(toy):
    p = T.p_true(toy.target, toy.x, toy.y)
    assert p.shape == (T.N_POINTS,)
    # label smoothing 0.2 over 8 classes caps p(true class) at 1 - 0.2 + 0.2/8 = 0.825
    assert torch.allclose(p, torch.full_like(p, 0.825), atol=2e-3)
    assert not toy.target.training
    with torch.no_grad():
        assert toy.target(toy.x).argmax(-1).tolist() == toy.y.tolist()


def test_train_memorizer_trains_in_place_and_is_deterministic():
    x, y = T.make_points(0, **SMALL)
    net = small_net(0)
    before = net[0].weight.detach().clone()
    trained = T.train_memorizer(net, x, y, steps=30)
    assert trained is net and not torch.equal(before, net[0].weight)
    again = T.train_memorizer(small_net(0), x, y, steps=30)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters(), strict=True))
    assert torch.equal(T.train_memorizer(small_net(0), x, y, steps=0)[0].weight, before)


def test_p_true_matches_softmax_and_leaves_model_alone():
    x, y = T.make_points(0, **SMALL)
    net = small_net(0).to(torch.bfloat16)
    p = T.p_true(net, x, y)
    expected = torch.softmax(small_net(0).to(torch.bfloat16).float()(x), dim=-1).gather(1, y[:, None]).squeeze(1)
    assert p.dtype == torch.float32 and not p.requires_grad
    assert torch.allclose(p, expected)
    assert all(q.dtype == torch.bfloat16 for q in net.parameters())  # computed on an fp32 copy
    assert torch.allclose(T.p_true(net, x[1:3], y[1:3]), p[1:3])


# ---------------------------------------------------------------------------------------- forgetting


def test_forgetting_stops_below_the_threshold_in_the_requested_dtype(toy):
    for model, steps, dtype in ((toy.fp32, toy.steps_fp32, torch.float32), (toy.bf16, toy.steps_bf16, torch.bfloat16)):
        assert 0 < steps < T.MAX_FORGET_STEPS
        assert all(p.dtype == dtype for p in model.parameters()) and not model.training
        p = T.p_true(model, toy.x, toy.y)
        assert p[T.FORGET] < T.FORGOTTEN_BELOW
        assert torch.cat([p[: T.FORGET], p[T.FORGET + 1 :]]).mean() > 0.8  # the others are barely touched
    assert toy.steps_bf16 > toy.steps_fp32  # bf16 rounds most updates away: it needs more steps
    assert all(p.dtype == torch.float32 for p in toy.target.parameters())  # the target is untouched
    assert torch.allclose(T.p_true(toy.target, toy.x, toy.y), torch.full((T.N_POINTS,), 0.825), atol=2e-3)


def test_forgetting_stops_at_the_first_step_below_the_threshold(toy):
    short, steps = T.forget_by_gradient_ascent(toy.target, toy.x, toy.y, torch.float32, max_steps=toy.steps_fp32 - 1)
    assert steps == toy.steps_fp32 - 1  # budget exhausted: returns max_steps
    assert T.p_true(short, toy.x, toy.y)[T.FORGET] >= T.FORGOTTEN_BELOW
    at_once, steps = T.forget_by_gradient_ascent(toy.target, toy.x, toy.y, torch.bfloat16, forgotten_below=1.0)
    assert steps == 0
    assert all(torch.equal(a, b.to(torch.bfloat16)) for a, b in zip(at_once.parameters(), toy.target.parameters(), strict=True))


def test_forgetting_is_deterministic_and_respects_forget_and_lr():
    x, y = T.make_points(0, **SMALL)
    net = T.train_memorizer(small_net(0), x, y, steps=100)
    a, na = T.forget_by_gradient_ascent(net, x, y, torch.float32, lr=1e-2, forget=2, max_steps=40)
    b, nb = T.forget_by_gradient_ascent(net, x, y, torch.float32, lr=1e-2, forget=2, max_steps=40)
    assert na == nb and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    p = T.p_true(a, x, y)
    assert na < 40 and p[2] < T.FORGOTTEN_BELOW and p[2] == p.min()
    c, nc = T.forget_by_gradient_ascent(net, x, y, torch.float32, lr=2e-2, forget=2, max_steps=40)
    assert nc <= na and not torch.equal(a[0].weight, c[0].weight)


# ---------------------------------------------------------------------------------------- evaluation


def test_evaluate_table(toy):
    models = {"target": toy.target, "forgot in bf16": toy.bf16}
    df = T.evaluate(models, toy.x, toy.y)
    assert list(df.columns) == ["model", "quantizer", "p(forget point)", "mean p(other points)", "forget point predicted"]
    assert list(zip(df["model"], df["quantizer"])) == [(m, q) for m in models for q in T.QUANTIZERS]
    by = df.set_index(["model", "quantizer"])
    assert by.loc[("target", "none"), "p(forget point)"] == pytest.approx(T.p_true(toy.target, toy.x, toy.y)[0].item())
    q4 = fake_quantize_model(toy.bf16, "rtn4")
    assert by.loc[("forgot in bf16", "rtn4"), "p(forget point)"] == pytest.approx(T.p_true(q4, toy.x, toy.y)[0].item())
    assert df["forget point predicted"].dtype == bool
    # the notebook's point: forgotten in full precision and at 8 bits, remembered again after 4-bit rounding
    assert not by.loc[("forgot in bf16", "none"), "forget point predicted"]
    assert not by.loc[("forgot in bf16", "rtn8"), "forget point predicted"]
    assert by.loc[("forgot in bf16", "rtn4"), "forget point predicted"]
    assert abs(by.loc[("forgot in bf16", "rtn4"), "p(forget point)"] - by.loc[("target", "rtn4"), "p(forget point)"]) < 0.1


def test_evaluate_other_forget_point_and_quantizers():
    x, y = T.make_points(0, **SMALL)
    net = T.train_memorizer(small_net(0), x, y, steps=100)
    df = T.evaluate({"net": net}, x, y, quantizers=["rtn4"], forget=3)
    p = T.p_true(fake_quantize_model(net, "rtn4"), x, y)
    assert len(df) == 1 and df.loc[0, "p(forget point)"] == pytest.approx(p[3].item())
    assert df.loc[0, "mean p(other points)"] == pytest.approx(p[:3].mean().item())
    assert isinstance(df, pd.DataFrame)


# ---------------------------------------------------------------------------- why: the moved weights


def test_flat_edit_lists_the_toy_weights_steps_and_zero_bins_in_the_same_order():
    a, b = small_net(0), small_net(1)
    edit = flat_edit(a, b, "rtn4")
    ra, rb, steps, half = edit["w_ref"], edit["w_new"], edit["step"], edit["halfwidth"]
    n = 64 * 64 + 64 * 64 + 4 * 64
    assert ra.shape == rb.shape == (n,) and ra.dtype == rb.dtype == torch.float32
    assert torch.equal(ra[: 64 * 64], a[0].weight.detach().reshape(-1)) and torch.equal(rb[-4 * 64 :], b[4].weight.detach().reshape(-1))
    assert torch.equal(flat_edit(a, a, "rtn4")["w_new"], ra)
    w = [m.weight.detach().float() for _, m in quantizable_modules(a)]
    assert steps.shape == half.shape == (n,)
    assert torch.equal(steps, torch.cat([quantization_step(t, "rtn4").reshape(-1) for t in w]))
    assert torch.equal(half, torch.cat([zero_bin_halfwidth(t, "rtn4").reshape(-1) for t in w]))
    assert torch.allclose(half, steps / 2)  # RTN: the zero bin is (-Δ/2, Δ/2)
    assert torch.allclose(flat_edit(a, b, "rtn8")["step"], steps * 7 / 127)  # same absmax, 127 vs 7 levels


def test_crossed_bin_edge():
    step = torch.tensor([1.0, 1.0, 2.0, 1.0])
    ref = torch.tensor([0.1, 0.4, 0.9, -0.2])
    new = torch.tensor([0.3, 0.6, 1.2, -0.7])
    assert T.crossed_bin_edge(ref, new, step).tolist() == [False, True, True, True]
    assert not T.crossed_bin_edge(ref, ref, step).any()


def test_bf16_forgetting_moves_few_weights_all_inside_the_4bit_zero_bin(toy):
    """The notebook's point: bf16 moves few, small weights, and they stay within half a 4-bit step of 0."""
    target_bf16 = copy.deepcopy(toy.target).to(torch.bfloat16)  # where the bf16 run started
    edit, edit32 = flat_edit(target_bf16, toy.bf16, "rtn4"), flat_edit(toy.target, toy.fp32, "rtn4")
    ref, new, half4, step4 = edit["w_ref"], edit["w_new"], edit["halfwidth"], edit["step"]
    moved = ref != new
    assert 0 < moved.float().mean() < 0.05  # the notebook: 1.4% (fp32 moves 17%)
    ref32, new32 = edit32["w_ref"], edit32["w_new"]
    assert (ref32 != new32).float().mean() > 5 * moved.float().mean()
    assert (ref[moved].abs() < half4[moved]).float().mean() >= 0.98  # started inside the 4-bit zero bin ...
    assert (new[moved].abs() < half4[moved]).float().mean() >= 0.98  # ... and are still there
    assert T.crossed_bin_edge(ref, new, step4)[moved].float().mean() < 0.005
    crossed_fp32 = T.crossed_bin_edge(ref32, new32, edit32["step"])[ref32 != new32].float().mean()
    assert crossed_fp32 >= 0.005  # the fp32 edit crosses 4-bit edges, which carries it through rounding
    step8 = flat_edit(target_bf16, toy.bf16, "rtn8")["step"]
    assert T.crossed_bin_edge(ref, new, step8)[moved].float().mean() > 0.5  # 8-bit keeps it


# ------------------------------------------------------------------------------------- bad arguments


@pytest.fixture(scope="module")
def bad():
    """Valid small arguments, so that each bad-argument case differs from a good call in one place."""
    x, y = T.make_points(0, **SMALL)
    return types.SimpleNamespace(x=x, y=y, net=small_net(0))


#: (id, call with the fixture namespace, regex the one-line message must match)
BAD_CASES = [
    ("seed<0", lambda c: T.make_points(-1), r"seed=-1"),
    ("seed float", lambda c: T.make_points(1.5), r"seed=1\.5"),
    ("n_points", lambda c: T.make_points(0, n_points=1), r"n_points=1"),
    ("init_std", lambda c: T.make_mlp(0, init_std=0.0), r"init_std=0\.0"),
    ("hidden", lambda c: T.make_mlp(0, hidden=0), r"hidden=0"),
    ("net", lambda c: T.train_memorizer("net", c.x, c.y), r"net=str"),
    ("train lr", lambda c: T.train_memorizer(c.net, c.x, c.y, lr=-1.0), r"lr=-1\.0"),
    ("train steps", lambda c: T.train_memorizer(c.net, c.x, c.y, steps=2.5), r"steps=2\.5"),
    ("label_smoothing", lambda c: T.train_memorizer(c.net, c.x, c.y, label_smoothing=1.0), r"label_smoothing=1\.0"),
    ("x 1-D", lambda c: T.p_true(c.net, c.x[0], c.y), r"x="),
    ("y float", lambda c: T.p_true(c.net, c.x, c.y.float()), r"y="),
    ("y length", lambda c: T.p_true(c.net, c.x, c.y[:2]), r"y="),
    ("dtype fp16", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, torch.float16), r"dtype=torch\.float16.*torch\.bfloat16"),
    ("dtype str", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, "bf16"), r"dtype='bf16'"),
    ("forget", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, torch.float32, forget=4), r"forget=4"),
    ("forgotten_below", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, torch.float32, forgotten_below=0.0), r"forgotten_below=0\.0"),
    ("max_steps", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, torch.float32, max_steps=-1), r"max_steps=-1"),
    ("forget lr", lambda c: T.forget_by_gradient_ascent(c.net, c.x, c.y, torch.float32, lr=0.0), r"lr=0\.0"),
    ("models empty", lambda c: T.evaluate({}, c.x, c.y), r"models="),
    ("models value", lambda c: T.evaluate({"a": "net"}, c.x, c.y), r"models\['a'\]"),
    ("quantizer name", lambda c: T.evaluate({"a": c.net}, c.x, c.y, quantizers=("rtn5",)), r"quantizers='rtn5'.*'rtn4'.*'nf4'"),
    ("quantizers str", lambda c: T.evaluate({"a": c.net}, c.x, c.y, quantizers="rtn4"), r"quantizers='rtn4'"),
    ("evaluate forget", lambda c: T.evaluate({"a": c.net}, c.x, c.y, forget=-1), r"forget=-1"),
    ("crossed shapes", lambda c: T.crossed_bin_edge(torch.zeros(3), torch.zeros(3), torch.ones(2)), r"ref, new and step"),
    ("crossed type", lambda c: T.crossed_bin_edge([0.0], torch.zeros(1), torch.ones(1)), r"ref=list"),
]


@pytest.mark.parametrize(("call", "names"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_arguments_raise_one_clear_error(bad, call, names):
    assert_one_clear_error(lambda: call(bad), names)
