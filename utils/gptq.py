"""GPTQ (Frantar et al., 2022) at 2..8 bits: a compact, faithful teaching version that runs on a CPU.

The paper we reproduce quantized its unlearned 7B models with AutoGPTQ on GPUs. That library is
archived and CUDA-only; its successors do not install against this project's pinned stack (see
``docs/quantizers.md``). This module re-implements the algorithm in ~200 lines of torch so a class can
read it and run it on a tiny Llama in seconds:

1. **Calibration.** Feed token ids through the model; forward pre-hooks on every ``nn.Linear`` (the
   output embedding excepted, as in AutoGPTQ and bitsandbytes) accumulate ``H = 2/n · Σ x xᵀ`` over the
   ``n`` calibration tokens. Layers are quantized *sequentially*, in the order the forward pass calls
   them: the inputs of a layer are computed by the already-quantized layers before it, so later layers
   can compensate earlier errors. Linears that read the same tensor (q/k/v, gate/up) share one pass.
2. **Per layer.** Dampen ``H += damp · mean(diag H) · I``, take the upper Cholesky factor of ``H⁻¹``, and
   quantize the weight one input column at a time; the rounding error of column ``i`` (divided by
   ``[H⁻¹]ᵢᵢ``) is fed back into the not-yet-quantized columns through row ``i`` of that factor
   ("optimal brain quantization" with the Cholesky reformulation and lazy block updates).
3. **Grid.** Per group of ``group_size`` input columns and per output row, the uniform RTN grid of
   :mod:`utils.quantization` (``rtn_grid_params``): ``"minmax"`` (asymmetric, ``2^bits`` levels over
   ``[min(w, 0), max(w, 0)]`` with an integer zero point: the GPTQ reference's convention) or
   ``"absmax"`` (symmetric, levels ``±(2^(bits-1)-1)`` times ``absmax / (2^(bits-1)-1)``: the grid of
   ``rtn4``). A group's grid is fixed when GPTQ reaches its first column, from the error-updated weights.

Fake quantization: the returned model holds the *dequantized* weights in the model's dtype, so every
metric of the series runs on it unchanged. Deviations from the reference code, all deliberate:
columns that never see a non-zero input ("dead") are quantized by plain rounding instead of being
zeroed (their weights matter to the weight-level diagnostics of the series); if the Cholesky
factorization fails the dampening is raised tenfold (up to three times) instead of crashing; the
lazy-update block is a multiple of the group size so a group's grid is computed from fully updated
weights. ``act_order`` (AutoGPTQ's ``desc_act``, on by default there) is available but off by default:
with it a group is no longer a run of consecutive columns, which the weight diagnostics of the series
assume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .quantization import (
    BITS_RANGE,
    CODE_DTYPE,
    SCHEMES,
    QuantSpec,
    quantizable_modules,
    register_model_quantizer,
    rtn_decode,
    rtn_dequantize,
    rtn_encode,
    rtn_grid_params,
    rtn_quantize,
)
from .validation import UQError, check_choice, check_range

#: columns processed per lazy batch update (rounded to a multiple of the group size)
DEFAULT_BLOCK_SIZE = 128


# --------------------------------------------------------------------------------------------------
# Parameter checks shared with utils.awq
# --------------------------------------------------------------------------------------------------
def check_bits(bits: int) -> int:
    """Accept an integer bit width in 2..8."""
    return check_range("bits", bits, *BITS_RANGE, integer=True)


def check_group_size(group_size: int, in_features: int) -> int:
    """Accept a positive group size that divides ``in_features`` (the columns of the weight)."""
    check_range("group_size", group_size, 1, integer=True)
    if in_features % group_size:
        divisors = [d for d in range(1, in_features + 1) if in_features % d == 0]
        raise UQError(
            f"group_size={group_size!r} is not accepted: it must divide the number of input features "
            f"({in_features}); accepted values: {', '.join(map(str, divisors))}"
        )
    return group_size


def check_calibration_ids(calibration_ids: Any, attention_mask: Any = None) -> tuple[Tensor, Tensor]:
    """Return ``(ids, mask)`` as 2-D integer tensors; reject empty, non-integer or mismatched input."""
    if not isinstance(calibration_ids, Tensor):
        raise UQError(f"calibration_ids={type(calibration_ids).__name__} is not accepted; it must be a torch.Tensor of token ids")
    if calibration_ids.numel() == 0:
        raise UQError(f"calibration_ids with shape {tuple(calibration_ids.shape)} is not accepted; it must hold at least one token id")
    if calibration_ids.dtype.is_floating_point or calibration_ids.dtype == torch.bool or calibration_ids.dim() not in (1, 2):
        raise UQError(
            f"calibration_ids (dtype {calibration_ids.dtype}, {calibration_ids.dim()}-D) is not accepted; "
            "it must be an integer tensor of shape (sequence,) or (batch, sequence)"
        )
    ids = calibration_ids if calibration_ids.dim() == 2 else calibration_ids.unsqueeze(0)
    if attention_mask is None:
        mask = torch.ones_like(ids)
    else:
        if not isinstance(attention_mask, Tensor) or attention_mask.numel() != ids.numel():
            raise UQError(f"attention_mask is not accepted; it must be a tensor with the shape of calibration_ids {tuple(ids.shape)}")
        mask = attention_mask.reshape(ids.shape).long()
        if int(mask.sum()) == 0:
            raise UQError("attention_mask is all zeros: the calibration set is empty; accepted values: a mask with at least one 1")
    return ids.long(), mask


# --------------------------------------------------------------------------------------------------
# The uniform grid: utils.quantization's RTN grid, one group of columns at a time
# --------------------------------------------------------------------------------------------------
def _grid(w: Tensor, bits: int, scheme: str) -> tuple[Tensor, Tensor]:
    """Per-row ``(scale, zero)`` (each (rows, 1)) of the RTN grid of ``w`` (rows, group columns)."""
    return rtn_grid_params(w.float(), bits, scheme)


def _round_to_grid(w: Tensor, scale: Tensor, zero: Tensor, bits: int, scheme: str) -> tuple[Tensor, Tensor]:
    """``(codes, values)`` of ``w`` (rows, k) rounded to the nearest point of the per-row grid."""
    codes = rtn_encode(w, scale, zero, bits, scheme)
    return codes, rtn_decode(codes, scale, zero)


@dataclass
class QuantizedWeight:
    """A fake-quantized weight and the grid it lies on.

    ``weight`` (float32, shape of the input weight) equals ``(codes - zero) * scale`` group by group
    (for AWQ: divided by its input-channel scales ``info["s"]``); ``scale`` and ``zero`` (float32) have
    shape (rows, groups); ``codes`` are int16, as in :mod:`utils.quantization`. ``group_index`` maps
    each input column to its group (``column // group_size`` unless GPTQ ran with ``act_order``).
    ``info`` holds method-specific extras (GPTQ: the dampening used; AWQ: the chosen alpha, ...).
    """

    weight: Tensor
    codes: Tensor
    scale: Tensor
    zero: Tensor
    group_size: int
    info: dict[str, Any] = field(default_factory=dict)
    group_index: Tensor | None = None

    def _columns(self) -> Tensor:
        if self.group_index is not None:
            return self.group_index
        return torch.arange(self.weight.shape[1], device=self.weight.device) // self.group_size

    def step_per_weight(self) -> Tensor:
        """The grid step of every weight's group, with the weight's shape (for AWQ: of ``W · s``)."""
        return self.scale[:, self._columns()]

    def zero_point_per_weight(self) -> Tensor:
        """The zero point of every weight's group, with the weight's shape."""
        return self.zero[:, self._columns()]


def rtn_groups(w: Tensor, *, bits: int = 4, group_size: int = 64, scheme: str = "minmax") -> QuantizedWeight:
    """Round-to-nearest on the same per-row, per-group grid GPTQ uses (``utils.quantization.rtn_quantize``).

    >>> q = rtn_groups(torch.randn(4, 8), bits=4, group_size=4)
    >>> q.weight.shape, q.scale.shape
    (torch.Size([4, 8]), torch.Size([4, 2]))
    """
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    if not isinstance(w, Tensor) or w.dim() != 2:
        raise UQError(f"w with shape {tuple(getattr(w, 'shape', ()))} is not accepted; it must be a 2-D weight (out_features, in_features)")
    check_group_size(group_size, w.shape[1])
    q = rtn_quantize(w.detach().float(), bits, scheme, "group", group_size)
    return QuantizedWeight(rtn_dequantize(q), q.codes, q.scales.float(), q.zeros.float(), group_size)


def output_error(w: Tensor, w_hat: Tensor, x: Tensor) -> float:
    """Mean squared output error ``mean((x wᵀ - x ŵᵀ)²)`` of a Linear over calibration inputs ``x`` (n, in)."""
    x = x.detach().reshape(-1, x.shape[-1]).float()
    return float(((x @ (w.detach().float() - w_hat.detach().float()).T) ** 2).mean())


def hessian(x: Tensor) -> Tensor:
    """GPTQ's proxy Hessian ``H = 2/n · Σ x xᵀ`` of the inputs ``x`` (n, in) of one Linear."""
    x = x.reshape(-1, x.shape[-1]).float()
    if x.shape[0] == 0:
        raise UQError("x is empty: the Hessian needs at least one calibration input row")
    return 2.0 * x.T @ x / x.shape[0]


# --------------------------------------------------------------------------------------------------
# GPTQ on one weight
# --------------------------------------------------------------------------------------------------
def _inverse_cholesky(H: Tensor, damp: float) -> tuple[Tensor, float]:
    """Upper Cholesky factor of ``(H + λI)⁻¹`` with ``λ = damp · mean(diag H)``; raise λ if needed."""
    mean_diag = float(torch.diag(H).mean())
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    for d in [damp * 10**k for k in range(4)] if damp > 0 else [0.0, 1e-3, 1e-2, 1e-1]:
        L, info = torch.linalg.cholesky_ex(H + d * mean_diag * eye)
        if int(info) == 0:
            U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
            if int(info) == 0:
                return U, d
    raise UQError(f"damp={damp!r}: the Hessian is not positive definite even with 1000x dampening; use more calibration tokens")


def gptq_quantize_weight(
    w: Tensor,
    H: Tensor,
    *,
    bits: int = 4,
    group_size: int = 64,
    damp: float = 0.01,
    scheme: str = "minmax",
    act_order: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> QuantizedWeight:
    """Quantize one weight ``w`` (out, in) with GPTQ, given the Hessian ``H`` (in, in) of its inputs.

    Returns a :class:`QuantizedWeight` whose ``weight`` is on the per-group grid (``codes``, ``scale``,
    ``zero``) and minimizes, greedily column by column, ``tr((W - Q) H (W - Q)ᵀ)`` — the squared
    output error on the calibration inputs. With ``H = I`` no error is fed back and GPTQ equals RTN.
    ``act_order`` (AutoGPTQ's ``desc_act``) processes the columns by decreasing ``diag H``; groups are
    then consecutive in that order (see ``group_index``).
    """
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    check_range("damp", damp, 0.0, 1.0)
    check_choice("act_order", act_order, (True, False))
    check_range("block_size", block_size, 1, integer=True)
    if w.dim() != 2:
        raise UQError(f"w with shape {tuple(w.shape)} is not accepted; it must be a 2-D weight (out_features, in_features)")
    rows, cols = w.shape
    check_group_size(group_size, cols)
    if H.shape != (cols, cols):
        raise UQError(f"H with shape {tuple(H.shape)} is not accepted; it must be ({cols}, {cols}) for a weight with {cols} input features")

    W = w.detach().float().clone()
    H = H.detach().float().clone().to(W.device)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0  # a column that never sees input: plain rounding, no feedback
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else None
    if perm is not None:
        W, H = W[:, perm], H[perm][:, perm]
    U, used_damp = _inverse_cholesky(H, damp)

    block = max(group_size, (block_size // group_size) * group_size)
    Q, codes = torch.zeros_like(W), torch.zeros(W.shape, dtype=CODE_DTYPE, device=W.device)
    scales, zeros = W.new_empty(rows, cols // group_size), W.new_empty(rows, cols // group_size)
    scale = zero = None
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if col % group_size == 0:  # fix this group's grid from the error-updated weights
                scale, zero = _grid(W1[:, i : i + group_size], bits, scheme)
                scales[:, col // group_size], zeros[:, col // group_size] = scale[:, 0], zero[:, 0]
            c, q = _round_to_grid(W1[:, i : i + 1], scale, zero, bits, scheme)
            q = q[:, 0]
            codes[:, col], Q[:, col] = c[:, 0], q
            err = (W1[:, i] - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    info = {"damp_used": used_damp, "dead_columns": int(dead.sum())}
    if perm is None:
        return QuantizedWeight(Q, codes, scales, zeros, group_size, info)
    inverse = torch.argsort(perm)
    group_index = (torch.arange(cols, device=W.device) // group_size)[inverse]
    return QuantizedWeight(Q[:, inverse], codes[:, inverse], scales, zeros, group_size, info, group_index)


# --------------------------------------------------------------------------------------------------
# Sequential calibration over a model (shared with utils.awq)
# --------------------------------------------------------------------------------------------------
class _StopForward(Exception):
    """Raised from a hook once the inputs a pass needs are captured (the rest of the model is skipped)."""


def quantizable_linears(model: nn.Module, *, include_lm_head: bool = False) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules of ``model`` by name that :mod:`utils.quantization` quantizes: all but
    the output head (``lm_head``), which AutoGPTQ/AutoAWQ and bitsandbytes keep in full precision,
    unless ``include_lm_head``."""
    return dict(quantizable_modules(model, include_lm_head=include_lm_head))


def _batches(ids: Tensor, mask: Tensor, batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, ids.shape[0], batch_size):
        yield ids[start : start + batch_size].to(device), mask[start : start + batch_size].to(device)


def _forward(model: nn.Module, ids: Tensor, mask: Tensor) -> None:
    try:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    except _StopForward:
        pass


def linear_groups_in_call_order(model: nn.Module, linears: dict[str, nn.Linear], ids: Tensor, mask: Tensor) -> list[list[str]]:
    """Names of ``linears`` in the order one forward pass calls them, consecutive calls on the very
    same input tensor grouped together (q/k/v, gate/up). Linears never called are left out."""
    order: list[tuple[str, Tensor]] = []

    def record(_module: nn.Module, args: tuple, name: str) -> None:
        if all(n != name for n, _ in order):
            order.append((name, args[0]))

    handles = [lin.register_forward_pre_hook(lambda m, a, n=name: record(m, a, n)) for name, lin in linears.items()]
    try:
        with torch.no_grad():
            _forward(model, ids[:1], mask[:1])
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    previous = None
    for name, inp in order:
        if groups and inp is previous:
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = inp
    return groups


def sequential_calibration(
    model: nn.Module,
    ids: Tensor,
    mask: Tensor,
    *,
    batch_size: int,
    on_inputs: Callable[[str, Tensor], None],
    on_group_done: Callable[[list[str]], None],
    desc: str,
    progress: bool = True,
    include_lm_head: bool = False,
) -> list[list[str]]:
    """Drive a layer-by-layer calibration: for each group of Linears (in call order), run the
    calibration batches through ``model`` (already modified for the earlier groups), hand every
    group member's unmasked input rows (n, in) to ``on_inputs(name, x)``, then call
    ``on_group_done(group)`` (which quantizes those Linears in place). Returns the groups."""
    linears = quantizable_linears(model, include_lm_head=include_lm_head)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    groups = linear_groups_in_call_order(model, linears, ids, mask)
    current_mask: list[Tensor] = [mask]
    for group in tqdm(groups, desc=desc, disable=not progress):
        seen: set[str] = set()

        def hook(_module: nn.Module, args: tuple, name: str) -> None:
            x = args[0]
            keep = current_mask[0].reshape(-1).bool() if x.dim() == 3 else slice(None)
            on_inputs(name, x.reshape(-1, x.shape[-1])[keep].float())
            seen.add(name)
            if len(seen) == len(group):
                raise _StopForward  # later layers are not needed for this group

        handles = [linears[n].register_forward_pre_hook(lambda m, a, n=n: hook(m, a, n)) for n in group]
        try:
            with torch.no_grad():
                for b_ids, b_mask in _batches(ids, mask, batch_size, device):
                    current_mask[0] = b_mask
                    seen.clear()
                    _forward(model, b_ids, b_mask)
        finally:
            for h in handles:
                h.remove()
        on_group_done(group)
    return groups


def quantize_model_sequentially(
    model: nn.Module,
    ids: Tensor,
    mask: Tensor,
    *,
    on_inputs: Callable[[str, Tensor], None],
    quantize_layer: Callable[[str, Tensor], tuple[Tensor, dict]],
    desc: str,
    batch_size: int,
    progress: bool,
    include_lm_head: bool,
    info: dict[str, Any],
) -> nn.Module:
    """The model-level loop shared by GPTQ and AWQ: a fake-quantized copy of ``model`` (the original is untouched).

    :func:`sequential_calibration` on an eval-mode copy hands the inputs of each Linear to
    ``on_inputs(name, x)``; once its group is done, ``quantize_layer(name, weight)`` returns the
    new weight (stored in the layer's dtype) and that layer's info. The copy gets ``model``'s
    train/eval mode back and carries ``quantization_info``: ``info`` plus ``"layers"`` (the info
    per layer) and ``"not_called"`` (Linears the forward pass never calls, left unquantized).
    """
    qmodel = copy.deepcopy(model).eval()
    linears = quantizable_linears(qmodel, include_lm_head=include_lm_head)
    layers: dict[str, dict] = {}

    def on_group_done(group: list[str]) -> None:
        for name in group:
            lin = linears[name]
            weight, layers[name] = quantize_layer(name, lin.weight)
            lin.weight.data.copy_(weight.to(lin.weight.dtype))

    groups = sequential_calibration(
        qmodel, ids, mask, batch_size=batch_size, on_inputs=on_inputs, on_group_done=on_group_done,
        desc=desc, progress=progress, include_lm_head=include_lm_head,
    )
    not_called = sorted(set(linears) - {name for group in groups for name in group})
    qmodel.train(model.training)
    qmodel.quantization_info = {**info, "layers": layers, "not_called": not_called}
    return qmodel


def check_model_args(model: nn.Module, *, bits: int, group_size: int, scheme: str, batch_size: int,
                     include_lm_head: bool = False) -> dict[str, nn.Linear]:  # fmt: skip
    """Validate the arguments shared by the model-level quantizers; return the target Linears."""
    if not isinstance(model, nn.Module):
        raise UQError(f"model={type(model).__name__} is not accepted; it must be a torch.nn.Module (a causal LM)")
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    check_range("batch_size", batch_size, 1, integer=True)
    check_choice("include_lm_head", include_lm_head, (True, False))
    linears = quantizable_linears(model, include_lm_head=include_lm_head)
    if not linears:
        raise UQError("model has no nn.Linear to quantize (the output embedding is kept in full precision)")
    check_range("group_size", group_size, 1, integer=True)
    for name, lin in linears.items():
        try:
            check_group_size(group_size, lin.in_features)
        except UQError as err:
            raise UQError(f"{err} (layer {name!r})") from None
    return linears


def gptq_quantize_model(
    model: nn.Module,
    calibration_ids: Tensor,
    *,
    bits: int = 4,
    group_size: int = 64,
    damp: float = 0.01,
    scheme: str = "minmax",
    act_order: bool = False,
    attention_mask: Tensor | None = None,
    batch_size: int = 32,
    include_lm_head: bool = False,
    progress: bool = True,
) -> nn.Module:
    """A GPTQ fake-quantized copy of ``model`` (the original is untouched).

    Every ``nn.Linear`` except the output head (unless ``include_lm_head``) is quantized with
    :func:`gptq_quantize_weight`, sequentially in forward order, from the Hessian of its inputs on
    ``calibration_ids`` ((batch, seq) or (seq,) token ids; padding excluded through ``attention_mask``).
    The weights are stored dequantized in the model's dtype. The copy carries ``quantization_info`` (per-layer extras;
    Linears that the forward pass never calls are left unquantized and listed under ``"not_called"``).
    """
    check_model_args(model, bits=bits, group_size=group_size, scheme=scheme, batch_size=batch_size, include_lm_head=include_lm_head)
    check_range("damp", damp, 0.0, 1.0)
    check_choice("act_order", act_order, (True, False))
    check_choice("progress", progress, (True, False))
    ids, mask = check_calibration_ids(calibration_ids, attention_mask)
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def on_inputs(name: str, x: Tensor) -> None:
        sums[name] = sums.get(name, 0) + x.T @ x
        counts[name] = counts.get(name, 0) + x.shape[0]

    def quantize_layer(name: str, weight: Tensor) -> tuple[Tensor, dict]:
        H = 2.0 * sums.pop(name) / counts.pop(name)
        q = gptq_quantize_weight(weight, H, bits=bits, group_size=group_size, damp=damp, scheme=scheme, act_order=act_order)
        return q.weight, q.info

    return quantize_model_sequentially(
        model, ids, mask, on_inputs=on_inputs, quantize_layer=quantize_layer, desc=f"GPTQ {bits}-bit",
        batch_size=batch_size, progress=progress, include_lm_head=include_lm_head,
        info={"method": "gptq", "bits": bits, "group_size": group_size, "scheme": scheme, "damp": damp, "act_order": act_order},
    )


# --------------------------------------------------------------------------------------------------
# Plug-in for utils.quantization: fake_quantize_model(model, "gptq4", calibration=ids)
# --------------------------------------------------------------------------------------------------
def plugin_kwargs(spec: QuantSpec, allowed: tuple[str, ...], *, include_embeddings: bool) -> dict[str, Any]:
    """The keyword arguments a plug-in passes on from ``spec`` (shared with utils.awq)."""
    if include_embeddings:
        raise UQError(f"include_embeddings=True is not accepted for quantizer={spec.name!r}: {spec.method.upper()} quantizes "
                      "Linear layers from their input activations; accepted values: False")  # fmt: skip
    check_choice("granularity", spec.granularity, ("group",))
    options = dict(spec.options)
    for key in options:
        check_choice("option", key, allowed)
    return {"bits": spec.bits, "group_size": spec.group_size, "scheme": spec.scheme, **options}


def _gptq_plugin(model: nn.Module, spec: QuantSpec, *, calibration: Tensor | None, include_lm_head: bool,
                 include_embeddings: bool, progress: bool | None = None) -> nn.Module:  # fmt: skip
    kwargs = plugin_kwargs(spec, ("damp", "act_order", "batch_size", "progress"), include_embeddings=include_embeddings)
    if progress is not None:
        kwargs["progress"] = progress  # fake_quantize_model(progress=...) wins over the spec's option
    return gptq_quantize_model(model, calibration, include_lm_head=include_lm_head, **kwargs)


#: ``gptq4``: symmetric grid, groups of 64, as ``rtn4`` (AutoGPTQ's default is symmetric too), so the two
#: differ only by GPTQ's error feedback; ``gptq4_minmax``: the GPTQ reference's asymmetric grid.
GPTQ_SPECS = (
    QuantSpec("gptq4", method="gptq", bits=4, scheme="absmax", group_size=64, needs_calibration=True),
    QuantSpec("gptq4_minmax", method="gptq", bits=4, scheme="minmax", group_size=64, needs_calibration=True),
)
register_model_quantizer("gptq", _gptq_plugin, specs=GPTQ_SPECS)
