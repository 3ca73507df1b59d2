"""Why quantization brings the forgotten back (notebook 04): where the edit lands, the fp32 control, the level tables.

Three questions, each answered by small functions that the notebook calls and the tests check:

1. **Where does the bf16 edit land on the 4-bit grid?** :func:`edit_fates` sorts every weight that the
   unlearning changed into one of three fates under a quantizer — *stayed in the zero bin* (code 0
   before and after), *stayed in another bin* (same non-zero code) or *crossed a bin edge* (the code
   changed) — next to the share of changed weights below the bf16 threshold ``2^8 · lr``.
   :func:`code_identity_grid` stacks ``utils.quantization.code_identity`` over methods and quantizers
   (the heatmap and the explorer read it); :func:`overall_identity` weights it by module size.
   Compare an unlearned bf16 model against the target *rounded to bf16* (:func:`bf16_reference`), since
   that is what the unlearning started from.
2. **Is bf16 storage the cause?** :func:`match_fp32_lr` runs the same unlearning with fp32 weights at a
   few learning rates (each run cached by ``utils.unlearning.unlearn_cached_result``): it walks a candidate
   list until it straddles the bf16 run's full-precision forget accuracy, refines once between the two,
   and keeps the closest (:func:`closest_lr`).
3. **Why NF4 differs from FP4.** :func:`level_table` gives the 16 levels of each 4-bit format (and RTN's
   15) on the normalized scale ``w / absmax``; :func:`zero_bin_edges` where a weight stops rounding to 0.

:func:`recovered_claims` and :func:`unchanged_claims` turn a results table (``utils.study.evaluate_grid``)
into the notebook's asserted claims, one row per (model, precision) with the bound and whether it holds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import nn

from .quantization import (
    FP4_LEVELS,
    NF4_LEVELS,
    code_identity,
    get_quantizer,
    quantizable_modules,
    quantize_codes,
)
from .validation import UQError, check_choice, check_range

#: the quantizers with a level table (uniform RTN grids and bitsandbytes' two 4-bit code books)
LEVEL_QUANTIZERS = ("rtn4", "fp4", "nf4", "rtn8")
#: the fates of a changed weight under a quantizer, in the order the plots stack them
FATES = ("stayed in the zero bin", "stayed in another bin", "crossed a bin edge")
#: bf16 keeps 8 significant bits: an Adam step of about ``lr`` moves a weight only if ``|w| < 2^8 · lr``
BF16_LOG2_FACTOR = 8
#: candidate learning rates for the fp32 control (the bf16 run uses 2e-5; fp32 needs far less, since every fp32 weight moves by about lr per step)
DEFAULT_FP32_LRS = (2.5e-7, 5e-7, 1e-6, 2e-6, 4e-6, 8e-6)
#: where the search starts (seed 0: lr 1e-6 forgets a little less than the bf16 run, 2e-6 more)
DEFAULT_FP32_START = 1e-6
CLAIM_COLUMNS = ("claim", "model", "precision", "value", "reference", "bound", "holds")


# --------------------------------------------------------------------------------------------------
# 1. level tables
# --------------------------------------------------------------------------------------------------
def level_table(quantizer: str) -> torch.Tensor:
    """The sorted distinct levels of a quantizer on the normalized scale ``w / absmax`` (float64).

    ``'rtn4'`` / ``'rtn8'``: ``k / (2^(b-1) - 1)`` for ``k = -(2^(b-1)-1) … 2^(b-1)-1`` (15 / 255 levels,
    evenly spaced); ``'fp4'``: bitsandbytes' FP4 code book (15 distinct levels: its ±0 coincide, and two
    tiny levels ``±1/192`` sit next to 0); ``'nf4'``: the 16 NF4 levels (normal quantiles, densest near 0).
    """
    check_choice("quantizer", quantizer, LEVEL_QUANTIZERS)
    if quantizer.startswith("rtn"):
        top = 2 ** (get_quantizer(quantizer).bits - 1) - 1
        return torch.arange(-top, top + 1, dtype=torch.float64) / top
    raw = FP4_LEVELS if quantizer == "fp4" else NF4_LEVELS
    return torch.unique(torch.tensor(raw, dtype=torch.float64))


def bin_edges(levels: torch.Tensor) -> torch.Tensor:
    """The decision boundaries of round-to-nearest on sorted ``levels``: the midpoints between neighbours."""
    levels = _check_levels(levels)
    return (levels[1:] + levels[:-1]) / 2


def zero_bin_edges(levels: torch.Tensor, *, merge_tiny_levels: bool = True, tiny: float = 1 / 96) -> tuple[float, float]:
    """``(lower, upper)``: the interval of normalized values that round to 0 (or, with
    ``merge_tiny_levels``, to a level smaller than ``tiny`` in magnitude — FP4's ``±1/192``).

    Matches ``utils.quantization.zero_bin_halfwidth`` divided by the block's absmax.
    """
    levels = _check_levels(levels)
    check_choice("merge_tiny_levels", merge_tiny_levels, (True, False))
    check_range("tiny", tiny, 0.0, 1.0, low_inclusive=False)
    zero = int(torch.nonzero(levels == 0)[0]) if bool((levels == 0).any()) else None
    if zero is None:
        raise UQError("levels has no level 0; accepted values: a level table that contains 0 (e.g. level_table('nf4'))")
    lo, hi = zero, zero
    if merge_tiny_levels:
        while lo > 0 and abs(float(levels[lo - 1])) < tiny:
            lo -= 1
        while hi < levels.numel() - 1 and abs(float(levels[hi + 1])) < tiny:
            hi += 1
    lower = float((levels[lo] + levels[lo - 1]) / 2) if lo > 0 else float(levels[0])
    upper = float((levels[hi] + levels[hi + 1]) / 2) if hi < levels.numel() - 1 else float(levels[-1])
    return lower, upper


def levels_frame(quantizers: Sequence[str] = ("rtn4", "fp4", "nf4")) -> pd.DataFrame:
    """One row per quantizer: number of distinct levels, the zero bin, the smallest non-zero level and the
    step next to zero (all on the normalized scale ``w / absmax``)."""
    rows = []
    for q in quantizers:
        levels = level_table(q)
        lower, upper = zero_bin_edges(levels)
        positive = levels[levels > 0]
        rows.append({"quantizer": q, "distinct levels": int(levels.numel()), "zero bin from": lower, "zero bin to": upper,
                     "zero bin width": upper - lower, "smallest positive level": float(positive.min()),
                     "first step above the zero bin": float(_first_gap_above(levels, upper))})  # fmt: skip
    return pd.DataFrame(rows).set_index("quantizer")


def _first_gap_above(levels: torch.Tensor, upper: float) -> float:
    above = levels[levels > upper]
    return float(above[1] - above[0]) if above.numel() > 1 else float("nan")


def _check_levels(levels: Any) -> torch.Tensor:
    if not isinstance(levels, torch.Tensor) or levels.dim() != 1 or levels.numel() < 2:
        raise UQError(f"levels={levels!r} is not accepted; accepted values: a 1-D tensor of at least two sorted levels")
    levels = levels.to(torch.float64)
    if not bool((levels[1:] > levels[:-1]).all()):
        raise UQError("levels is not strictly increasing; accepted values: sorted distinct levels (e.g. level_table('fp4'))")
    return levels


# --------------------------------------------------------------------------------------------------
# 2. where the edit lands
# --------------------------------------------------------------------------------------------------
def bf16_reference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its weights rounded to bf16 (eval mode): what bf16 unlearning starts from."""
    _check_model(model, "model")
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def bf16_threshold(lr: float) -> float:
    """``2^8 · lr``: in bf16, Adam steps of about ``lr`` only move weights smaller than this."""
    check_range("lr", lr, 0.0, low_inclusive=False)
    return 2.0**BF16_LOG2_FACTOR * lr


def quantized_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module name: weight}`` (detached, fp32, CPU) of the modules a quantizer replaces."""
    _check_model(model, "model")
    return {name: module.weight.detach().float().cpu() for name, module in quantizable_modules(model)}


def _paired_weights(reference: nn.Module, unlearned: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    ref, new = quantized_weights(reference), quantized_weights(unlearned)
    if ref.keys() != new.keys():
        raise UQError(f"unlearned does not have the reference's quantized modules (e.g. {sorted(set(ref) ^ set(new))[:3]}); accepted values: two models of the same architecture")
    pairs = []
    for name in ref:
        if ref[name].shape != new[name].shape:
            raise UQError(f"unlearned's {name} has shape {tuple(new[name].shape)} but the reference's has {tuple(ref[name].shape)}; accepted values: two models of the same architecture")
        pairs.append((name, ref[name], new[name]))
    return pairs


def flat_edit(reference: nn.Module, unlearned: nn.Module, quantizer: str) -> dict[str, torch.Tensor]:
    """Every quantized weight of both models, flattened in module order (fp32), with the reference's local
    step and zero-bin half-width under ``quantizer``: ``w_ref``, ``w_new``, ``step``, ``halfwidth`` and
    ``delta_steps`` (``(w_new − w_ref) / step``). The whole-model input of ``utils.plots.deltas``' plots."""
    from .quantization import quantization_step, zero_bin_halfwidth

    spec = get_quantizer(quantizer)
    parts: dict[str, list[torch.Tensor]] = {"w_ref": [], "w_new": [], "step": [], "halfwidth": []}
    for _, w0, w1 in _paired_weights(reference, unlearned):
        parts["w_ref"].append(w0.reshape(-1))
        parts["w_new"].append(w1.reshape(-1))
        parts["step"].append(quantization_step(w0, spec).reshape(-1))
        parts["halfwidth"].append(zero_bin_halfwidth(w0, spec).reshape(-1))
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["delta_steps"] = (out["w_new"] - out["w_ref"]) / out["step"]
    return out


def zero_bin_codes(quantizer: str) -> tuple[int, ...]:
    """The codes (``utils.quantization.quantize_codes``) that count as "in the zero bin": ``(0,)``, and for
    FP4 also its two tiny levels ``±1/192`` (codes ``±1``), as ``zero_bin_halfwidth`` merges them."""
    return (-1, 0, 1) if get_quantizer(quantizer).method == "fp4" else (0,)


def edit_fates(reference: nn.Module, unlearned: nn.Module, quantizer: str, *, lr: float) -> dict[str, float]:
    """Where the weights that changed between ``reference`` and ``unlearned`` land under ``quantizer``.

    Returns ``n_weights``, ``frac_changed`` (share of all quantized weights whose value changed),
    ``frac_below_bf16_threshold`` (share of the changed ones with ``|w_ref| < 2^8·lr``), one share per
    :data:`FATES` over the changed weights (they sum to 1; a move between 0 and FP4's tiny levels
    ``±1/192`` stays in the zero bin, see :func:`zero_bin_codes`), ``frac_codes_changed`` (share of *all*
    weights whose code changed: ``1 −`` the code identity) and ``frac_codes_changed_merged`` (the same with
    FP4's tiny levels counted as 0; equal to ``frac_codes_changed`` for the other formats). Codes come from
    ``utils.quantization.quantize_codes``, each model with its own scales.
    """
    spec = get_quantizer(quantizer)
    threshold = bf16_threshold(lr)
    zero_codes = torch.tensor(zero_bin_codes(quantizer), dtype=torch.int16)
    n = changed = below = codes_changed = merged_changed = 0
    fates = dict.fromkeys(FATES, 0)
    for _, w0, w1 in _paired_weights(reference, unlearned):
        moved = w0 != w1
        c0, c1 = quantize_codes(w0, spec), quantize_codes(w1, spec)
        in_zero = torch.isin(c0, zero_codes) & torch.isin(c1, zero_codes)
        same = (c0 == c1) | in_zero
        n += w0.numel()
        changed += int(moved.sum())
        below += int((moved & (w0.abs() < threshold)).sum())
        codes_changed += int((c0 != c1).sum())
        merged_changed += int((~same).sum())
        fates["stayed in the zero bin"] += int((moved & in_zero).sum())
        fates["stayed in another bin"] += int((moved & same & ~in_zero).sum())
        fates["crossed a bin edge"] += int((moved & ~same).sum())
    share = (lambda k: k / changed) if changed else (lambda k: float("nan"))
    return {"n_weights": n, "frac_changed": changed / n, "frac_below_bf16_threshold": share(below),
            **{fate: share(k) for fate, k in fates.items()}, "frac_codes_changed": codes_changed / n,
            "frac_codes_changed_merged": merged_changed / n}  # fmt: skip


def edit_fates_table(reference: nn.Module, models: Mapping[str, nn.Module], quantizers: Sequence[str], *, lr: float) -> pd.DataFrame:
    """:func:`edit_fates` for every (model, quantizer): one row each, with ``method`` and ``quantizer`` columns."""
    _check_models(models)
    rows = [{"method": name, "quantizer": q, **edit_fates(reference, model, q, lr=lr)} for name, model in models.items() for q in quantizers]
    return pd.DataFrame(rows)


def code_identity_grid(reference: nn.Module, models: Mapping[str, nn.Module], quantizers: Sequence[str], *,
                       merge_tiny_levels: bool = True) -> pd.DataFrame:  # fmt: skip
    """``utils.quantization.code_identity(reference, model, q)`` for every model and quantizer, stacked with
    ``method`` and ``quantizer`` columns (the input of the heatmap and of the weight-delta explorer).

    With ``merge_tiny_levels`` (default), FP4's ``frac_identical`` counts a move between 0 and its tiny
    levels ``±1/192`` as no change (:func:`zero_bin_codes`), like :func:`edit_fates`; the raw share stays
    in ``frac_identical_raw``. Other formats are unaffected."""
    _check_models(models)
    check_choice("merge_tiny_levels", merge_tiny_levels, (True, False))
    frames = []
    for name, model in models.items():
        for q in quantizers:
            frame = code_identity(reference, model, q).assign(method=name, quantizer=q)
            frame["frac_identical_raw"] = frame["frac_identical"]
            if merge_tiny_levels and zero_bin_codes(q) != (0,):
                frame["frac_identical"] = _merged_identity(reference, model, q)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _merged_identity(reference: nn.Module, unlearned: nn.Module, quantizer: str) -> list[float]:
    """Per quantized module, the share of identical codes with :func:`zero_bin_codes` merged."""
    zero_codes = torch.tensor(zero_bin_codes(quantizer), dtype=torch.int16)
    shares = []
    for _, w0, w1 in _paired_weights(reference, unlearned):
        c0, c1 = quantize_codes(w0, quantizer), quantize_codes(w1, quantizer)
        same = (c0 == c1) | (torch.isin(c0, zero_codes) & torch.isin(c1, zero_codes))
        shares.append(float(same.float().mean()))
    return shares


def quantized_value_identity(reference: nn.Module, unlearned: nn.Module, quantizer: str, *, calibration: torch.Tensor | None = None) -> float:
    """Share of the quantized Linear weights whose *dequantized value* is identical after quantizing each
    model with ``quantizer`` (any name of ``utils.quantization.QUANTIZERS``, GPTQ/AWQ included: they need
    ``calibration`` token ids). For RTN/FP4/NF4 this is ``code_identity``'s ``frac_identical_values``
    over the whole model; for GPTQ/AWQ, whose codes depend on the calibration and on earlier rounding
    errors, it shows whether the two models land on the same grid points."""
    from .quantization import fake_quantize_model

    _check_model(reference, "reference")
    _check_model(unlearned, "unlearned")
    get_quantizer(quantizer)
    q_ref = fake_quantize_model(reference, quantizer, calibration=calibration)
    q_new = fake_quantize_model(unlearned, quantizer, calibration=calibration)
    same = total = 0
    for _, w0, w1 in _paired_weights(q_ref, q_new):
        same += int((w0 == w1).sum())
        total += w0.numel()
    return same / total


def overall_identity(grid: pd.DataFrame, column: str = "frac_identical") -> pd.DataFrame:
    """(method × quantizer) share of identical codes over *all* quantized weights (modules weighted by size)."""
    check_choice("column", column, ("frac_identical", "frac_identical_values"))
    need = ("method", "quantizer", "n_weights", column)
    if not isinstance(grid, pd.DataFrame) or any(c not in grid.columns for c in need):
        raise UQError(f"grid is not accepted; accepted values: a DataFrame with columns {', '.join(need)} (from code_identity_grid)")
    weighted = grid.assign(_same=grid[column] * grid["n_weights"]).groupby(["method", "quantizer"], sort=False)[["_same", "n_weights"]].sum()
    table = (weighted["_same"] / weighted["n_weights"]).unstack("quantizer")
    return table.loc[list(dict.fromkeys(grid["method"])), list(dict.fromkeys(grid["quantizer"]))]


# --------------------------------------------------------------------------------------------------
# 3. the fp32 control: same unlearning, fp32 weights, LR matched to the bf16 run's forgetting
# --------------------------------------------------------------------------------------------------
def final_metric(result: Any, column: str = "forget_acc") -> float:
    """The last logged value of ``column`` in an unlearning result's history (``UnlearnResult.history``)."""
    history = getattr(result, "history", None)
    if not isinstance(history, pd.DataFrame) or column not in history.columns or history.empty:
        raise UQError(f"result has no history column {column!r}; accepted values: an UnlearnResult trained with eval_every set "
                      "(its history logs forget_acc, retain_acc, forget_prob, retain_prob)")  # fmt: skip
    return float(history[column].iloc[-1])


def closest_lr(forget_by_lr: Mapping[float, float], goal: float) -> float:
    """The learning rate whose forget accuracy is closest to ``goal`` (ties: the smaller learning rate)."""
    check_range("goal", goal, 0.0, 1.0)
    if not isinstance(forget_by_lr, Mapping) or not forget_by_lr:
        raise UQError("forget_by_lr is empty; accepted values: a non-empty mapping learning rate -> forget accuracy")
    return min(sorted(forget_by_lr), key=lambda lr: abs(forget_by_lr[lr] - goal))


@dataclass
class LRMatch:
    """The fp32 control's learning-rate search: what was tried, what was chosen, and the chosen run."""

    method: str
    goal: float
    lr: float
    table: pd.DataFrame
    result: Any


def bracket(forget_by_lr: Mapping[float, float], goal: float) -> tuple[float, float] | None:
    """``(lo, hi)``: the largest learning rate that forgets less than ``goal`` (accuracy above it) and the
    smallest larger one that forgets at least as much; ``None`` when the tried rates do not straddle ``goal``."""
    check_range("goal", goal, 0.0, 1.0)
    above = [lr for lr, acc in forget_by_lr.items() if acc > goal]
    if not above:
        return None
    lo = max(above)
    below = [lr for lr, acc in forget_by_lr.items() if acc <= goal and lr > lo]
    return (lo, min(below)) if below else None


def geometric_midpoint(lo: float, hi: float) -> float:
    """``sqrt(lo · hi)`` rounded to two significant digits (a readable learning rate, e.g. 1.4e-06)."""
    check_range("lo", lo, 0.0, low_inclusive=False)
    check_range("hi", hi, lo, low_inclusive=False)
    return float(f"{math.sqrt(lo * hi):.2g}")


def match_fp32_lr(
    world: Any,
    method: str,
    goal: float,
    candidates: Sequence[float] = DEFAULT_FP32_LRS,
    *,
    start: float = DEFAULT_FP32_START,
    refine: int = 1,
    recipe: Any = None,
    seed: int = 0,
    cache_dir: Any = None,
    progress: bool = True,
    device: Any = None,
    precision: str = "fp32",
    unlearn_fn: Callable[..., Any] | None = None,
) -> LRMatch:
    """Find the fp32 learning rate whose full-precision forget accuracy (last history row) is closest to
    ``goal`` (the bf16 run's), with as few training runs as possible.

    1. Walk the sorted ``candidates`` from the one nearest ``start``: upwards while the forget accuracy is
       still above ``goal``, downwards while it is at or below it — until the tried rates straddle ``goal``
       (or the list ends).
    2. ``refine`` times, try the geometric midpoint of the bracket (:func:`bracket`, :func:`geometric_midpoint`).
    3. Choose the tried rate closest to ``goal`` (:func:`closest_lr`).

    Every run goes through ``unlearn_fn`` (default ``utils.unlearning.unlearn_cached_result``: trained once,
    then loaded from the cache) with ``recipe`` (default ``UnlearnRecipe()``) changed to
    ``precision=precision, lr=...``: ``"fp32"`` (fp32 storage and arithmetic) or ``"mixed"`` (fp32 storage,
    bf16 matmuls: only the storage differs from the bf16 run). ``table`` has one row per tried learning rate, in the order tried:
    ``lr``, ``forget_acc``, ``retain_acc``, ``gap`` (``|forget_acc − goal|``), ``chosen``.
    """
    from .unlearning import UnlearnRecipe, check_method, unlearn_cached_result

    check_method(method)
    check_range("goal", goal, 0.0, 1.0)
    check_range("seed", seed, 0, integer=True)
    check_range("start", start, 0.0, low_inclusive=False)
    check_range("refine", refine, 0, 5, integer=True)
    check_choice("precision", precision, ("fp32", "mixed"))
    if not isinstance(candidates, Sequence) or isinstance(candidates, str) or not candidates:
        raise UQError(f"candidates={candidates!r} is not accepted; accepted values: a non-empty sequence of positive learning rates")
    for lr in candidates:
        check_range("candidates", lr, 0.0, low_inclusive=False)
    unlearn_fn = unlearn_fn or unlearn_cached_result
    base = recipe or UnlearnRecipe()
    results: dict[float, Any] = {}
    rows: list[dict[str, float]] = []

    def run(lr: float) -> float:
        result = unlearn_fn(world, method, replace(base, precision=precision, lr=lr), seed=seed, cache_dir=cache_dir, progress=progress, device=device)
        results[lr] = result
        rows.append({"lr": lr, "forget_acc": final_metric(result, "forget_acc"), "retain_acc": final_metric(result, "retain_acc")})
        return rows[-1]["forget_acc"]

    grid = sorted(set(float(c) for c in candidates))
    i = min(range(len(grid)), key=lambda k: abs(math.log(grid[k] / start)))
    step = 1 if run(grid[i]) > goal else -1
    while 0 <= i + step < len(grid):
        i += step
        acc = run(grid[i])
        if (acc <= goal) == (step == 1):
            break
    for _ in range(refine):
        found = bracket({r["lr"]: r["forget_acc"] for r in rows}, goal)
        if found is None:
            break
        mid = geometric_midpoint(*found)
        if mid in results:
            break
        run(mid)
    table = pd.DataFrame(rows)
    chosen = closest_lr(dict(zip(table["lr"], table["forget_acc"])), goal)
    table["gap"] = (table["forget_acc"] - goal).abs()
    table["chosen"] = table["lr"] == chosen
    return LRMatch(method=method, goal=float(goal), lr=chosen, table=table, result=results[chosen])


# --------------------------------------------------------------------------------------------------
# 4. the asserted claims
# --------------------------------------------------------------------------------------------------
def _cell(results: pd.DataFrame, model: str, precision: str, metric: str) -> float:
    hit = results[(results["model"] == model) & (results["precision"] == precision)]
    if hit.empty:
        raise UQError(f"results has no row for model={model!r}, precision={precision!r}; accepted values: models "
                      f"{sorted(set(results['model']))} and precisions {sorted(set(results['precision']))}")  # fmt: skip
    return float(hit[metric].iloc[0])


def _check_results(results: Any, metric: str) -> pd.DataFrame:
    need = ("model", "precision", metric)
    if not isinstance(results, pd.DataFrame) or any(c not in results.columns for c in need):
        raise UQError(f"results is not accepted; accepted values: a DataFrame with columns {', '.join(need)} (from utils.study.evaluate_grid)")
    return results


def recovered_claims(
    results: pd.DataFrame,
    methods: Sequence[str],
    precisions: Sequence[str],
    *,
    share: float = 0.9,
    metric: str = "knowmem_forget_acc",
    target: str = "target",
) -> pd.DataFrame:
    """"The knowledge comes back": for each method and precision, ``metric ≥ share × the target's`` at
    that precision. One row per (method, precision) with columns :data:`CLAIM_COLUMNS`."""
    _check_results(results, metric)
    check_range("share", share, 0.0, 1.0)
    rows = []
    for m in methods:
        for p in precisions:
            value, reference = _cell(results, m, p, metric), _cell(results, target, p, metric)
            bound = share * reference
            rows.append({"claim": f"{metric} >= {share:g} x target's", "model": m, "precision": p, "value": value,
                         "reference": reference, "bound": bound, "holds": bool(value >= bound)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def unchanged_claims(
    results: pd.DataFrame,
    models: Sequence[str],
    precisions: Sequence[str],
    *,
    tolerance: float = 0.1,
    metric: str = "knowmem_forget_acc",
    full: str = "full",
) -> pd.DataFrame:
    """"The edit survives": for each model and precision, ``|metric − metric at full precision| ≤ tolerance``.
    One row per (model, precision) with columns :data:`CLAIM_COLUMNS` (``bound`` is the tolerance)."""
    _check_results(results, metric)
    check_range("tolerance", tolerance, 0.0)
    rows = []
    for m in models:
        for p in precisions:
            value, reference = _cell(results, m, p, metric), _cell(results, m, full, metric)
            rows.append({"claim": f"|{metric} - full precision| <= {tolerance:g}", "model": m, "precision": p, "value": value,
                         "reference": reference, "bound": tolerance, "holds": bool(abs(value - reference) <= tolerance + 1e-12)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _check_model(model: Any, name: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UQError(f"{name}={type(model).__name__} is not accepted; accepted values: a torch nn.Module")
    return model


def _check_models(models: Any) -> None:
    if not isinstance(models, Mapping) or not models:
        raise UQError(f"models={type(models).__name__} is not accepted; accepted values: a non-empty dict name -> model")
    for name, model in models.items():
        _check_model(model, f"models[{name!r}]")


__all__ = [
    "LEVEL_QUANTIZERS", "FATES", "DEFAULT_FP32_LRS", "CLAIM_COLUMNS",
    "level_table", "bin_edges", "zero_bin_edges", "levels_frame",
    "bf16_reference", "bf16_threshold", "quantized_weights", "flat_edit", "zero_bin_codes", "edit_fates", "edit_fates_table",
    "code_identity_grid", "overall_identity", "quantized_value_identity",
    "final_metric", "closest_lr", "bracket", "geometric_midpoint", "LRMatch", "match_fp32_lr", "DEFAULT_FP32_START",
    "recovered_claims", "unchanged_claims",
]
