"""The headless study runner: target -> unlearning methods -> every quantizer -> metrics.

    python -m utils.study --model tiny --data mini --out build/study
    uq-study --model smollm2-135m --device cuda --out runs/smollm2          # after `pip install -e .`
    accelerate launch -m utils.study --model muse-news-7b --data news ...  # several GPUs

Every stage writes its result to ``<out>/stages/`` through a temporary name and a rename, so an
interrupted run resumes where it stopped (finished stages are skipped). A stage's file name ends with a
key that hashes everything that decides it (the target and oracle, the corpus, the unlearning method,
recipe and seed, the quantizer's definition, the evaluation options), so a run with other settings in
the same folder recomputes what changed, never reuses a stage made otherwise, and replaces it (one file
per stage: the last settings'). Unlearned models live in the model cache (``UQ_CACHE``), keyed by recipe. The results land in ``<out>/results.csv`` and
``<out>/results.json``, the figures in ``<out>/*.png``.

Notebooks 04 and 06 use :func:`evaluate_grid`, :func:`recovery_table` and :func:`knowledge_kept`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .validation import UQError, check_choice, check_range, check_writable_dir

#: the paper's headline: share of forgotten knowledge kept, utility-constrained methods, averaged
PAPER_KEPT = {"full precision": 0.21, "4-bit": 0.83}
#: the full-precision column name in every table
FULL = "full"
CONSTRAINED = ("GA_GDR", "GA_KLR", "NPO_GDR", "NPO_KLR")
CPU_QUANTIZERS = ("rtn8", "int8", "rtn4", "fp4", "nf4", "gptq4", "awq4")
#: bump when what a stage stores, or how it is computed, changes in a way its key does not capture
STAGE_VERSION = 1
HEADLINE_METRICS = ("knowmem_forget_acc", "forget_answer_prob", "knowmem_retain_acc", "retain_answer_prob",
                    "verbmem_forget", "privleak")


# --------------------------------------------------------------------------------------------------
# the world a study runs on
# --------------------------------------------------------------------------------------------------
@dataclass
class StudyWorld:
    """Target, retrain oracle, tokenizer and data (the same shape as :class:`utils.models.TinyWorld`)."""

    target: Any
    oracle: Any
    tokenizer: Any
    data: Any
    target_dir: Path | None = None
    oracle_dir: Path | None = None
    shots: int = 0
    name: str = "tiny"


def estimate_gpu_gib(model_name: str) -> tuple[float, float]:
    """(evaluate, unlearn) GPU memory estimates in GiB for a preset; (0, 0) for the tiny model.

    For a local folder or a hub id that is not a preset: 2 bytes per parameter to evaluate in bf16,
    ~8x that to unlearn (weights, gradients, AdamW state and a frozen reference), from its config.
    """
    from .models import PRESETS

    preset = PRESETS.get(model_name)
    if preset is not None:
        return float(preset.gpu_gb_eval), float(preset.gpu_gb_unlearn)
    return 0.0, 0.0


def check_fits(model_name: str, device: torch.device) -> str:
    """Stop early, with a clear message, when a preset needs a GPU that is absent or too small.

    Returns a one-line estimate to print (what the preset needs and what the device has).
    """
    need_eval, need_unlearn = estimate_gpu_gib(model_name)
    if need_unlearn == 0:
        return f"{model_name}: runs on the CPU (no GPU needed)"
    if device.type != "cuda":
        if need_unlearn >= 4:
            raise UQError(
                f"UQ_MODEL={model_name!r} needs a GPU with about {need_unlearn:g} GiB to unlearn "
                f"({need_eval:g} GiB to evaluate), but the device is {device.type!r}; accepted values here: "
                "UQ_MODEL='tiny' (the offline default), or run on a machine with a CUDA GPU (UQ_DEVICE='cuda')"
            )
        return f"{model_name}: ~{need_unlearn:g} GiB; running on the CPU will be slow"
    have = torch.cuda.get_device_properties(device).total_memory / 2**30
    if have < need_unlearn:
        raise UQError(
            f"UQ_MODEL={model_name!r} needs about {need_unlearn:g} GiB of GPU memory to unlearn, but "
            f"{torch.cuda.get_device_name(device)} has {have:.0f} GiB; accepted values here: a smaller preset "
            "('tiny', 'smollm2-135m', 'qwen2.5-0.5b') or several GPUs with `accelerate launch -m utils.study`"
        )
    return f"{model_name}: needs ~{need_unlearn:g} GiB, {torch.cuda.get_device_name(device)} has {have:.0f} GiB"


def finetune_recipe(steps: int = 300, lr: float = 5e-5, batch_size: int = 16):
    """The recipe that turns a pretrained hub model into a target that memorizes MUSE-mini."""
    from .models import with_recipe

    return with_recipe(steps=steps, lr=lr, batch_size=batch_size, label_smoothing=0.0, eval_every=max(1, steps // 10))


def finetuned_world(
    base: str,
    data: Any,
    *,
    seed: int = 0,
    cache_dir: Path,
    device: torch.device,
    steps: int = 300,
    lr: float = 5e-5,
    batch_size: int = 16,
    progress: bool = True,
) -> StudyWorld:
    """Fine-tune a pretrained model (preset, hub id or local folder) on MUSE-mini into a target and an oracle.

    The target is trained on the forget and retain text (and the QA training texts), the oracle on all
    but the forget text, both from ``base``, and both are
    cached (keyed by base, data, recipe and seed) with an atomic save.
    """
    import hashlib

    from filelock import FileLock

    from .data import ORACLE_SPLITS, TARGET_SPLITS, qa_examples, training_texts
    from .models import PRESETS, atomic_save_dir, load_model, load_tokenizer, resolve_model_source, train_tiny_model, verify_saved_dir
    from .repro import seed_everything

    recipe = finetune_recipe(steps, lr, batch_size)
    source, _ = resolve_model_source(base)
    preset = PRESETS.get(base)
    fingerprint = json.dumps({"base": source, "data": data.name, "n": data.summary(), "recipe": asdict(recipe), "seed": seed}, sort_keys=True, default=str)
    key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    root = Path(cache_dir) / "finetuned" / f"{Path(source).name}-{key}"
    tokenizer = load_tokenizer(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    root.parent.mkdir(parents=True, exist_ok=True)  # for the lock; ``root`` itself appears with the first saved model
    with FileLock(str(root) + ".lock", timeout=24 * 3600):
        for role, splits in (("target", TARGET_SPLITS), ("oracle", ORACLE_SPLITS)):
            if verify_saved_dir(root / role):
                continue
            seed_everything(seed)
            model = load_model(source, dtype=torch.float32, device=device).train()
            evals = {"forget": qa_examples(data, "forget")[:64], "retain": qa_examples(data, "retain")[:64]}
            history = train_tiny_model(model, tokenizer, training_texts(data, [s for s in splits if s in data.raw]), recipe, seed=seed,
                                       eval_sets=evals, progress=progress, desc=f"fine-tuning {role}")
            atomic_save_dir(model, tokenizer, root / role, extra={"history.json": history}, meta={"role": role, "base": source})
            del model
    target = load_model(str(root / "target"), dtype=torch.float32, device=device)
    oracle = load_model(str(root / "oracle"), dtype=torch.float32, device=device)
    return StudyWorld(target, oracle, load_tokenizer(str(root / "target")), data, root / "target", root / "oracle",
                      shots=preset.knowmem_shots if preset else 0, name=base)


def build_world(model: str, data_name: str, *, seed: int, cache_dir: Path, device: torch.device,
                progress: bool = True, finetune_steps: int = 300) -> StudyWorld:
    """The world for ``UQ_MODEL`` x ``UQ_DATA``.

    - ``tiny`` x ``mini``: the cached tiny target and retrain oracle (notebook 02);
    - a MUSE preset (``muse-news-7b``, ``muse-books-7b``): MUSE's own target and retrained models;
    - any other preset, hub id or local folder x ``mini``: fine-tuned on MUSE-mini first.
    """
    from .data import load_data
    from .models import PRESETS, get_tiny_world, load_model, load_tokenizer

    if model == "tiny":
        if data_name != "mini":
            raise UQError(f"UQ_DATA={data_name!r} is not accepted with UQ_MODEL='tiny'; accepted values: 'mini' "
                          "(the tiny model is trained on MUSE-mini; use a MUSE preset for 'news'/'books')")
        w = get_tiny_world(seed=seed, cache_dir=cache_dir, progress=progress)
        return StudyWorld(w.target.to(device), w.oracle.to(device), w.tokenizer, w.data, w.target_dir, w.oracle_dir, 0, "tiny")
    preset = PRESETS.get(model)
    if preset is not None and preset.oracle_id is not None:
        if data_name != preset.data:
            raise UQError(f"UQ_DATA={data_name!r} is not accepted with UQ_MODEL={model!r}; accepted values: {preset.data!r}")
        data = load_data(data_name)
        dtype = torch.bfloat16
        return StudyWorld(load_model(preset.hub_id, dtype=dtype, device=device), load_model(preset.oracle_id, dtype=dtype, device=device),
                          load_tokenizer(preset.hub_id), data, None, None, preset.knowmem_shots, model)
    if data_name != "mini":
        raise UQError(f"UQ_DATA={data_name!r} is not accepted with UQ_MODEL={model!r}; accepted values: 'mini' "
                      "(a model fine-tuned here; MUSE's own targets are the presets 'muse-news-7b' and 'muse-books-7b')")
    return finetuned_world(model, load_data("mini"), seed=seed, cache_dir=cache_dir, device=device,
                           steps=finetune_steps, progress=progress)


# --------------------------------------------------------------------------------------------------
# evaluation grid and tables
# --------------------------------------------------------------------------------------------------
def calibration_ids(world: Any, n_texts: int = 64, max_length: int = 64) -> torch.Tensor:
    """Calibration token ids for GPTQ/AWQ: retain-split text (the paper calibrates on generic data)."""
    texts = list(world.data.raw["retain"])[:n_texts]
    if not texts:
        raise UQError("the retain split is empty; GPTQ/AWQ need calibration text")
    enc = world.tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True, max_length=max_length)
    return enc["input_ids"]


def stage_key(obj: Any) -> str:
    """16 hex digits of SHA-256 over ``obj`` as sorted JSON: the suffix of a stage's file name."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_identity(data: Any) -> str:
    """SHA-256 of what the metrics and the calibration read from a corpus (its name, documents, QA, VerbMem, PrivLeak)."""
    h = hashlib.sha256()
    for part in ("name", "raw", "verbmem", "knowmem", "privleak", "icl"):
        h.update(json.dumps(getattr(data, part, None), sort_keys=True, default=str).encode())
    return h.hexdigest()


def saved_identity(folder: str | Path | None) -> Any:
    """What a saved model folder holds: its manifest's files (size and SHA-256 of each), or None."""
    from .models import MANIFEST

    if folder is None:
        return None
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_stage(path: Path, obj: Any) -> None:
    """Write a stage ``<cell>__<key>.json`` and remove the same cell's stages of other settings (and an
    unkeyed ``<cell>.json`` of older versions), so ``stages/`` holds one file per cell: the current one."""
    _atomic_write_json(path, obj)
    cell = path.name[: -len(".json")].rsplit("__", 1)[0]
    same_cell = re.compile(rf"{re.escape(cell)}(__[0-9a-f]{{16}})?\.json")
    for other in path.parent.glob(f"{glob.escape(cell)}*.json"):
        if other != path and same_cell.fullmatch(other.name):
            other.unlink(missing_ok=True)


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)


def evaluate_grid(
    world: Any,
    models: Mapping[str, torch.nn.Module],
    quantizers: Sequence[str] = ("rtn8", "rtn4", "fp4", "nf4"),
    *,
    oracle_auc: float | None = None,
    stage_dir: Path | None = None,
    include: Sequence[str] = ("knowmem", "verbmem", "privleak", "prob"),
    batch_size: int = 64,
    progress: bool = True,
    evaluate: Callable[..., dict[str, float]] | None = None,
    stage_keys: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Evaluate every model at full precision and after every quantizer: one row per (model, precision).

    Columns: ``model``, ``precision`` (``'full'`` or a quantizer name) and the metrics of
    :func:`utils.metrics.evaluate_model`. With ``stage_dir``, each cell is stored as
    ``eval__<model>__<precision>__<key>.json`` through a temporary name and a rename, and a cell whose
    file is already there is read instead of recomputed (resume). The key hashes what decides the cell:
    ``stage_keys[name]`` (anything JSON-able that identifies the model; default: a hash of its weights),
    the quantizer's full definition, the corpus, ``oracle_auc``, ``include``, ``batch_size``, the shots
    and ``evaluate``; a cell computed with anything else different is never read back, and its file is
    replaced by the new one (``stage_dir`` holds one file per cell).
    """
    from tqdm.auto import tqdm

    from .metrics import evaluate_model
    from .quantization import fake_quantize_model, get_quantizer

    evaluate = evaluate or evaluate_model
    if not models:
        raise UQError("models is empty; accepted values: a mapping {name: model}")
    specs = [get_quantizer(q) for q in quantizers]
    calib = calibration_ids(world) if any(s.needs_calibration for s in specs) else None
    cells = [(name, None) for name in models] + [(name, s) for s in specs for name in models]
    if stage_dir is not None:
        from .unlearning import model_fingerprint

        identities = {name: (stage_keys[name] if stage_keys is not None and name in stage_keys else model_fingerprint(models[name]))
                      for name in models}
        common = {"data": data_identity(world.data), "oracle_auc": oracle_auc, "include": list(include), "batch_size": batch_size,
                  "shots": getattr(world, "shots", 0), "evaluate": f"{getattr(evaluate, '__module__', '')}."
                  f"{getattr(evaluate, '__qualname__', type(evaluate).__qualname__)}", "version": STAGE_VERSION}
    rows = []
    for name, spec in tqdm(cells, desc="evaluating", disable=not progress):
        precision = FULL if spec is None else spec.name
        stage = None
        if stage_dir is not None:
            key = stage_key({**common, "model": identities[name], "quantizer": asdict(spec) if spec is not None else None})
            stage = stage_dir / f"eval__{name}__{precision}__{key}.json"
        if stage is not None and stage.exists():
            rows.append(json.loads(stage.read_text()))
            continue
        model = models[name]
        if spec is not None:
            model = fake_quantize_model(model, spec, calibration=calib.to(next(model.parameters()).device) if calib is not None else None,
                                        progress=None if progress else False)  # off: GPTQ's and AWQ's bars too
        metrics = evaluate(model, world.tokenizer, world.data, oracle_auc=oracle_auc, batch_size=batch_size,
                           shots=getattr(world, "shots", 0), include=include)
        row = {"model": name, "precision": precision, **metrics}
        if stage is not None:
            _write_stage(stage, row)
        rows.append(row)
        if spec is not None:
            del model
    return pd.DataFrame(rows)


def recovery_table(results: pd.DataFrame, metric: str = "knowmem_forget_acc", precisions: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's layout: rows = models, columns = precisions, cells = ``metric``."""
    if metric not in results.columns:
        raise UQError(f"metric={metric!r} is not accepted; accepted values: {', '.join(map(repr, [c for c in results.columns if c not in ('model', 'precision')]))}")
    table = results.pivot(index="model", columns="precision", values=metric)
    order = [m for m in dict.fromkeys(results["model"])]
    cols = list(precisions) if precisions is not None else [FULL] + [p for p in dict.fromkeys(results["precision"]) if p != FULL]
    return table.loc[order, [c for c in cols if c in table.columns]]


def knowledge_kept(results: pd.DataFrame, metric: str = "knowmem_forget_acc", target: str = "target") -> pd.DataFrame:
    """The paper's "share of forgotten knowledge kept": metric(unlearned) / metric(target) at the same precision."""
    table = recovery_table(results, metric)
    if target not in table.index:
        raise UQError(f"target={target!r} is not a model of the results; accepted values: {', '.join(map(repr, table.index))}")
    base = table.loc[target].where(table.loc[target] != 0)
    return table.drop(index=target).div(base, axis=1)


def kept_summary(results: pd.DataFrame, four_bit: str = "rtn4", methods: Sequence[str] = CONSTRAINED,
                 metric: str = "knowmem_forget_acc") -> pd.DataFrame:
    """Ours next to the paper's 21% -> 83%: mean share kept over ``methods``, full precision vs ``four_bit``."""
    kept = knowledge_kept(results, metric)
    rows = [m for m in methods if m in kept.index]
    if not rows:
        raise UQError(f"methods={list(methods)!r} are not in the results; accepted values: some of {list(kept.index)}")
    ours = {"full precision": float(kept.loc[rows, FULL].mean()), "4-bit": float(kept.loc[rows, four_bit].mean())}
    return pd.DataFrame({"this run": ours, "paper (Table 1, MUSE)": PAPER_KEPT}).rename_axis(f"{metric}, {four_bit}")


#: how this series' small world differs from the paper's set-up (notebook 04 shows it as a table)
PAPER_VS_SERIES: tuple[tuple[str, str, str], ...] = (
    ("data", "MUSE News (BBC articles) and Books (Harry Potter); forget text ~0.8M / ~1.1M tokens",
     "MUSE-mini: generated biographies of 110 fictional people; forget text = 60 biographies (~1.6k tokens)"),
    ("knowledge", "learned by fine-tuning on the raw text", "learned from the raw text (six biographies per person)"),
    ("KnowMem questions", "about the forget / retain text, never trained", "about forget / retain2 people, never trained; "
     "the question format is learned from QA texts about other (retain) people"),
    ("model", "Llama-2 7B (MUSE's fine-tuned targets)", "Llama, 4 layers x 256, 3.3M parameters, trained from scratch"),
    ("unlearning loss", "every token of the raw forget text; GDR / KLR on retain text", "the same (forget_on='text'); "
     "the answer-words-only variant for comparison"),
    ("recipe", "AdamW, constant lr 1e-5, 10 epochs, alpha = 1, beta = 0.1, bf16",
     "AdamW, constant lr 2e-5, 900 steps of 16 + 16 biographies (~240 passes over the forget text), alpha = 1, "
     "beta = 0.1, bf16 storage, gradient clipping 1.0"),
    ("KnowMem / VerbMem score", "ROUGE-L F1 of greedy answers / continuations", "the same (rouge_score); exact match "
     "and true-answer probability as extra columns"),
    ("PrivLeak", "Min-40% AUC forget vs holdout, relative to the retrained model", "the same, relative to our retrained oracle"),
    ("4-bit", "bitsandbytes load_in_4bit=True: FP4, blocks of 64, lm_head unquantized; also GPTQ, AWQ",
     "FP4 bit-identical to bitsandbytes (blocks of 64), plus RTN absmax groups of 64, NF4, GPTQ/AWQ teaching versions; "
     "embeddings and lm_head unquantized"),
    ("8-bit", "bitsandbytes LLM.int8", "LLM.int8 (bitsandbytes) and RTN 8-bit"),
    ("why it recovers", "quantization maps original and unlearned weights to the same grid points",
     "the same, and (this series' finding, not the paper's) bf16 storage with a small LR lets only small weights "
     "move, inside the 4-bit zero bin; the share of changed 4-bit codes measures it"),
)


def paper_vs_series() -> pd.DataFrame:
    """:data:`PAPER_VS_SERIES` as a table: one row per aspect, the paper's set-up beside this series'."""
    return pd.DataFrame(PAPER_VS_SERIES, columns=["aspect", "the paper (Zhang et al., 2025)", "this series"]).set_index("aspect")


# --------------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------------
@dataclass
class StudySettings:
    """Everything one study run depends on (saved to ``<out>/settings.json``)."""

    model: str = "tiny"
    data: str = "mini"
    seed: int = 0
    device: str = "auto"
    out: Path = Path("build/study")
    methods: tuple[str, ...] = ("GA", "GA_GDR", "GA_KLR", "NPO", "NPO_GDR", "NPO_KLR")
    quantizers: tuple[str, ...] = CPU_QUANTIZERS
    steps: int | None = None
    lr: float | None = None
    finetune_steps: int = 300
    cache_dir: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from .config import check_device, check_model_name, check_seed
        from .quantization import get_quantizer
        from .unlearning import check_method

        self.seed = check_seed(self.seed)
        self.model = check_model_name(self.model)
        check_choice("UQ_DATA", self.data, ("mini", "news", "books"))
        self.device = check_device(self.device)
        for name in ("methods", "quantizers"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
                raise UQError(f"{name}={value!r} is not accepted; accepted values: a non-empty tuple of names such as "
                              + ("('GA', 'NPO_GDR')" if name == "methods" else "('rtn4', 'fp4')"))
            setattr(self, name, tuple(value))
        for m in self.methods:
            check_method(m)
        for q in self.quantizers:
            get_quantizer(q)
        if self.steps is not None:
            check_range("steps", self.steps, 1, integer=True)
        if self.lr is not None:
            check_range("lr", self.lr, 0, low_inclusive=False)
        check_range("finetune_steps", self.finetune_steps, 1, integer=True)
        # where the run writes: checked now, before any work (nothing is created here)
        self.out = check_writable_dir("out", self.out)
        if self.cache_dir is not None:
            self.cache_dir = check_writable_dir("cache_dir", self.cache_dir)
        else:
            from .config import default_cache_dir

            check_writable_dir("UQ_CACHE", default_cache_dir())


def world_identity(world: Any, settings: StudySettings) -> dict[str, Any]:
    """What decides a study's target and oracle (part of every stage's key): the model and data asked for,
    the seed, the fine-tuning steps when the target is fine-tuned here, the corpus's content and the
    saved target and oracle (their manifests' file hashes; None for hub models, named by ``model``)."""
    from .models import PRESETS

    preset = PRESETS.get(settings.model)
    fine_tuned = settings.model != "tiny" and (preset is None or preset.oracle_id is None)
    return {"model": settings.model, "data": settings.data, "seed": settings.seed,
            "finetune_steps": settings.finetune_steps if fine_tuned else None, "corpus": data_identity(world.data),
            "target": saved_identity(world.target_dir), "oracle": saved_identity(world.oracle_dir),
            "shots": getattr(world, "shots", 0)}


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what ``mkdir(parents=True)`` creates)."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_if_worthless(out: Path, created: Sequence[Path]) -> None:
    """After a failed run: remove the output folder this run created when it holds nothing but its
    ``settings.json`` (no stage, no result), and the parent folders created with it if they are empty."""
    if not created or not out.is_dir():
        return
    if any(p.is_file() and p != out / "settings.json" for p in out.rglob("*")):
        return  # finished stages: kept, so that the next run resumes from them
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    for folder in created[1:]:
        try:
            folder.rmdir()
        except OSError:
            break


@contextmanager
def library_progress_bars(enabled: bool, *, with_datasets: bool = False) -> Iterator[None]:
    """With ``enabled=False``, the libraries' own progress bars are off inside the block: transformers'
    (loading and writing weights), the hub's downloads and, with ``with_datasets``, those of ``datasets``;
    each is restored afterwards."""
    if enabled:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    had_transformers, had_hub = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    ds = None
    if with_datasets:
        from datasets.utils import tqdm as ds

        had_datasets = not ds.are_progress_bars_disabled()
        ds.disable_progress_bars()
    hf_logging.disable_progress_bar()  # the hub's bars too
    try:
        yield
    finally:
        if had_transformers:
            hf_logging.enable_progress_bar()  # turns the hub's on too: set them as they were next
        (enable_progress_bars if had_hub else disable_progress_bars)()
        if ds is not None and had_datasets:
            ds.enable_progress_bars()


def run_study(settings: StudySettings, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run (or resume) the whole study; return the results table (one row per model x precision).

    The output folder is created once the target and oracle are ready; a run that fails before it has
    written any stage removes the output folder it created (a folder that existed before is left as it is).
    With ``settings.progress`` False no progress bar is shown: ours, GPTQ's and AWQ's, and the libraries'
    (:func:`library_progress_bars`).
    """
    with library_progress_bars(settings.progress, with_datasets=settings.data != "mini"):
        return _run_study(settings, log)


def _run_study(settings: StudySettings, log: Callable[[str], None]) -> pd.DataFrame:
    from .config import default_cache_dir
    from .metrics import evaluate_model
    from .repro import pick_device, seed_everything
    from .unlearning import UnlearnRecipe, unlearn_cached_result

    seed_everything(settings.seed)
    device = pick_device(settings.device)
    log(check_fits(settings.model, device))
    cache_dir = settings.cache_dir or default_cache_dir()

    t0 = time.perf_counter()
    world = build_world(settings.model, settings.data, seed=settings.seed, cache_dir=cache_dir, device=device,
                        progress=settings.progress, finetune_steps=settings.finetune_steps)
    log(f"[{time.perf_counter() - t0:6.1f} s] target and oracle ready")
    world_id = world_identity(world, settings)
    created = _missing_folders(settings.out)
    try:
        stages = settings.out / "stages"
        stages.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(settings.out / "settings.json", {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()})
        oracle_stage = stages / f"oracle_auc__{stage_key({'world': world_id, 'version': STAGE_VERSION})}.json"
        if oracle_stage.exists():
            oracle_auc = json.loads(oracle_stage.read_text())["privleak_auc"]
        else:
            oracle_auc = evaluate_model(world.oracle, world.tokenizer, world.data, include=("privleak",), shots=world.shots)["privleak_auc"]
            _write_stage(oracle_stage, {"privleak_auc": oracle_auc})
        recipe = UnlearnRecipe()
        if settings.steps is not None:
            recipe = replace(recipe, steps=settings.steps)
        if settings.lr is not None:
            recipe = replace(recipe, lr=settings.lr)
        models: dict[str, torch.nn.Module] = {"target": world.target}
        identities: dict[str, Any] = {"target": {"world": world_id}}
        for method in settings.methods:
            result = unlearn_cached_result(world, method, recipe, seed=settings.seed, cache_dir=cache_dir,
                                           progress=settings.progress, device=device)
            models[method] = result.model
            identities[method] = {"world": world_id, "method": method, "recipe": asdict(recipe.for_method(method)),
                                  "seed": settings.seed, "unlearned": result.settings.get("key")}
            log(f"[{time.perf_counter() - t0:6.1f} s] {method} unlearned ({result.seconds:.0f} s when trained)")
        results = evaluate_grid(world, models, settings.quantizers, oracle_auc=oracle_auc, stage_dir=stages,
                                progress=settings.progress, stage_keys=identities)
        log(f"[{time.perf_counter() - t0:6.1f} s] evaluated {len(results)} (model, precision) cells")
        write_results(results, settings.out)
    except BaseException:
        _remove_if_worthless(settings.out, created)
        raise
    return results


def write_results(results: pd.DataFrame, out: Path) -> list[Path]:
    """Write ``results.csv``, ``results.json`` and the recovery figure into ``out`` (atomically)."""
    from .plots.study import plot_recovery_bars

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("results.csv", results.to_csv(index=False)), ("results.json", results.to_json(orient="records", indent=1))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
        written.append(out / name)
    fig = plot_recovery_bars(results)
    tmp = out / "recovery.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(out / "recovery.png")
    written.append(out / "recovery.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return written


def parse_args(argv: Sequence[str] | None = None) -> StudySettings:
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m utils.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=env.get("UQ_MODEL", "tiny"), help="'tiny', a preset, a local folder or a hub id (default $UQ_MODEL or tiny)")
    p.add_argument("--data", default=env.get("UQ_DATA", "mini"), help="'mini', 'news' or 'books' (default $UQ_DATA or mini)")
    p.add_argument("--seed", default=None, help="a non-negative integer (default $UQ_SEED or 0)")
    p.add_argument("--device", default=env.get("UQ_DEVICE", "auto"))
    p.add_argument("--out", type=Path, default=Path("build/study"))
    p.add_argument("--methods", default=",".join(StudySettings.methods), help="comma-separated unlearning methods")
    p.add_argument("--quantizers", default=",".join(CPU_QUANTIZERS), help="comma-separated quantizer names")
    p.add_argument("--steps", type=int, default=None, help="unlearning steps (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="unlearning learning rate (default: the recipe's)")
    p.add_argument("--finetune-steps", type=int, default=300, help="steps to fine-tune a pretrained model on MUSE-mini")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    from .config import check_seed

    # the command line's own names in the messages; StudySettings checks every value again
    seed = check_seed(a.seed, "--seed") if a.seed is not None else check_seed(env.get("UQ_SEED", "0"), "UQ_SEED")
    check_writable_dir("--out", a.out)
    if a.cache_dir is not None:
        check_writable_dir("--cache-dir", a.cache_dir)
    return StudySettings(model=a.model, data=a.data, seed=seed, device=a.device, out=a.out,
                         methods=tuple(m for m in a.methods.split(",") if m), quantizers=tuple(q for q in a.quantizers.split(",") if q),
                         steps=a.steps, lr=a.lr, finetune_steps=a.finetune_steps, cache_dir=a.cache_dir, progress=not a.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_args(argv)
        results = run_study(settings)
    except UQError as err:  # a clear message, not a stack trace
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(recovery_table(results).round(2).to_string())
    print(f"\nresults: {settings.out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
