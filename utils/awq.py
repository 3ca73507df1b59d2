"""AWQ (Lin et al., 2023), activation-aware weight quantization: a compact teaching version for the CPU.

The paper we reproduce used AutoAWQ (now deprecated, CUDA/Triton kernels; see ``docs/quantizers.md``).
The idea fits in a few lines: input channels that carry large activations matter more, so scale them
up before rounding (their relative rounding error shrinks) and scale back afterwards:

1. **Activation scale.** From the calibration inputs ``x`` of a Linear, ``a_j = mean |x_j|`` per input
   channel ``j``.
2. **Scale search.** For ``alpha`` on a grid over [0, 1]: ``s = a^alpha`` (clamped at 1e-4 and
   normalized by ``sqrt(max s · min s)``), ``W' = Q(W · diag s) · diag(1/s)`` with round-to-nearest on
   groups of ``group_size`` input columns; keep the ``alpha`` with the smallest output error
   ``mean((x Wᵀ - x W'ᵀ)²)`` on the calibration inputs. ``alpha = 0`` gives ``s = 1``: plain RTN.
3. **Clipping search** (optional, as in the reference): per output row and group, shrink the clipping
   range ``max |w|`` by up to ``max_shrink`` and keep the ratio with the smallest error of that
   group's partial output (on at most ``max_clip_tokens`` calibration tokens). Skipped for q/k
   projections, as the reference does.

Fake quantization, folded: the ``1/s`` is folded back into the weight (a deployment folds it into the
previous op instead), and the model keeps dequantized weights in its dtype. Simplification vs the
reference: the scale is searched *per Linear* on that Linear's output error, not shared by the
Linears that read the same input (q/k/v, gate/up) and scored on the block output. Layers are
calibrated sequentially in forward order, so each sees the inputs of the already-quantized layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .gptq import (
    QuantizedWeight,
    _grid,
    _round_to_grid,
    check_bits,
    check_calibration_ids,
    check_group_size,
    check_model_args,
    plugin_kwargs,
    quantize_model_sequentially,
    rtn_groups,
)
from .quantization import SCHEMES, QuantSpec, register_model_quantizer
from .validation import UQError, check_choice, check_range

#: name fragments of Linears whose clipping is not searched (attention scores amplify their error)
NO_CLIP = ("q_proj", "k_proj", "query", "key", "Wqkv")


def activation_scale(x: Tensor) -> Tensor:
    """Per-input-channel mean absolute activation ``mean |x|`` of calibration inputs ``x`` (..., in)."""
    x = x.reshape(-1, x.shape[-1]).float()
    if x.shape[0] == 0:
        raise UQError("x is empty: the activation scale needs at least one calibration input row")
    return x.abs().mean(dim=0)


def awq_scales(act_scale: Tensor, alpha: float) -> Tensor:
    """AWQ's per-input-channel scale ``s = act_scale^alpha``, clamped at 1e-4, normalized by sqrt(max·min)."""
    check_range("alpha", alpha, 0.0, 1.0)
    s = act_scale.float().pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def awq_fake_quantize(
    w: Tensor, act_scale: Tensor, alpha: float, *, bits: int = 4, group_size: int = 64, scheme: str = "minmax"
) -> Tensor:
    """``Q(W · diag s) · diag(1/s)`` for one ``alpha`` (float32); ``alpha = 0`` is plain RTN."""
    if w.dim() != 2 or act_scale.shape != (w.shape[1],):
        raise UQError(f"act_scale with shape {tuple(act_scale.shape)} is not accepted for w {tuple(w.shape)}; "
                      f"accepted values: one scale per input feature, shape ({w.shape[-1]},)")  # fmt: skip
    s = awq_scales(act_scale, alpha).to(w.device)
    return rtn_groups(w.float() * s, bits=bits, group_size=group_size, scheme=scheme).weight / s


def _clip_search(
    w: Tensor, x: Tensor, *, bits: int, group_size: int, scheme: str, n_grid: int, max_shrink: float, rows_per_batch: int = 256
) -> Tensor:
    """Best clipping bound per (row, group) of ``w`` (out, in) for inputs ``x`` (n, in): the
    ``max |w_group| · (1 - k/n_grid)``, ``k < max_shrink · n_grid``, with the smallest mean squared
    error of the group's partial output ``x_g · w_g``. Returns (out, groups)."""
    out_f, in_f = w.shape
    n_groups = in_f // group_size
    xg = x.float().reshape(-1, n_groups, group_size)  # (n, g, gs)
    wg_all = w.float().reshape(out_f, n_groups, group_size)
    best = wg_all.abs().amax(dim=-1).clone()  # k = 0: no clipping
    for r0 in range(0, out_f, rows_per_batch):
        wg = wg_all[r0 : r0 + rows_per_batch]  # (r, g, gs)
        org_max = wg.abs().amax(dim=-1, keepdim=True)  # (r, g, 1)
        ref = torch.einsum("ngk,rgk->rng", xg, wg)
        best_err = torch.full(org_max.shape[:2], float("inf"), device=w.device)
        best_max = org_max[..., 0].clone()
        for k in range(max(1, int(max_shrink * n_grid))):
            max_val = org_max * (1 - k / n_grid)
            clipped = torch.maximum(torch.minimum(wg, max_val), -max_val)
            q = _quantize_rows(clipped.reshape(-1, group_size), bits, scheme).reshape(clipped.shape)
            err = ((torch.einsum("ngk,rgk->rng", xg, q) - ref) ** 2).mean(dim=1)  # (r, g)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_max = torch.where(better, max_val[..., 0], best_max)
        best[r0 : r0 + rows_per_batch] = best_max
    return best


def _gram_error(w: Tensor, w_hat: Tensor, gram: Tensor, n: int) -> float:
    """``output_error(w, w_hat, x)`` computed from the Gram matrix ``gram = xᵀx`` of ``n`` inputs."""
    dw = w.float() - w_hat.float()
    return float(((dw @ gram) * dw).sum() / (n * dw.shape[0]))


def _quantize_rows(w: Tensor, bits: int, scheme: str) -> Tensor:
    """RTN of every row of ``w`` on its own grid (one row = one group)."""
    scale, zero = _grid(w, bits, scheme)
    return _round_to_grid(w, scale, zero, bits, scheme)[1]


def awq_quantize_weight(
    w: Tensor,
    x: Tensor,
    *,
    bits: int = 4,
    group_size: int = 64,
    n_grid: int = 20,
    scheme: str = "minmax",
    clip: bool = True,
    max_shrink: float = 0.5,
    max_clip_tokens: int = 512,
) -> QuantizedWeight:
    """AWQ one weight ``w`` (out, in) given its calibration inputs ``x`` (n, in).

    Searches ``alpha`` over ``{0, 1/n_grid, ..., 1}``, then (``clip``) the clipping bound per group.
    The returned ``weight`` equals ``((codes - zero) * scale) / s`` group by group, where ``s`` is
    ``info["s"]``; ``info`` also holds ``alpha``, ``losses`` (output error per alpha, as
    :func:`utils.gptq.output_error` computes it), ``loss`` (output error of the returned weight) and
    ``clip_max`` (None without clipping).
    """
    check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    check_range("n_grid", n_grid, 1, integer=True)
    check_choice("clip", clip, (True, False))
    check_range("max_shrink", max_shrink, 0.0, 1.0, high_inclusive=False)
    check_range("max_clip_tokens", max_clip_tokens, 1, integer=True)
    if w.dim() != 2:
        raise UQError(f"w with shape {tuple(w.shape)} is not accepted; it must be a 2-D weight (out_features, in_features)")
    check_group_size(group_size, w.shape[1])
    w = w.detach()
    x = x.detach().reshape(-1, x.shape[-1]).float().to(w.device)
    if x.shape[0] == 0 or x.shape[1] != w.shape[1]:
        raise UQError(f"x with shape {tuple(x.shape)} is not accepted; it must be (n >= 1, {w.shape[1]}) calibration inputs")

    act = activation_scale(x)
    gram = x.T @ x  # mean((x ΔWᵀ)²) = Σ_rows Δw G Δwᵀ / (n · rows): cheaper than x ΔWᵀ per alpha
    losses = {}
    for k in range(n_grid + 1):
        alpha = k / n_grid
        losses[alpha] = _gram_error(w, awq_fake_quantize(w, act, alpha, bits=bits, group_size=group_size, scheme=scheme), gram, x.shape[0])
    alpha = min(losses, key=lambda a: (losses[a], a))
    s = awq_scales(act, alpha).to(w.device)
    ws = w.detach().float() * s
    clip_max = None
    if clip:
        step = max(1, x.shape[0] // max_clip_tokens)
        clip_max = _clip_search(ws, (x / s)[::step][:max_clip_tokens], bits=bits, group_size=group_size, scheme=scheme, n_grid=n_grid, max_shrink=max_shrink)
        bound = clip_max.repeat_interleave(group_size, dim=1)
        ws = torch.maximum(torch.minimum(ws, bound), -bound)
    q = rtn_groups(ws, bits=bits, group_size=group_size, scheme=scheme)
    weight = q.weight / s
    info = {"alpha": alpha, "losses": losses, "s": s, "clip_max": clip_max, "loss": _gram_error(w, weight, gram, x.shape[0])}
    return QuantizedWeight(weight, q.codes, q.scale, q.zero, group_size, info)


def awq_quantize_model(
    model: nn.Module,
    calibration_ids: Tensor,
    *,
    bits: int = 4,
    group_size: int = 64,
    n_grid: int = 20,
    scheme: str = "minmax",
    clip: bool = True,
    attention_mask: Tensor | None = None,
    batch_size: int = 32,
    include_lm_head: bool = False,
    progress: bool = True,
) -> nn.Module:
    """An AWQ fake-quantized copy of ``model`` (the original is untouched).

    Every ``nn.Linear`` except the output head (unless ``include_lm_head``) goes through :func:`awq_quantize_weight`,
    sequentially in forward order, on its inputs for ``calibration_ids`` ((batch, seq) or (seq,)
    token ids; padding excluded through ``attention_mask``). Clipping is not searched for q/k
    projections. The copy carries ``quantization_info`` with the chosen alpha per layer (Linears that the
    forward pass never calls are left unquantized and listed under ``"not_called"``).
    """
    check_model_args(model, bits=bits, group_size=group_size, scheme=scheme, batch_size=batch_size, include_lm_head=include_lm_head)
    check_range("n_grid", n_grid, 1, integer=True)
    check_choice("clip", clip, (True, False))
    check_choice("progress", progress, (True, False))
    ids, mask = check_calibration_ids(calibration_ids, attention_mask)
    inputs: dict[str, list[Tensor]] = {}

    def on_inputs(name: str, x: Tensor) -> None:
        inputs.setdefault(name, []).append(x)

    def quantize_layer(name: str, weight: Tensor) -> tuple[Tensor, dict]:
        x = torch.cat(inputs.pop(name))
        use_clip = clip and not any(tag in name.rsplit(".", 1)[-1] for tag in NO_CLIP)
        q = awq_quantize_weight(weight, x, bits=bits, group_size=group_size, n_grid=n_grid, scheme=scheme, clip=use_clip)
        return q.weight, {"alpha": q.info["alpha"], "loss": q.info["loss"], "rtn_loss": q.info["losses"][0.0], "clipped": use_clip}

    return quantize_model_sequentially(
        model, ids, mask, on_inputs=on_inputs, quantize_layer=quantize_layer, desc=f"AWQ {bits}-bit",
        batch_size=batch_size, progress=progress, include_lm_head=include_lm_head,
        info={"method": "awq", "bits": bits, "group_size": group_size, "scheme": scheme, "clip": clip},
    )


# --------------------------------------------------------------------------------------------------
# Plug-in for utils.quantization: fake_quantize_model(model, "awq4", calibration=ids)
# --------------------------------------------------------------------------------------------------
def _awq_plugin(model: nn.Module, spec: QuantSpec, *, calibration: Tensor | None, include_lm_head: bool,
                include_embeddings: bool, progress: bool | None = None) -> nn.Module:  # fmt: skip
    kwargs = plugin_kwargs(spec, ("n_grid", "clip", "batch_size", "progress"), include_embeddings=include_embeddings)
    if progress is not None:
        kwargs["progress"] = progress  # fake_quantize_model(progress=...) wins over the spec's option
    return awq_quantize_model(model, calibration, include_lm_head=include_lm_head, **kwargs)


#: ``awq4``: AutoAWQ's default asymmetric grid (zero point), groups of 64 as the other 4-bit formats here;
#: ``awq4_absmax``: the symmetric grid of ``rtn4``, so the two differ only by AWQ's scaling and clipping.
AWQ_SPECS = (
    QuantSpec("awq4", method="awq", bits=4, scheme="minmax", group_size=64, needs_calibration=True),
    QuantSpec("awq4_absmax", method="awq", bits=4, scheme="absmax", group_size=64, needs_calibration=True),
)
register_model_quantizer("awq", _awq_plugin, specs=AWQ_SPECS)
