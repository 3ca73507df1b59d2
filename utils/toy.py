"""The toy network of notebook 01: a small MLP memorizes 8 points, forgets one, and 4-bit rounding brings it back.

The toy reproduces, on a network small enough to read weight by weight, the failure mode of *Catastrophic
Failure of LLM Unlearning via Quantization* (Zhang et al., ICLR 2025):

1. :func:`make_points` draws ``N_POINTS`` random inputs; point ``i`` is its own class ``i``.
2. :func:`make_mlp` builds three bias-free ``nn.Linear`` layers (like an LLM's) with ``normal(0, INIT_STD)``
   weights, and :func:`train_memorizer` trains it with full-batch Adam in fp32 until it memorizes every point.
   Label smoothing caps each true class's probability at 0.825, so that a small learning rate can move it.
3. :func:`forget_by_gradient_ascent` makes it forget point ``FORGET`` by gradient ascent with Adam at a small
   learning rate, the weights *stored* in fp32 or in bf16, and stops as soon as the point's probability is
   below ``FORGOTTEN_BELOW``. In bf16 (8 significant bits) an update smaller than half a weight's bf16
   spacing is rounded away, so only small weights (below about ``2^8·lr``) move — and they all sit deep
   inside the 4-bit zero bin.
4. :func:`evaluate` quantizes each model (``"none"``, or a name of :data:`utils.quantization.QUANTIZERS`)
   and reports the forget point's probability: the fp32 edit survives 4-bit rounding, the bf16 edit is
   erased by it (and kept by 8-bit rounding).
5. Why: :func:`utils.mechanism.flat_edit` lists which weights an edit moved, with each weight's
   quantization step and zero-bin half-width; :func:`crossed_bin_edge` says whether they crossed a bin edge.

Everything runs on the CPU in a few seconds. The defaults below are the notebook's; every function takes
them as keyword arguments so that an exercise can turn a knob (e.g. ``lr=5e-5``) without editing this file.
Bad arguments raise :class:`utils.validation.UQError` (a ``ValueError``) naming the parameter and the
accepted values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import quantization as _quantization
from .quantization import fake_quantize_model
from .repro import torch_generator
from .validation import UQError, check_choice, check_range

__all__ = [
    "DIM",
    "DTYPES",
    "FORGET",
    "FORGET_LR",
    "FORGOTTEN_BELOW",
    "HIDDEN",
    "INIT_STD",
    "LABEL_SMOOTHING",
    "MAX_FORGET_STEPS",
    "N_POINTS",
    "QUANTIZERS",
    "TRAIN_LR",
    "TRAIN_STEPS",
    "crossed_bin_edge",
    "evaluate",
    "forget_by_gradient_ascent",
    "make_mlp",
    "make_points",
    "p_true",
    "train_memorizer",
]

#: points to memorize (each its own class), input dimension, hidden width
N_POINTS, DIM, HIDDEN = 8, 64, 512
#: weight init std (large enough that the 4-bit zero bin is wide next to the bf16 updates), Adam
#: learning rate and steps of the memorizing run, label smoothing (caps p(true class) at 0.825)
INIT_STD, TRAIN_LR, TRAIN_STEPS, LABEL_SMOOTHING = 0.15, 3e-3, 200, 0.2
#: gradient ascent: Adam learning rate, step budget, and the stopping rule p(true class) < FORGOTTEN_BELOW
FORGET_LR, MAX_FORGET_STEPS, FORGOTTEN_BELOW = 2.5e-5, 1000, 0.05
#: the index of the point to forget
FORGET = 0
#: the precisions of the notebook's main table: no rounding, RTN 8-bit, RTN 4-bit (names of
#: :data:`utils.quantization.QUANTIZERS` plus ``"none"``; not to be confused with that registry)
QUANTIZERS = ("none", "rtn8", "rtn4")
#: the dtypes in which :func:`forget_by_gradient_ascent` can store the weights
DTYPES = (torch.float32, torch.bfloat16)


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _check_seed(seed: Any) -> int:
    return check_range("seed", seed, 0, 2**63 - 2, integer=True)


def _check_module(value: Any, name: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise UQError(f"{name}={type(value).__name__} is not accepted; accepted values: a torch nn.Module")
    return value


def _check_points(x: Any, y: Any) -> None:
    """``x``: a 2-D floating tensor (one row per point); ``y``: a 1-D integer tensor of as many labels."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point() or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UQError(f"x={shape} is not accepted; accepted values: a non-empty 2-D floating tensor (points, features)")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UQError(f"y={shape} is not accepted; accepted values: a 1-D int64 tensor with one label per row of x ({len(x)})")


def _check_forget(forget: Any, n_points: int) -> int:
    return check_range("forget", forget, 0, n_points - 1, integer=True)


def _toy_quantizers() -> tuple[str, ...]:
    """``"none"`` and every registered quantizer that needs no calibration data."""
    return ("none", *(name for name, spec in _quantization.QUANTIZERS.items() if not spec.needs_calibration))


# --------------------------------------------------------------------------------------------------
# data, model, training
# --------------------------------------------------------------------------------------------------
def make_points(seed: int, *, n_points: int = N_POINTS, dim: int = DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_points`` random inputs ``x`` (standard normal, ``(n_points, dim)``, fp32) and labels ``y = 0..n_points-1``.

    Point ``i`` has label ``i``: every point is its own class, so the network can only *memorize* them.
    The inputs come from a generator seeded with ``seed`` (the global RNG is not used).
    """
    _check_seed(seed)
    check_range("n_points", n_points, 2, integer=True)
    check_range("dim", dim, 1, integer=True)
    return torch.randn(n_points, dim, generator=torch_generator(seed)), torch.arange(n_points)


def make_mlp(seed: int, *, init_std: float = INIT_STD, dim: int = DIM, hidden: int = HIDDEN, n_points: int = N_POINTS) -> nn.Sequential:
    """Three bias-free ``nn.Linear`` layers with ReLUs, ``dim -> hidden -> hidden -> n_points``, in fp32.

    Bias-free because LLM layers have no biases either. Every weight is drawn from ``normal(0, init_std)``
    with a generator seeded with ``seed + 1`` (so the weights differ from :func:`make_points`' inputs).
    """
    _check_seed(seed)
    check_range("init_std", init_std, 0, low_inclusive=False)
    check_range("dim", dim, 1, integer=True)
    check_range("hidden", hidden, 1, integer=True)
    check_range("n_points", n_points, 2, integer=True)
    net = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, hidden, bias=False), nn.ReLU(),
                        nn.Linear(hidden, n_points, bias=False))  # fmt: skip
    g = torch_generator(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, init_std, generator=g)
    return net


def train_memorizer(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float = TRAIN_LR, steps: int = TRAIN_STEPS,
                    label_smoothing: float = LABEL_SMOOTHING) -> nn.Module:  # fmt: skip
    """Train ``net`` *in place* with full-batch Adam on cross-entropy until it memorizes every point; return it in eval mode.

    With the defaults (200 steps at lr 3e-3, label smoothing 0.2) every point's true class ends at
    probability 0.825, the cap that label smoothing sets for 8 classes (``1 - 0.2 + 0.2/8``).
    """
    _check_module(net, "net")
    _check_points(x, y)
    check_range("lr", lr, 0, low_inclusive=False)
    check_range("steps", steps, 0, integer=True)
    check_range("label_smoothing", label_smoothing, 0, 1, high_inclusive=False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y, label_smoothing=label_smoothing).backward()
        opt.step()
    return net.eval()


def p_true(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The probability (softmax) that ``net`` gives each point's true class, shape ``(len(y),)``.

    Computed on an fp32 copy of ``net`` whatever the dtype of its weights (``net`` is untouched), with
    gradients off.
    """
    _check_module(net, "net")
    _check_points(x, y)
    with torch.no_grad():
        return F.softmax(copy.deepcopy(net).float()(x), dim=-1)[torch.arange(len(y)), y]


def forget_by_gradient_ascent(net: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, *, lr: float = FORGET_LR,
                              max_steps: int = MAX_FORGET_STEPS, forgotten_below: float = FORGOTTEN_BELOW,
                              forget: int = FORGET) -> tuple[nn.Module, int]:  # fmt: skip
    """Make a copy of ``net`` forget point ``forget`` by gradient ascent, its weights *stored* in ``dtype``.

    The copy is cast to ``dtype`` (``torch.float32`` or ``torch.bfloat16``) and trained with Adam at ``lr``
    to *increase* the cross-entropy of point ``forget`` (its logits are taken in fp32). Before every step
    the point's :func:`p_true` is checked: the run stops as soon as it is below ``forgotten_below`` (the same
    rule for every dtype), or after ``max_steps`` steps. Returns ``(model in eval mode, steps taken)``;
    ``steps == max_steps`` means the threshold was not reached. ``net`` itself is untouched.
    """
    _check_module(net, "net")
    _check_points(x, y)
    check_choice("dtype", dtype, DTYPES)
    check_range("lr", lr, 0, low_inclusive=False)
    check_range("max_steps", max_steps, 0, integer=True)
    check_range("forgotten_below", forgotten_below, 0, 1, low_inclusive=False)
    _check_forget(forget, len(y))
    model = copy.deepcopy(net).to(dtype).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(max_steps):
        if p_true(model, x[forget:forget + 1], y[forget:forget + 1]).item() < forgotten_below:
            return model.eval(), step
        opt.zero_grad()
        (-F.cross_entropy(model(x[forget:forget + 1].to(dtype)).float(), y[forget:forget + 1])).backward()
        opt.step()
    return model.eval(), max_steps


def evaluate(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor, quantizers: Sequence[str] = QUANTIZERS, *,
             forget: int = FORGET) -> pd.DataFrame:  # fmt: skip
    """Each model under each quantizer: how well it still knows the forget point, and the other points.

    One row per ``(model, quantizer)``, in the order given, with columns ``model`` (the key in ``models``),
    ``quantizer`` (``"none"`` or a calibration-free name of :data:`utils.quantization.QUANTIZERS`, e.g.
    ``"rtn4"``, ``"nf4"``), ``p(forget point)`` (:func:`p_true` of point ``forget`` in the fake-quantized
    model), ``mean p(other points)`` and ``forget point predicted`` (its true class is the argmax).
    """
    if not isinstance(models, Mapping) or not models or not all(isinstance(k, str) for k in models):
        raise UQError(f"models={type(models).__name__} is not accepted; accepted values: a non-empty dict of name -> nn.Module")
    for name, model in models.items():
        _check_module(model, f"models[{name!r}]")
    _check_points(x, y)
    if isinstance(quantizers, str) or not isinstance(quantizers, Sequence) or not quantizers:
        raise UQError(f"quantizers={quantizers!r} is not accepted; accepted values: a non-empty tuple of names among {', '.join(map(repr, _toy_quantizers()))}")
    for q in quantizers:
        check_choice("quantizers", q, _toy_quantizers())
    _check_forget(forget, len(y))
    rows = []
    for name, model in models.items():
        for q in quantizers:
            m = model if q == "none" else fake_quantize_model(model, q)
            p = p_true(m, x, y)
            with torch.no_grad():
                predicted = int(copy.deepcopy(m).float()(x[forget:forget + 1]).argmax()) == forget
            rows.append({"model": name, "quantizer": q, "p(forget point)": p[forget].item(),
                         "mean p(other points)": torch.cat([p[:forget], p[forget + 1:]]).mean().item(),
                         "forget point predicted": predicted})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# what an edit did to the weights
# --------------------------------------------------------------------------------------------------
def crossed_bin_edge(ref: torch.Tensor, new: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Which weights changed bin on a uniform grid of step ``step``: ``round(new/step) != round(ref/step)``.

    ``ref``, ``new`` and ``step`` are tensors of the same shape (e.g. ``w_ref``, ``w_new`` and ``step`` of
    :func:`utils.mechanism.flat_edit`); returns a boolean tensor of that shape.
    """
    for name, value in (("ref", ref), ("new", new), ("step", step)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise UQError(f"{name}={type(value).__name__} is not accepted; accepted values: a floating tensor")
    if not ref.shape == new.shape == step.shape:
        raise UQError(f"ref, new and step have shapes {tuple(ref.shape)}, {tuple(new.shape)}, {tuple(step.shape)}; "
                      "accepted values: three tensors of the same shape")  # fmt: skip
    return torch.round(new / step) != torch.round(ref / step)
