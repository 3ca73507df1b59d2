"""SURE (Zhang et al., ICLR 2025, §5): unlearn only the *salient* modules, with a large learning rate.

The paper's fix for "quantization brings the knowledge back" has three parts, each a function here:

1. **Saliency** — :func:`module_saliency`: for every quantizable ``nn.Linear`` weight ``W_m`` of the
   target, ``s_m = ‖∇_{W_m} L_forget(θ_target)‖₂``, the norm of the forget-loss gradient accumulated over
   the whole forget set (batched; the gradient of the mean loss over every forget example). With
   ``granularity="row"`` the norm is taken per output row of each weight instead.
2. **Selection** — :func:`select_modules`: the modules whose saliency is *above* the ``gamma``-th
   percentile of all modules' saliencies (:func:`select_rows` does the same for rows).
3. **Masked unlearning** — :func:`sure_unlearn` runs :func:`utils.unlearning.unlearn` (the one training
   loop every notebook uses) with ``trainable=`` the selected weights: every other parameter has
   ``requires_grad=False``, is never given to the optimizer and comes back bit-identical. A row mask
   additionally zeroes the gradient of unselected rows (Adam then never moves them: its moments stay 0).
   :func:`sure_cached_result` caches a run under ``<cache>/sure/`` keyed by target, data, method,
   recipe, mask and seed.

In the paper's released code the mask is built in a method the Trainer never calls, so the released "SURE"
trains the whole model at a 10x learning rate. Here the mask is applied, and tested.

Which forget loss? At the target, NPO's gradient *equals* GA's (``σ(0)·2 = 1``), so the saliency of GA and
NPO methods is the same map: :func:`forget_gradients` uses the forget log-likelihood.

:func:`answer_metrics` is a cheap ``evaluate`` for :func:`utils.study.evaluate_grid` (teacher-forced answer
accuracy and probability, and PrivLeak) and :func:`sweep_table` labels a grid of SURE runs by threshold
and learning rate.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .validation import UQError, check_choice, check_range

GRANULARITIES = ("module", "row")
#: bump when the masked training or the cache layout changes (part of the cache key)
SURE_VERSION = 1
#: what the cheap sweep metrics are called (teacher-forced, see :func:`answer_metrics`)
CHEAP_METRICS = ("forget_acc", "forget_prob", "retain_acc", "retain_prob", "privleak_auc", "privleak")

Mask = Sequence[str] | Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------------------------------
# 1. Saliency
# --------------------------------------------------------------------------------------------------
def candidate_modules(model: nn.Module, *, include_lm_head: bool = False) -> list[tuple[str, nn.Linear]]:
    """``(name, module)`` of every module SURE may select: the quantizable ``nn.Linear`` layers.

    Embeddings and (by default) the output head are not candidates: no quantizer here touches them, so
    an edit there would survive rounding trivially and say nothing about SURE.
    """
    from .quantization import quantizable_modules

    check_choice("include_lm_head", include_lm_head, (True, False))
    modules = list(quantizable_modules(model, include_lm_head=include_lm_head))
    if not modules:
        raise UQError(f"model={type(model).__name__} has no nn.Linear module to select; accepted values: a transformer with linear layers")
    return modules


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def forget_gradients(
    model: nn.Module,
    tokenizer: Any,
    forget: Any,
    *,
    batch_size: int = 32,
    include_lm_head: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """``{module name: ∇_W mean_i log p(y_i|x_i)}`` (float32) for every candidate weight.

    The gradient of the forget log-likelihood averaged over *all* forget examples, accumulated batch by
    batch (each batch weighted by its size), so the result does not depend on ``batch_size`` beyond
    float rounding. The GA loss is this log-likelihood; NPO's gradient at the target is the same.
    ``model`` is left as it was (no ``.grad`` is written, its ``requires_grad`` flags are unchanged).
    """
    from tqdm.auto import tqdm

    from .unlearning import _logits, encode, select_rows, sequence_log_likelihood

    check_range("batch_size", batch_size, 1, integer=True)
    data = encode(tokenizer, forget, "forget")
    modules = candidate_modules(model, include_lm_head=include_lm_head)
    weights = [m.weight for _, m in modules]
    n = int(data["input_ids"].shape[0])
    device = _device(model)
    was_training = model.training
    flags = [w.requires_grad for w in weights]
    model.eval()
    total = [torch.zeros(w.shape, dtype=torch.float32, device=w.device) for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        starts = range(0, n, batch_size)
        for start in tqdm(starts, desc="forget gradients", disable=not progress, leave=False):
            batch = select_rows(data, torch.arange(start, min(start + batch_size, n)))
            batch = {k: v.to(device) for k, v in batch.items()}
            log_likelihood = sequence_log_likelihood(_logits(model, batch), batch["labels"]).sum() / n
            grads = torch.autograd.grad(log_likelihood, weights, allow_unused=True)
            for acc, g in zip(total, grads):
                if g is not None:
                    acc += g.float()
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
        model.train(was_training)
    return {name: g for (name, _), g in zip(modules, total)}


def _layer_and_type(name: str) -> tuple[int | None, str]:
    from .quantization import _layer_index

    return _layer_index(name), name.split(".")[-1]


def saliency_from_gradients(gradients: Mapping[str, torch.Tensor], granularity: str = "module") -> pd.DataFrame:
    """The saliency table of ``{module: gradient}``: the gradient norm per module (or per output row).

    Columns: ``module``, ``layer`` (block index, ``<NA>`` outside blocks), ``module_type`` (e.g.
    ``"q_proj"``), ``n_weights`` and ``saliency`` (L2 norm); with ``granularity="row"`` also ``row``
    (one table row per output row; ``n_weights`` is the row's length).
    """
    check_choice("granularity", granularity, GRANULARITIES)
    if not gradients:
        raise UQError("gradients is empty; accepted values: a mapping {module name: gradient tensor}")
    rows: list[dict[str, Any]] = []
    for name, grad in gradients.items():
        layer, module_type = _layer_and_type(name)
        g = grad.detach().float()
        if granularity == "module":
            rows.append({"module": name, "layer": layer, "module_type": module_type, "n_weights": g.numel(),
                         "saliency": float(torch.linalg.vector_norm(g))})
        else:
            if g.dim() != 2:
                raise UQError(f"gradients[{name!r}] has shape {tuple(g.shape)}; accepted values: 2-D weights for granularity='row'")
            norms = torch.linalg.vector_norm(g, dim=1).tolist()
            rows += [{"module": name, "layer": layer, "module_type": module_type, "row": r, "n_weights": g.shape[1],
                      "saliency": s} for r, s in enumerate(norms)]
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def module_saliency(
    model: nn.Module,
    tokenizer: Any,
    forget: Any,
    *,
    granularity: str = "module",
    batch_size: int = 32,
    include_lm_head: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """SURE's saliency map: ``‖∇_W L_forget‖₂`` per candidate ``nn.Linear`` weight (or per output row).

    See :func:`forget_gradients` (what is differentiated) and :func:`saliency_from_gradients` (the table).
    Compute it on the *target* (the model before unlearning), as the paper does.
    """
    check_choice("granularity", granularity, GRANULARITIES)
    grads = forget_gradients(model, tokenizer, forget, batch_size=batch_size, include_lm_head=include_lm_head, progress=progress)
    return saliency_from_gradients(grads, granularity)


# --------------------------------------------------------------------------------------------------
# 2. Selection
# --------------------------------------------------------------------------------------------------
def _check_saliency(saliency: Any, granularity: str) -> pd.DataFrame:
    need = ("module", "saliency") + (("row",) if granularity == "row" else ())
    if not isinstance(saliency, pd.DataFrame) or any(c not in saliency.columns for c in need) or saliency.empty:
        raise UQError(f"saliency is not accepted; accepted values: a non-empty table with columns {list(need)} (from module_saliency(granularity={granularity!r}))")
    if granularity == "module" and "row" in saliency.columns:
        raise UQError("saliency has a 'row' column (granularity='row'); accepted values: a module-level table, or use select_rows")
    values = saliency["saliency"].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise UQError("saliency contains NaN or infinite values; accepted values: finite gradient norms")
    return saliency


def saliency_threshold(saliency: pd.DataFrame, gamma: float) -> float:
    """The ``gamma``-th percentile (linear interpolation) of the ``saliency`` column; ``0 < gamma < 100``."""
    check_range("gamma", gamma, 0, 100, low_inclusive=False, high_inclusive=False)
    if "saliency" not in getattr(saliency, "columns", ()):
        raise UQError("saliency is not accepted; accepted values: a table with a 'saliency' column")
    return float(np.percentile(saliency["saliency"].to_numpy(dtype=float), gamma))


def _selected(saliency: pd.DataFrame, gamma: float, unit: str) -> pd.DataFrame:
    threshold = saliency_threshold(saliency, gamma)
    chosen = saliency[saliency["saliency"] > threshold]
    if chosen.empty:
        raise UQError(
            f"gamma={gamma!r} selects no {unit}: no saliency is above its {gamma}th percentile ({threshold:.4g}; "
            f"the largest is {saliency['saliency'].max():.4g}, ties at the top); accepted values: a lower gamma in (0, 100)"
        )
    return chosen


def select_modules(saliency: pd.DataFrame, gamma: float) -> list[str]:
    """The modules whose saliency is strictly above the ``gamma``-th percentile (in model order).

    ``gamma`` is a percentile in (0, 100): 90 keeps about the top 10% of modules. A ``gamma`` outside
    (0, 100), or one that selects no module (all saliencies tied at the top), raises a ``ValueError``.
    """
    saliency = _check_saliency(saliency, "module")
    return list(_selected(saliency, gamma, "module")["module"])


def select_rows(saliency: pd.DataFrame, gamma: float) -> dict[str, torch.Tensor]:
    """Row-level selection: ``{module: bool mask over its output rows}`` for the modules with at least one
    row whose saliency is strictly above the ``gamma``-th percentile of all rows (a row-granularity table)."""
    saliency = _check_saliency(saliency, "row")
    chosen = _selected(saliency, gamma, "row")
    sizes = saliency.groupby("module", sort=False)["row"].max() + 1
    masks: dict[str, torch.Tensor] = {}
    for module, rows in chosen.groupby("module", sort=False)["row"]:
        mask = torch.zeros(int(sizes[module]), dtype=torch.bool)
        mask[torch.tensor(rows.to_numpy(), dtype=torch.long)] = True
        masks[module] = mask
    order = list(dict.fromkeys(saliency["module"]))
    return {m: masks[m] for m in order if m in masks}


def selection_summary(saliency: pd.DataFrame, modules: Sequence[str]) -> dict[str, float]:
    """How much of the model a module selection covers: counts and the share of candidate weights."""
    saliency = _check_saliency(saliency, "module")
    unknown = sorted(set(modules) - set(saliency["module"]))
    if unknown:
        raise UQError(f"modules contains {unknown[:3]} which are not in the saliency table; accepted values: names from its 'module' column")
    chosen = saliency["module"].isin(list(modules))
    return {"modules_selected": int(chosen.sum()), "modules_total": len(saliency),
            "weights_selected": int(saliency.loc[chosen, "n_weights"].sum()),
            "share_of_linear_weights": float(saliency.loc[chosen, "n_weights"].sum() / saliency["n_weights"].sum())}


# --------------------------------------------------------------------------------------------------
# 3. Masked unlearning
# --------------------------------------------------------------------------------------------------
def _check_mask(model: nn.Module, mask: Mask) -> dict[str, torch.Tensor | None]:
    """``{module name: row mask or None (whole weight)}``, validated against ``model``."""
    linear = dict(model.named_modules())
    if isinstance(mask, Mapping):
        items = dict(mask)
    elif isinstance(mask, Sequence) and not isinstance(mask, (str, bytes)):
        items = {m: None for m in mask}
    else:
        raise UQError(f"mask={mask!r} is not accepted; accepted values: a list of module names or a dict {{module name: bool row mask}}")
    if not items:
        raise UQError("mask is empty; accepted values: at least one module name (e.g. from select_modules)")
    for name, rows in items.items():
        module = linear.get(name)
        if not isinstance(module, nn.Linear):
            examples = [n for n, m in linear.items() if isinstance(m, nn.Linear)][:3]
            raise UQError(f"mask names {name!r}, which is not an nn.Linear module of the model; accepted values: module names such as {examples}")
        if rows is not None:
            rows = torch.as_tensor(rows)
            if rows.dtype != torch.bool or rows.shape != (module.weight.shape[0],):
                raise UQError(f"mask[{name!r}] has dtype {rows.dtype} and shape {tuple(rows.shape)}; accepted values: a bool tensor of shape ({module.weight.shape[0]},)")
            if not bool(rows.any()):
                raise UQError(f"mask[{name!r}] selects no row; accepted values: a bool row mask with at least one True")
            items[name] = rows
    return items


def mask_parameter_names(mask: Mask) -> list[str]:
    """The parameter names a module mask trains: ``<module>.weight`` for each selected module."""
    names = list(mask.keys()) if isinstance(mask, Mapping) else list(mask)
    return [f"{m}.weight" for m in names]


def mask_fingerprint(mask: Mask | None) -> str:
    """A stable hash of a mask (module names, and row masks when given); ``"full"`` for ``None``."""
    if mask is None:
        return "full"
    h = hashlib.sha256()
    items = mask.items() if isinstance(mask, Mapping) else ((m, None) for m in mask)
    for name, rows in sorted(items, key=lambda kv: kv[0]):
        h.update(name.encode())
        if rows is not None:
            h.update(torch.as_tensor(rows, dtype=torch.bool).numpy().tobytes())
    return h.hexdigest()[:16]


def sure_unlearn(
    model: nn.Module,
    tokenizer: Any,
    forget: Any,
    retain: Any = None,
    *,
    mask: Mask,
    method: str,
    inplace: bool = False,
    **kwargs: Any,
):
    """Unlearn with :func:`utils.unlearning.unlearn`, training only the weights ``mask`` selects.

    ``mask``: a list of module names (from :func:`select_modules`: their whole weight is trained) or a
    dict ``{module: bool row mask}`` (from :func:`select_rows`: only those output rows move). Every other
    parameter is frozen (out of the optimizer) and comes back bit-identical; unselected rows of a selected
    weight get a zero gradient, so AdamW's moments and update for them stay exactly 0. ``kwargs`` go to
    :func:`~utils.unlearning.unlearn` (``steps``, ``lr``, ``precision``, ``eval_fn``, ...). Returns its
    :class:`~utils.unlearning.UnlearnResult`, with ``settings["mask"]`` the mask's fingerprint.
    """
    from .unlearning import unlearn

    if "trainable" in kwargs:
        raise UQError("trainable is set by sure_unlearn from mask; accepted values: pass mask only")
    items = _check_mask(model, mask)
    work = model if inplace else copy.deepcopy(model)
    modules = dict(work.named_modules())
    hooks = []
    for name, rows in items.items():
        if rows is not None:
            keep = rows.to(modules[name].weight.device).unsqueeze(1)
            hooks.append(modules[name].weight.register_hook(lambda g, keep=keep: g * keep.to(g.dtype)))
    try:
        result = unlearn(work, tokenizer, forget, retain, method=method, trainable=mask_parameter_names(items), inplace=True, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    result.settings["mask"] = mask_fingerprint(mask)
    result.settings["mask_modules"] = list(items)
    return result


def sure_cache_key(target_fingerprint: str, data_fingerprint: str, method: str, recipe: Any, mask: Mask, seed: int) -> str:
    """16-hex-digit key of a masked run: target, data, method, recipe, mask, seed, loop and SURE versions."""
    from .unlearning import LOOP_VERSION, check_method

    payload = {"target": target_fingerprint, "data": data_fingerprint, "method": check_method(method),
               "recipe": asdict(recipe.for_method(method)), "mask": mask_fingerprint(mask), "seed": seed,
               "loop_version": LOOP_VERSION, "sure_version": SURE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def sure_dir(cache_dir: str | Path | None, method: str, key: str) -> Path:
    """``<cache>/sure/<method>-<key>``."""
    from .config import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "sure" / f"{method.lower()}-{key}"


def sure_cached_result(
    world: Any,
    method: str,
    recipe: Any = None,
    mask: Mask | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    eval_every: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    rebuild: bool = False,
):
    """:func:`sure_unlearn` ``world.target`` with ``recipe`` and ``mask``, or load the cached result.

    ``mask=None`` trains the whole model and is exactly :func:`utils.unlearning.unlearn_cached_result`
    (same cache, shared with the other notebooks). Otherwise the model is saved with
    :func:`utils.models.atomic_save_dir` under :func:`sure_dir`, keyed by :func:`sure_cache_key`, with its
    history and settings; a corrupted folder is rebuilt and a file lock makes concurrent callers wait.
    ``eval_every`` (default ``None``: no curves, faster) logs the QA answer metrics during training.
    """
    from .unlearning import (
        UnlearnRecipe,
        check_method,
        examples_fingerprint,
        forget_retain_examples,
        model_fingerprint,
        train_or_load,
        unlearn_cached_result,
    )

    check_method(method)
    check_range("seed", seed, 0, integer=True)
    recipe = (recipe or UnlearnRecipe()).for_method(method)
    if mask is None:
        return unlearn_cached_result(world, method, recipe, seed=seed, cache_dir=cache_dir, eval_every=eval_every,
                                     progress=progress, device=device, rebuild=rebuild)
    _check_mask(world.target, mask)
    forget, retain = forget_retain_examples(world.data, recipe.forget_on)
    key = sure_cache_key(model_fingerprint(world.target), examples_fingerprint(list(forget) + list(retain)), method, recipe, mask, seed)
    # main_process_saves=False: every process saves, as this function always did (no accelerate main-process guard)
    return train_or_load(world, method, recipe, forget, retain, sure_dir(cache_dir, method, key), key,
                         train=functools.partial(sure_unlearn, mask=mask), role="sure", main_process_saves=False,
                         seed=seed, eval_every=eval_every, progress=progress, device=device, rebuild=rebuild)  # fmt: skip


def changed_parameters(model_a: nn.Module, model_b: nn.Module) -> list[str]:
    """Names of the parameters whose bits differ between two models of the same architecture.

    Compares in ``model_b``'s dtype (cast ``model_a`` first, e.g. the fp32 target against a bf16 run).
    """
    params_b = dict(model_b.named_parameters())
    names_a = [n for n, _ in model_a.named_parameters()]
    if set(names_a) != set(params_b):
        raise UQError("model_a and model_b do not have the same parameters; accepted values: two models of the same architecture")
    changed = []
    for name, p_a in model_a.named_parameters():
        p_b = params_b[name]
        if p_a.shape != p_b.shape or not torch.equal(p_a.detach().to(p_b.dtype).cpu(), p_b.detach().cpu()):
            changed.append(name)
    return changed


# --------------------------------------------------------------------------------------------------
# Cheap sweep metrics and tables
# --------------------------------------------------------------------------------------------------
def answer_metrics(
    model: nn.Module,
    tokenizer: Any,
    data: Any,
    *,
    oracle_auc: float | None = None,
    batch_size: int = 64,
    shots: int = 0,
    include: Sequence[str] = ("answers", "privleak"),
    **_: Any,
) -> dict[str, float]:
    """Cheap metrics for sweeps, with :func:`utils.metrics.evaluate_model`'s call signature (pass it as
    ``evaluate=`` to :func:`utils.study.evaluate_grid`): one teacher-forced pass per set, no generation.

    ``forget_acc`` / ``retain_acc``: share of KnowMem questions whose every answer token is the argmax;
    ``forget_prob`` / ``retain_prob``: mean true-answer probability (:func:`utils.metrics.answer_stats`);
    ``privleak_auc`` and, with ``oracle_auc``, ``privleak`` (%): MUSE's Min-K% forget-vs-holdout AUC.
    ``include``: ``"answers"`` and/or ``"privleak"``; :func:`~utils.metrics.evaluate_model`'s group names are
    understood too (``"knowmem"`` and ``"prob"`` mean the answers, ``"verbmem"`` is skipped: it needs generation).
    """
    from .data import qa_examples
    from .metrics import answer_stats, privleak, privleak_auc

    check_range("batch_size", batch_size, 1, integer=True)
    check_range("shots", shots, 0, integer=True)
    for group in include:
        check_choice("include", group, ("answers", "privleak", "knowmem", "prob", "verbmem"))
    answers = bool({"answers", "knowmem", "prob"} & set(include))
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        if answers:
            for split in ("forget", "retain"):
                stats = answer_stats(model, tokenizer, qa_examples(data, split, shots=shots), batch_size)
                out[f"{split}_acc"] = float(stats["correct"].float().mean())
                out[f"{split}_prob"] = float(stats["prob"].mean())
        if "privleak" in include:
            out["privleak_auc"] = privleak_auc(model, tokenizer, data, batch_size=batch_size)
            if oracle_auc is not None:
                out["privleak"] = privleak(out["privleak_auc"], oracle_auc)
    finally:
        model.train(was_training)
    return out


def sweep_name(gamma: float | None, lr: float) -> str:
    """The model name of one sweep run: ``'SURE γ=90 lr=1e-04'`` or ``'full lr=2e-05'`` (``gamma=None``)."""
    check_range("lr", lr, 0, low_inclusive=False)
    if gamma is None:
        return f"full lr={lr:.0e}"
    check_range("gamma", gamma, 0, 100, low_inclusive=False, high_inclusive=False)
    return f"SURE γ={gamma:g} lr={lr:.0e}"


def sweep_table(results: pd.DataFrame, labels: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """``results`` (from :func:`utils.study.evaluate_grid`) with the columns of ``labels[model]`` added
    (e.g. ``{"SURE γ=90 lr=1e-04": {"gamma": 90, "lr": 1e-4, "kind": "SURE"}}``); unlabelled models dropped."""
    if "model" not in getattr(results, "columns", ()):
        raise UQError("results lacks the column 'model'; accepted values: a table from utils.study.evaluate_grid")
    if not labels:
        raise UQError("labels is empty; accepted values: {model name: {column: value}}")
    extra = pd.DataFrame.from_dict({k: dict(v) for k, v in labels.items()}, orient="index")
    extra.index.name = "model"
    return results.merge(extra.reset_index(), on="model", how="inner")


def precision_gaps(table: pd.DataFrame, metric: str = "forget_acc", full: str = "full") -> pd.DataFrame:
    """Per model, ``metric`` at each precision minus its full-precision value (recovery is a positive gap)."""
    for column in ("model", "precision", metric):
        if column not in table.columns:
            raise UQError(f"table lacks the column {column!r}; accepted values: a table with model, precision and {metric!r}")
    wide = table.pivot_table(index="model", columns="precision", values=metric, sort=False)
    if full not in wide.columns:
        raise UQError(f"full={full!r} is not a precision of the table; accepted values: {list(wide.columns)}")
    return wide.drop(columns=full).sub(wide[full], axis=0)


__all__ = [
    "GRANULARITIES", "CHEAP_METRICS", "SURE_VERSION",
    "candidate_modules", "forget_gradients", "saliency_from_gradients", "module_saliency",
    "saliency_threshold", "select_modules", "select_rows", "selection_summary",
    "mask_parameter_names", "mask_fingerprint", "sure_unlearn", "sure_cache_key", "sure_dir", "sure_cached_result",
    "changed_parameters", "answer_metrics", "sweep_name", "sweep_table", "precision_gaps",
]
