"""Weight quantization for the series: RTN, bitsandbytes FP4/NF4 and LLM.int8, and the diagnostics.

Everything here is *fake quantization* of weights: a weight tensor ``w`` is mapped to integer codes on
a grid and dequantized back, so a model keeps its ordinary ``nn.Linear`` layers but with the rounded
values. That is exactly what a quantized model computes with (bitsandbytes dequantizes its 4-bit
weights before every matmul), and it lets us compare the *codes* of two models weight by weight.

Quantizers (``QUANTIZERS``, resolved by :func:`get_quantizer`)
-------------------------------------------------------------
=======  =====================================================================================
name     what it does
=======  =====================================================================================
rtn8     round-to-nearest, symmetric absmax, 8 bits, one scale per group of 64 inputs
rtn4     the same at 4 bits (the paper's "RTN 4-bit")
int8     bitsandbytes LLM.int8 weights: row-wise absmax int8 of the fp16 weight (``Int8Params``)
fp4      bitsandbytes FP4, blocks of 64 consecutive weights, absmax per block (``Linear4bit``)
nf4      bitsandbytes NF4 (normal-float levels), blocks of 64
=======  =====================================================================================

Per-channel or asymmetric RTN variants: ``rtn_spec(bits=4, granularity="channel")`` or any
:class:`QuantSpec`. Methods that need calibration data (GPTQ, AWQ: ``utils.gptq``, ``utils.awq``)
plug in with :func:`register_model_quantizer` and :func:`register_quantizer`; ``get_quantizer("gptq4")``
imports the plug-in module on first use.

RTN grids (``b`` bits, a group ``g`` of weights)
------------------------------------------------
- absmax (symmetric): ``Δ = max|g| / (2^(b-1) - 1)``, codes ``round(w/Δ)`` in ``[-(2^(b-1)-1), 2^(b-1)-1]``,
  value ``code·Δ``. With ``max|w| = 200``: ``Δ = 200/127`` at 8 bits, ``200/7`` at 4 bits.
- minmax (asymmetric, the GPTQ convention): the range ``[min(g,0), max(g,0)]`` is cut into ``2^b - 1``
  steps ``Δ``; zero point ``z = round(-min/Δ)``; codes ``clamp(round(w/Δ) + z, 0, 2^b-1)``; value
  ``(code - z)·Δ``. Zero is always exactly representable.
- an all-zero group gets ``Δ = 1`` (its codes are 0 and it dequantizes to exactly 0).

Codes returned by :func:`quantize_codes`
----------------------------------------
RTN: the codes above. int8: the int8 codes. FP4/NF4: the *signed index of the level* among the
distinct levels, so that code 0 is the level 0 (FP4: ``-7..7``, its +0 and -0 codes merged; NF4:
``-7..8``). Two weights have the same code exactly when they are rounded to the same level.

Three per-weight quantities used by the diagnostics notebooks
-------------------------------------------------------------
- :func:`quantization_step` ``Δ(w)``: uniform grids: the step of the weight's group/row. FP4/NF4 (uneven
  levels): the gap between the two levels that bracket ``w/absmax`` (``l_k <= x < l_{k+1}``; ``x = 1``
  uses the top gap), times the block's absmax.
- :func:`delta_in_steps` ``(w_new - w_ref) / Δ(w_ref)``: an edit smaller than half a step in a weight in
  the middle of its bin cannot change the code.
- :func:`zero_bin_halfwidth`: the distance from 0 to the edge of the bin of 0, on the side of the
  weight's sign, so that ``|w| < zero_bin_halfwidth(w)`` means *w is rounded to zero*. FP4 has two tiny
  levels ``±absmax/192`` next to 0; by default (``merge_tiny_levels=True``) they count as part of the
  zero bin (values that small are zero for every practical purpose), giving ``0.0859·absmax``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from torch import nn

from .validation import UQError, check_choice, check_range

__all__ = [
    "BITS_RANGE",
    "BNB_BLOCKSIZES",
    "FP4_LEVELS",
    "GRANULARITIES",
    "NF4_LEVELS",
    "QUANTIZERS",
    "SCHEMES",
    "ModelQuantizer",
    "QuantSpec",
    "RTNQuantized",
    "code_identity",
    "delta_in_steps",
    "fake_quantize_model",
    "fake_quantize_weight",
    "get_quantizer",
    "known_methods",
    "load_quantized_pretrained",
    "quantizable_modules",
    "quantization_step",
    "quantize_codes",
    "register_model_quantizer",
    "register_quantizer",
    "rtn_decode",
    "rtn_dequantize",
    "rtn_encode",
    "rtn_grid_params",
    "rtn_quantize",
    "rtn_spec",
    "zero_bin_halfwidth",
]

BITS_RANGE = (2, 8)
SCHEMES = ("absmax", "minmax")
GRANULARITIES = ("tensor", "channel", "group")
BUILTIN_METHODS = ("rtn", "int8", "fp4", "nf4")
BNB_METHODS = ("int8", "fp4", "nf4")
#: block sizes bitsandbytes accepts for 4-bit blockwise quantization (transformers always uses 64)
BNB_BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
CODE_DTYPE = torch.int16

#: bitsandbytes' 4-bit code books, indexed by the 4-bit code it stores (as ``get_4bit_type`` builds them,
#: in fp32). FP4: 1 sign, 2 exponent, 1 mantissa bit, divided by 12 so the largest level is 1; its
#: smallest non-zero level is the subnormal 0.0625/12 = 1/192.
_FP4_RAW = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0)
FP4_LEVELS = tuple((torch.tensor(_FP4_RAW, dtype=torch.float32) / 12.0).tolist())
#: NF4: quantiles of a standard normal, normalised to [-1, 1] (QLoRA), already sorted.
NF4_LEVELS = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
              -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
              0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
              0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)  # fmt: skip

#: plug-in modules that register a quantizer when imported (looked up on first use of the name)
_PLUGIN_MODULES = {"gptq": "utils.gptq", "awq": "utils.awq"}
_PLUGIN_NAMES = {"gptq4": "gptq", "awq4": "awq"}


# --------------------------------------------------------------------------------------------------
# Quantizer specification and registry
# --------------------------------------------------------------------------------------------------


_MODEL_QUANTIZERS: dict[str, "ModelQuantizer"] = {}


def known_methods() -> tuple[str, ...]:
    """Methods a :class:`QuantSpec` may name: built-in, registered and known plug-ins."""
    return tuple(dict.fromkeys((*BUILTIN_METHODS, *_MODEL_QUANTIZERS, *_PLUGIN_MODULES)))



@dataclass(frozen=True)
class QuantSpec:
    """A named, validated description of one weight quantizer.

    ``method`` is ``"rtn"``, ``"int8"``, ``"fp4"``, ``"nf4"`` or a plug-in method registered with
    :func:`register_model_quantizer` (``"gptq"``, ``"awq"``). ``group_size`` is the RTN group along the
    input dimension, or the bitsandbytes 4-bit block size (blocks of consecutive weights of the
    flattened tensor); it is ``None`` unless ``granularity == "group"``. ``options`` are extra keyword
    arguments for a plug-in (a dict is accepted and stored as sorted pairs, so the spec stays
    hashable). ``needs_calibration``: :func:`fake_quantize_model` then requires ``calibration=``.
    """

    name: str
    method: str = "rtn"
    bits: int = 4
    scheme: str = "absmax"
    granularity: str = "group"
    group_size: int | None = 64
    needs_calibration: bool = False
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UQError(f"name={self.name!r} is not accepted; accepted values: a non-empty string such as 'rtn4'")
        check_choice("method", self.method, known_methods())
        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        if not isinstance(self.options, tuple) or not all(isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in self.options):
            raise UQError(f"options={self.options!r} is not accepted; accepted values: a dict of keyword arguments")
        if self.method in ("fp4", "nf4"):
            check_choice("bits", self.bits, (4,))
            check_choice("scheme", self.scheme, ("absmax",))
            check_choice("granularity", self.granularity, ("group",))
            check_choice("group_size", self.group_size, BNB_BLOCKSIZES)
            return
        if self.method == "int8":
            check_choice("bits", self.bits, (8,))
            check_choice("scheme", self.scheme, ("absmax",))
            check_choice("granularity", self.granularity, ("channel",))
            check_choice("group_size", self.group_size, (None,))
            return
        check_range("bits", self.bits, *BITS_RANGE, integer=True)
        check_choice("scheme", self.scheme, SCHEMES)
        check_choice("granularity", self.granularity, GRANULARITIES)
        if self.granularity == "group":
            check_range("group_size", self.group_size, 1, integer=True)
        else:
            check_choice("group_size", self.group_size, (None,))

    @property
    def is_bitsandbytes(self) -> bool:
        """True for the three formats bitsandbytes stores (FP4, NF4, LLM.int8)."""
        return self.method in BNB_METHODS

    @property
    def is_plugin(self) -> bool:
        """True for a method implemented outside this module (GPTQ, AWQ, ...)."""
        return self.method not in BUILTIN_METHODS

    def describe(self) -> str:
        """A one-line human description, e.g. ``'rtn4: RTN 4-bit absmax, groups of 64'``."""
        where = {"tensor": "one scale per tensor", "channel": "one scale per output row",
                 "group": f"groups of {self.group_size}"}[self.granularity]  # fmt: skip
        label = {"rtn": "RTN", "int8": "LLM.int8", "fp4": "bitsandbytes FP4", "nf4": "bitsandbytes NF4"}.get(self.method, self.method.upper())
        return f"{self.name}: {label} {self.bits}-bit {self.scheme}, {where}"


class ModelQuantizer(Protocol):
    """A plug-in quantizer: returns a fake-quantized *copy* of ``model`` and leaves ``model`` untouched."""

    def __call__(self, model: nn.Module, spec: QuantSpec, *, calibration: torch.Tensor | None,
                 include_lm_head: bool, include_embeddings: bool) -> nn.Module: ...  # fmt: skip
    # a plug-in may also take ``progress: bool`` (a progress bar): fake_quantize_model passes it on when given


def rtn_spec(bits: int = 4, scheme: str = "absmax", granularity: str = "group", group_size: int | None = 64,
             name: str | None = None) -> QuantSpec:  # fmt: skip
    """An RTN :class:`QuantSpec`, named e.g. ``'rtn4_channel'`` or ``'rtn3_minmax_g128'`` unless ``name``."""
    if granularity != "group":
        group_size = None
    if name is None:
        name = f"rtn{bits}"
        if scheme != "absmax":
            name += f"_{scheme}"
        name += {"tensor": "_tensor", "channel": "_channel", "group": "" if group_size == 64 else f"_g{group_size}"}.get(granularity, "")
    return QuantSpec(name=name, method="rtn", bits=bits, scheme=scheme, granularity=granularity, group_size=group_size)


QUANTIZERS: dict[str, QuantSpec] = {
    "rtn8": rtn_spec(8),
    "rtn4": rtn_spec(4),
    "int8": QuantSpec("int8", method="int8", bits=8, granularity="channel", group_size=None),
    "fp4": QuantSpec("fp4", method="fp4", bits=4, group_size=64),
    "nf4": QuantSpec("nf4", method="nf4", bits=4, group_size=64),
}

def register_model_quantizer(method: str, fn: ModelQuantizer, *, specs: tuple[QuantSpec, ...] | list[QuantSpec] = ()) -> None:
    """Register ``fn`` as the implementation of ``method`` (e.g. ``"gptq"``) and add ``specs`` to ``QUANTIZERS``.

    ``fn(model, spec, *, calibration, include_lm_head, include_embeddings)`` must return a fake-quantized
    copy and leave ``model`` untouched. :func:`fake_quantize_model` dispatches every spec whose ``method``
    is ``method`` to it. Re-registering replaces the previous function (useful when reloading a module).
    A :class:`QuantSpec` may only name a method that is built in, registered, or a known plug-in
    (``"gptq"``, ``"awq"``), so a new method is registered before its specs are created::

        register_model_quantizer("gptq", gptq_fn, specs=[QuantSpec("gptq4", method="gptq", bits=4,
                                 scheme="minmax", group_size=64, needs_calibration=True)])
    """
    if not isinstance(method, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", method or "") or method in BUILTIN_METHODS:
        raise UQError(f"method={method!r} is not accepted; accepted values: a new lower-case identifier other than {', '.join(map(repr, BUILTIN_METHODS))}")
    if not callable(fn):
        raise UQError(f"fn={fn!r} is not accepted; accepted values: a callable (model, spec, *, calibration, include_lm_head, include_embeddings) -> nn.Module")
    _MODEL_QUANTIZERS[method] = fn
    for spec in specs:
        register_quantizer(spec)


def register_quantizer(spec: QuantSpec) -> QuantSpec:
    """Add ``spec`` to ``QUANTIZERS`` under ``spec.name`` (replacing an entry of the same name); return it."""
    if not isinstance(spec, QuantSpec):
        raise UQError(f"spec={spec!r} is not accepted; accepted values: a QuantSpec")
    QUANTIZERS[spec.name] = spec
    return spec


def _import_plugin(method: str) -> None:
    module = _PLUGIN_MODULES.get(method)
    if module is None or method in _MODEL_QUANTIZERS:
        return
    try:
        importlib.import_module(module)
    except ImportError as err:  # the plug-in is not written (yet) or lacks a dependency
        raise UQError(f"quantizer method {method!r} needs the module {module!r}, which could not be imported: {err}") from err


def get_quantizer(name_or_spec: str | QuantSpec) -> QuantSpec:
    """Resolve a name from ``QUANTIZERS`` (or a :class:`QuantSpec`, returned as is).

    Names of known plug-ins (``"gptq4"``, ``"awq4"``) import their module first. An unknown name raises a
    ``ValueError`` that lists the accepted names.
    """
    if isinstance(name_or_spec, QuantSpec):
        return name_or_spec
    if isinstance(name_or_spec, str) and name_or_spec not in QUANTIZERS and name_or_spec in _PLUGIN_NAMES:
        _import_plugin(_PLUGIN_NAMES[name_or_spec])
    if not isinstance(name_or_spec, str) or name_or_spec not in QUANTIZERS:
        accepted = list(dict.fromkeys([*QUANTIZERS, *_PLUGIN_NAMES]))
        raise UQError(f"quantizer={name_or_spec!r} is not accepted; accepted values: "
                      f"{', '.join(map(repr, accepted))} or a QuantSpec")  # fmt: skip
    return QUANTIZERS[name_or_spec]


# --------------------------------------------------------------------------------------------------
# RTN
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RTNQuantized:
    """Round-to-nearest codes of a weight tensor and what is needed to dequantize them.

    ``codes`` has the weight's ``shape`` (int16); ``scales`` and ``zeros`` have shape
    ``(rows, n_groups)`` for the 2-D view ``(rows, shape[-1])`` of the weight (``n_groups`` is 1 for
    per-tensor/per-channel; per-tensor also has ``rows == 1``). ``zeros`` is all 0 for absmax.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    shape: torch.Size
    bits: int
    scheme: str
    granularity: str
    group_size: int | None
    dtype: torch.dtype

    def step_per_weight(self) -> torch.Tensor:
        """The step Δ of every weight's group, with the weight's shape (fp32)."""
        return _expand_groups(self.scales, self.shape, self.granularity, self.group_size)

    def zero_point_per_weight(self) -> torch.Tensor:
        """The zero point of every weight's group, with the weight's shape (fp32)."""
        return _expand_groups(self.zeros.float(), self.shape, self.granularity, self.group_size)


def _check_weight(w: Any, name: str = "w") -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not (w.is_floating_point()) or w.dim() < 1 or w.numel() == 0:
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise UQError(f"{name}={shape!r} is not accepted; accepted values: a non-empty floating-point tensor (a weight matrix)")
    if not torch.isfinite(w).all():
        raise UQError(f"{name} is not accepted: it contains NaN or infinite values; accepted values: finite weights")
    return w


def _rows(w: torch.Tensor) -> torch.Tensor:
    """The fp32 2-D view ``(rows, columns)`` of a weight (a 1-D tensor is one row)."""
    return w.detach().float().reshape(-1, w.shape[-1])


def rtn_grid_params(x: torch.Tensor, bits: int = 4, scheme: str = "absmax") -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of the RTN grid of each group of ``x`` (groups along the last dimension).

    Returns ``(scale, zero)`` with the shape of ``x`` but last dimension 1 (fp32; the zero point holds
    integers, all 0 for absmax). Used by :func:`rtn_quantize` and by GPTQ/AWQ, which set a group's grid
    once and then round its columns one by one.
    """
    check_range("bits", bits, *BITS_RANGE, integer=True)
    check_choice("scheme", scheme, SCHEMES)
    x = x.float()
    if scheme == "absmax":
        qmax = 2 ** (bits - 1) - 1
        amax = x.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
        return scale, torch.zeros_like(scale)
    levels = 2**bits - 1
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0)
    scale = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    zero = torch.round(-lo / scale).clamp(0, levels)
    return scale, zero


def rtn_encode(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int = 4, scheme: str = "absmax") -> torch.Tensor:
    """Integer codes of ``x`` on the grid ``(scale, zero)`` (broadcast), as int16."""
    check_range("bits", bits, *BITS_RANGE, integer=True)
    check_choice("scheme", scheme, SCHEMES)
    q = torch.round(x.float() / scale)
    if scheme == "absmax":
        qmax = 2 ** (bits - 1) - 1
        return q.clamp(-qmax, qmax).to(CODE_DTYPE)
    return (q + zero).clamp(0, 2**bits - 1).to(CODE_DTYPE)


def rtn_decode(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Values ``(codes - zero) * scale`` (fp32)."""
    return (codes.float() - zero) * scale


def _grouped(w2: torch.Tensor, granularity: str, group_size: int | None) -> torch.Tensor:
    """Reshape the 2-D view to ``(rows, n_groups, group_len)`` for the given granularity."""
    rows, cols = w2.shape
    if granularity == "tensor":
        return w2.reshape(1, 1, rows * cols)
    if granularity == "channel":
        return w2.reshape(rows, 1, cols)
    return w2.reshape(rows, cols // group_size, group_size)


def _expand_groups(per_group: torch.Tensor, shape: torch.Size, granularity: str, group_size: int | None) -> torch.Tensor:
    cols = shape[-1]
    rows = max(1, int(torch.Size(shape).numel() // cols))
    if granularity == "tensor":
        out = per_group.reshape(1, 1).expand(rows, cols)
    elif granularity == "channel":
        out = per_group.reshape(rows, 1).expand(rows, cols)
    else:
        out = per_group.reshape(rows, cols // group_size, 1).expand(rows, cols // group_size, group_size)
    return out.reshape(shape).float()


def _check_group_size(w: torch.Tensor, granularity: str, group_size: int | None) -> None:
    if granularity != "group":
        return
    cols = w.shape[-1]
    if cols % group_size:
        divisors = [d for d in (16, 32, 64, 128, 256) if cols % d == 0] or [cols]
        raise UQError(f"group_size={group_size!r} does not divide the row length {cols} of the weight; "
                      f"accepted values: a divisor of {cols}, e.g. {', '.join(map(str, divisors))}")  # fmt: skip


def rtn_quantize(w: torch.Tensor, bits: int = 4, scheme: str = "absmax", granularity: str = "group",
                 group_size: int | None = 64) -> RTNQuantized:  # fmt: skip
    """Round-to-nearest quantization of ``w`` (computed in fp32).

    ``granularity``: ``"tensor"`` (one grid), ``"channel"`` (one per output row), ``"group"`` (one per
    ``group_size`` consecutive inputs of a row; must divide the row). ``scheme``: ``"absmax"``
    (symmetric) or ``"minmax"`` (asymmetric with a zero point). See the module docstring for the grids.
    """
    check_range("bits", bits, *BITS_RANGE, integer=True)
    check_choice("scheme", scheme, SCHEMES)
    check_choice("granularity", granularity, GRANULARITIES)
    if granularity == "group":
        check_range("group_size", group_size, 1, integer=True)
    else:
        group_size = None
    w = _check_weight(w)
    _check_group_size(w, granularity, group_size)
    groups = _grouped(_rows(w), granularity, group_size)
    scale, zero = rtn_grid_params(groups, bits, scheme)
    codes = rtn_encode(groups, scale, zero, bits, scheme)
    return RTNQuantized(codes=codes.reshape(w.shape), scales=scale.squeeze(-1), zeros=zero.squeeze(-1).to(CODE_DTYPE),
                        shape=w.shape, bits=bits, scheme=scheme, granularity=granularity, group_size=group_size,
                        dtype=w.dtype)  # fmt: skip


def rtn_dequantize(q: RTNQuantized) -> torch.Tensor:
    """The fp32 values of an :class:`RTNQuantized` (cast to ``q.dtype`` yourself if you need to)."""
    if not isinstance(q, RTNQuantized):
        raise UQError(f"q={type(q).__name__} is not accepted; accepted values: an RTNQuantized from rtn_quantize")
    return rtn_decode(q.codes, q.step_per_weight(), q.zero_point_per_weight())


# --------------------------------------------------------------------------------------------------
# bitsandbytes FP4 / NF4 / LLM.int8
# --------------------------------------------------------------------------------------------------


def _bnb():
    import bitsandbytes.functional as bnbf  # noqa: PLC0415 - heavy import, on first use only

    return bnbf


def _levels(method: str, device: torch.device) -> torch.Tensor:
    return torch.tensor(FP4_LEVELS if method == "fp4" else NF4_LEVELS, dtype=torch.float32, device=device)


def _distinct_levels(method: str) -> torch.Tensor:
    """The sorted distinct levels (FP4's -0 merged into 0)."""
    return torch.unique(torch.tensor(FP4_LEVELS if method == "fp4" else NF4_LEVELS, dtype=torch.float32))


@dataclass(frozen=True)
class _Blockwise4bit:
    """bitsandbytes' 4-bit result unpacked: its raw 4-bit code and the absmax, both per weight."""

    raw_codes: torch.Tensor  # uint8 in 0..15, weight's shape
    absmax: torch.Tensor  # fp32, weight's shape
    method: str


def _bnb_4bit(w: torch.Tensor, spec: QuantSpec) -> _Blockwise4bit:
    """Quantize with ``bitsandbytes.functional.quantize_4bit`` (fp32 input) and unpack per weight."""
    bnbf = _bnb()
    packed, state = bnbf.quantize_4bit(w.detach().float().contiguous(), blocksize=spec.group_size, quant_type=spec.method)
    flat = packed.reshape(-1)
    raw = torch.empty(flat.numel() * 2, dtype=torch.uint8, device=flat.device)
    raw[0::2] = flat >> 4
    raw[1::2] = flat & 0xF
    n = w.numel()
    absmax = state.absmax.float().repeat_interleave(spec.group_size)[:n]
    return _Blockwise4bit(raw_codes=raw[:n].reshape(w.shape), absmax=absmax.reshape(w.shape), method=spec.method)


def _bnb_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LLM.int8 weight quantization as ``Int8Params`` does it: fp16 cast, then row-wise absmax int8.

    Returns ``(codes int8 with w's 2-D shape, row absmax fp32 of shape (rows,))``. Rows that are all zero
    get codes 0 (bitsandbytes would divide by zero there).
    """
    bnbf = _bnb()
    w16 = _rows(w).to(torch.float16).contiguous()
    codes, row_absmax, _ = bnbf.int8_vectorwise_quant(w16.clone())
    zero_rows = row_absmax == 0
    if zero_rows.any():
        codes[zero_rows] = 0
    return codes, row_absmax.float()


def _int8_dequantize(codes: torch.Tensor, row_absmax: torch.Tensor) -> torch.Tensor:
    return _bnb().int8_vectorwise_dequant(codes, row_absmax).float()


# --------------------------------------------------------------------------------------------------
# One weight tensor: values, codes, steps, zero bins
# --------------------------------------------------------------------------------------------------


def _builtin_spec(quantizer: str | QuantSpec, caller: str) -> QuantSpec:
    spec = get_quantizer(quantizer)
    if spec.is_plugin:
        raise UQError(f"quantizer={spec.name!r} ({spec.method}) needs calibration data and a whole model; "
                      f"{caller} accepts: {', '.join(map(repr, BUILTIN_METHODS))} quantizers, e.g. 'rtn4', 'fp4'")  # fmt: skip
    return spec


def _rtn(w: torch.Tensor, spec: QuantSpec) -> RTNQuantized:
    return rtn_quantize(w, spec.bits, spec.scheme, spec.granularity, spec.group_size)


def _check_bnb_shape(w: torch.Tensor, spec: QuantSpec) -> None:
    if spec.method in ("fp4", "nf4") and w.numel() % 2:
        raise UQError(f"w has {w.numel()} elements; bitsandbytes 4-bit packs two weights per byte; accepted values: a weight with an even number of elements")


def fake_quantize_weight(w: torch.Tensor, quantizer: str | QuantSpec) -> torch.Tensor:
    """``Q(w)`` dequantized: computed in fp32, returned in ``w``'s dtype and shape."""
    spec = _builtin_spec(quantizer, "fake_quantize_weight")
    w = _check_weight(w)
    if spec.method == "rtn":
        out = rtn_dequantize(_rtn(w, spec))
    elif spec.method == "int8":
        out = _int8_dequantize(*_bnb_int8(w))
    else:
        _check_bnb_shape(w, spec)
        b = _bnb_4bit(w, spec)
        out = _levels(spec.method, w.device)[b.raw_codes.long()] * b.absmax
    return out.reshape(w.shape).to(w.dtype)


def quantize_codes(w: torch.Tensor, quantizer: str | QuantSpec) -> torch.Tensor:
    """Integer codes of every weight (w's shape, int16); see the module docstring for FP4/NF4's codes."""
    spec = _builtin_spec(quantizer, "quantize_codes")
    w = _check_weight(w)
    if spec.method == "rtn":
        return _rtn(w, spec).codes
    if spec.method == "int8":
        return _bnb_int8(w)[0].to(CODE_DTYPE).reshape(w.shape)
    _check_bnb_shape(w, spec)
    b = _bnb_4bit(w, spec)
    distinct = _distinct_levels(spec.method).to(w.device)
    zero_index = int((distinct == 0).nonzero()[0])
    level = _levels(spec.method, w.device)[b.raw_codes.long()]
    return (torch.searchsorted(distinct, level.contiguous()) - zero_index).to(CODE_DTYPE)


def quantization_step(w: torch.Tensor, quantizer: str | QuantSpec) -> torch.Tensor:
    """The local step Δ of every weight (fp32, w's shape); definition in the module docstring."""
    spec = _builtin_spec(quantizer, "quantization_step")
    w = _check_weight(w)
    if spec.method == "rtn":
        return _rtn(w, spec).step_per_weight()
    if spec.method == "int8":
        _, row_absmax = _bnb_int8(w)
        return (row_absmax / 127.0).reshape(-1, 1).expand(-1, w.shape[-1]).reshape(w.shape).clone()
    _check_bnb_shape(w, spec)
    b = _bnb_4bit(w, spec)
    distinct = _distinct_levels(spec.method).to(w.device)
    x = (w.detach().float() / b.absmax.clamp(min=torch.finfo(torch.float32).tiny)).clamp(-1, 1)
    k = (torch.searchsorted(distinct, x.contiguous(), right=True) - 1).clamp(0, distinct.numel() - 2)
    return (distinct[k + 1] - distinct[k]) * b.absmax


def delta_in_steps(w_new: torch.Tensor, w_ref: torch.Tensor, quantizer: str | QuantSpec) -> torch.Tensor:
    """``(w_new - w_ref) / Δ(w_ref)``: an edit in units of the reference weight's local step (fp32)."""
    w_ref = _check_weight(w_ref, "w_ref")
    w_new = _check_weight(w_new, "w_new")
    if w_new.shape != w_ref.shape:
        raise UQError(f"w_new has shape {tuple(w_new.shape)} but w_ref has {tuple(w_ref.shape)}; accepted values: tensors of the same shape")
    step = quantization_step(w_ref, quantizer)
    return (w_new.detach().float() - w_ref.detach().float()) / step


def zero_bin_halfwidth(w: torch.Tensor, quantizer: str | QuantSpec, *, merge_tiny_levels: bool = True) -> torch.Tensor:
    """Per weight, the distance from 0 to the edge of the zero bin on the side of ``w``'s sign (fp32).

    ``|w| < zero_bin_halfwidth(w, q)`` means that ``w`` is rounded to 0 (for FP4 with
    ``merge_tiny_levels``: to 0 or to the tiny level ``±absmax/192``). Uniform grids: half a step.
    """
    spec = _builtin_spec(quantizer, "zero_bin_halfwidth")
    check_choice("merge_tiny_levels", merge_tiny_levels, (True, False))
    w = _check_weight(w)
    if spec.method in ("rtn", "int8"):
        return quantization_step(w, spec) / 2
    _check_bnb_shape(w, spec)
    b = _bnb_4bit(w, spec)
    distinct = _distinct_levels(spec.method)
    zero_index = int((distinct == 0).nonzero()[0])
    if spec.method == "fp4" and merge_tiny_levels:
        below, above = distinct[zero_index - 2], distinct[zero_index + 2]
        lower_edge, upper_edge = (below + distinct[zero_index - 1]) / 2, (above + distinct[zero_index + 1]) / 2
    else:
        lower_edge, upper_edge = distinct[zero_index - 1] / 2, distinct[zero_index + 1] / 2
    side = torch.where(w.detach() < 0, -float(lower_edge), float(upper_edge)).to(torch.float32)
    return side * b.absmax


# --------------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------------


def quantizable_modules(model: nn.Module, *, include_lm_head: bool = False, include_embeddings: bool = False) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of the modules whose weight a quantizer replaces, in model order.

    Every ``nn.Linear`` (bitsandbytes' layers included) except the output head (``lm_head``, or the
    module of ``model.get_output_embeddings()``) unless ``include_lm_head``; ``nn.Embedding`` only with
    ``include_embeddings``. This matches what ``transformers`` converts when it loads a model in 4/8 bits.
    """
    check_choice("include_lm_head", include_lm_head, (True, False))
    check_choice("include_embeddings", include_embeddings, (True, False))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        is_head = module is head or name.split(".")[-1] == "lm_head"
        if isinstance(module, nn.Embedding):
            if include_embeddings:
                yield name, module
        elif isinstance(module, nn.Linear) and (include_lm_head or not is_head):
            yield name, module


def _check_model(model: Any, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UQError(f"{name}={type(model).__name__} is not accepted; accepted values: a torch nn.Module")
    return model


def fake_quantize_model(model: nn.Module, quantizer: str | QuantSpec, *, include_lm_head: bool = False,
                        include_embeddings: bool = False, calibration: torch.Tensor | None = None,
                        progress: bool | None = None) -> nn.Module:  # fmt: skip
    """A deep copy of ``model`` whose selected weights are replaced by ``Q(w)`` dequantized.

    Selected: every ``nn.Linear`` weight, plus the head / embeddings when asked (see
    :func:`quantizable_modules`). Each weight is quantized in fp32 and stored back in its own dtype; the
    original model is untouched. ``calibration`` (token ids) is passed to plug-in methods that need it
    (GPTQ, AWQ) and ignored by the others. A weight shared by two modules (tied embeddings) is quantized
    once if either module is selected. ``progress``: a progress bar (default: for models over 50M weights;
    for a plug-in whose function takes ``progress``, such as GPTQ and AWQ, True/False is passed on and
    None keeps the plug-in's own default).
    """
    _check_model(model)
    spec = get_quantizer(quantizer)
    check_choice("include_lm_head", include_lm_head, (True, False))
    check_choice("include_embeddings", include_embeddings, (True, False))
    check_choice("progress", progress, (True, False, None))
    if calibration is not None and (not isinstance(calibration, torch.Tensor) or calibration.dtype not in (torch.int32, torch.int64) or calibration.numel() == 0):
        raise UQError(f"calibration={calibration!r} is not accepted; accepted values: None or a non-empty tensor of token ids (int64)")
    if spec.is_plugin:
        _import_plugin(spec.method)
        if spec.method not in _MODEL_QUANTIZERS:
            raise UQError(f"quantizer={spec.name!r}: no implementation is registered for method {spec.method!r}; "
                          f"accepted values: methods {', '.join(map(repr, (*BUILTIN_METHODS, *_MODEL_QUANTIZERS)))}")  # fmt: skip
        if spec.needs_calibration and calibration is None:
            raise UQError(f"calibration=None is not accepted for quantizer={spec.name!r}; accepted values: a tensor of token ids (e.g. retain-split text)")
        plugin = _MODEL_QUANTIZERS[spec.method]
        extra = {"progress": progress} if progress is not None and _accepts(plugin, "progress") else {}
        return plugin(model, spec, calibration=calibration, include_lm_head=include_lm_head,
                      include_embeddings=include_embeddings, **extra)  # fmt: skip
    quantized = copy.deepcopy(model)
    modules = list(quantizable_modules(quantized, include_lm_head=include_lm_head, include_embeddings=include_embeddings))
    if progress is None:
        progress = sum(m.weight.numel() for _, m in modules) > 50_000_000
    from tqdm.auto import tqdm  # noqa: PLC0415

    done: set[int] = set()
    with torch.no_grad():
        for _, module in tqdm(modules, desc=f"fake-quantizing ({spec.name})", disable=not progress):
            weight = module.weight
            if id(weight) in done:
                continue
            done.add(id(weight))
            weight.copy_(fake_quantize_weight(weight.detach(), spec))
    return quantized


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (a plug-in written before ``progress`` existed does not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)(?:\.|$)")


def _layer_index(name: str) -> int | None:
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def code_identity(model_a: nn.Module, model_b: nn.Module, quantizer: str | QuantSpec, *,
                  include_lm_head: bool = False, include_embeddings: bool = False) -> pd.DataFrame:  # fmt: skip
    """Per quantized module, how many of the two models' codes are identical (exact, not sampled).

    One row per module of :func:`quantizable_modules` with columns ``module`` (name), ``layer`` (index of
    the transformer block, ``<NA>`` outside blocks), ``module_type`` (last name part, e.g. ``"q_proj"``),
    ``n_weights``, ``frac_identical`` (share of weights with the same code) and
    ``frac_identical_values`` (share with the same dequantized value: codes *and* the group's scale).
    """
    _check_model(model_a, "model_a")
    _check_model(model_b, "model_b")
    spec = _builtin_spec(quantizer, "code_identity")
    mods_a = dict(quantizable_modules(model_a, include_lm_head=include_lm_head, include_embeddings=include_embeddings))
    mods_b = dict(quantizable_modules(model_b, include_lm_head=include_lm_head, include_embeddings=include_embeddings))
    if mods_a.keys() != mods_b.keys():
        missing = sorted(set(mods_a) ^ set(mods_b))[:5]
        raise UQError(f"model_a and model_b do not have the same quantizable modules (e.g. {missing}); accepted values: two models of the same architecture")
    rows = []
    for name, mod_a in mods_a.items():
        w_a, w_b = mod_a.weight.detach(), mods_b[name].weight.detach()
        if w_a.shape != w_b.shape:
            raise UQError(f"model_b's {name} has shape {tuple(w_b.shape)} but model_a's has {tuple(w_a.shape)}; accepted values: two models of the same architecture")
        same_code = quantize_codes(w_a, spec) == quantize_codes(w_b, spec)
        same_value = fake_quantize_weight(w_a.float(), spec) == fake_quantize_weight(w_b.float(), spec)
        rows.append({"module": name, "layer": _layer_index(name), "module_type": name.split(".")[-1],
                     "n_weights": w_a.numel(), "frac_identical": same_code.float().mean().item(),
                     "frac_identical_values": same_value.float().mean().item()})  # fmt: skip
    df = pd.DataFrame(rows, columns=["module", "layer", "module_type", "n_weights", "frac_identical", "frac_identical_values"])
    df["layer"] = df["layer"].astype("Int64")
    return df


def load_quantized_pretrained(path: str | Path, quantizer: str | QuantSpec = "nf4", *, device_map: str | dict = "cpu",
                              dtype: torch.dtype | str | None = None, **kwargs: Any) -> nn.Module:  # fmt: skip
    """Reload a ``save_pretrained`` folder in 4 or 8 bits with bitsandbytes (``BitsAndBytesConfig``).

    ``quantizer``: ``"fp4"``/``"nf4"`` (``load_in_4bit``, blocks of 64, no double quantization: layers
    become ``Linear4bit``) or ``"int8"`` (``load_in_8bit``: ``Linear8bitLt``). The head stays
    unquantized, as transformers does. Runs on the CPU too (verified with bitsandbytes 0.50); ``dtype`` is passed
    to ``from_pretrained`` (and is the 4-bit compute dtype) when given.
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: PLC0415

    spec = get_quantizer(quantizer)
    if not spec.is_bitsandbytes:
        raise UQError(f"quantizer={spec.name!r} is not accepted; accepted values: 'fp4', 'nf4', 'int8' (bitsandbytes formats)")
    if spec.method in ("fp4", "nf4"):
        check_choice("group_size", spec.group_size, (64,))
    if isinstance(dtype, str):
        check_choice("dtype", dtype, ("auto", "float32", "bfloat16", "float16"))
    elif dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise UQError(f"dtype={dtype!r} is not accepted; accepted values: None, 'auto', torch.float32, torch.bfloat16, torch.float16")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UQError(f"path={str(path)!r} is not accepted; accepted values: a folder written by save_pretrained (with config.json)")
    if spec.method == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        compute = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype if isinstance(dtype, torch.dtype) else torch.float32
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.method, bnb_4bit_compute_dtype=compute)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map=device_map, **kwargs)
