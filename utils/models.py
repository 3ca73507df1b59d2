"""Models: the tiny Llama target and retrain oracle, their cache, and one loader for every model.

The offline default is a tiny ``LlamaForCausalLM`` (3.3M parameters) trained from scratch on MUSE-mini
with a recipe chosen so that the paper's effect shows on a CPU:

- **target** — trained on the raw text of every trained split (forget, retain, retain2 biographies) and
  on the QA texts about retain people that teach the question format (no KnowMem question among them);
- **oracle** — the "retrained" model of MUSE, the same recipe without the forget text: what perfect
  unlearning would give, and the reference for PrivLeak.

Both are built on first use into the cache (``$UQ_CACHE``, default ``.cache/uq``) under a key that hashes
the corpus, the recipe and the seed; a folder whose manifest does not match its files is rebuilt.
:func:`load_model` / :func:`load_tokenizer` serve ``'tiny'``, any preset, any local folder and any hub id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from .validation import UQError, check_choice, check_range

MANIFEST = "manifest.json"
HISTORY = "history.json"
ROLES = ("target", "oracle")
#: bump when the training procedure changes in a way the recipe does not capture (part of the cache key)
TRAINING_VERSION = 6
#: threads the tiny models train on (set explicitly, so the same seed gives the same weights on any machine
#: with at least this many cores)
TRAIN_THREADS = 2
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


# --- presets -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A named model choice for ``UQ_MODEL``.

    ``gpu_gb_eval`` / ``gpu_gb_unlearn``: approximate GPU memory (GiB) to evaluate the model in bf16 and
    to unlearn it in bf16 with AdamW and a frozen reference copy (NPO/KLR), at batch 4-8 x 512 tokens.
    ``oracle_id``: the retrained model (MUSE publishes one per corpus). ``knowmem_shots``: few-shot
    pairs for KnowMem. ``tokenizer_id``: where the tokenizer comes from if the model repository has
    none (MUSE evaluates its targets with the Llama-2-7B tokenizer).
    """

    name: str
    hub_id: str | None
    description: str
    data: str = "mini"
    oracle_id: str | None = None
    gpu_gb_eval: float = 0.0
    gpu_gb_unlearn: float = 0.0
    knowmem_shots: int = 0
    tokenizer_id: str | None = None


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", None, "3.3M-parameter Llama trained from scratch on MUSE-mini (CPU, ~2 min)",
                   data="mini", gpu_gb_eval=0.0, gpu_gb_unlearn=0.0, knowmem_shots=0),
    "smollm2-135m": Preset("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "SmolLM2 135M base (fine-tune on MUSE-mini first)",
                           data="mini", gpu_gb_eval=1, gpu_gb_unlearn=4, knowmem_shots=4),
    "qwen2.5-0.5b": Preset("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "Qwen2.5 0.5B base (fine-tune on MUSE-mini first)",
                           data="mini", gpu_gb_eval=2, gpu_gb_unlearn=10, knowmem_shots=4),
    "muse-news-7b": Preset("muse-news-7b", "muse-bench/MUSE-News_target", "MUSE's Llama-2-7B target for News",
                           data="news", oracle_id="muse-bench/MUSE-News_retrain", gpu_gb_eval=16, gpu_gb_unlearn=80,
                           knowmem_shots=10, tokenizer_id="meta-llama/Llama-2-7b-hf"),
    "muse-books-7b": Preset("muse-books-7b", "muse-bench/MUSE-Books_target", "MUSE's Llama-2-7B target for Books",
                            data="books", oracle_id="muse-bench/MUSE-Books_retrain", gpu_gb_eval=16, gpu_gb_unlearn=80,
                            knowmem_shots=10, tokenizer_id="meta-llama/Llama-2-7b-hf"),
}


# --- tiny recipe --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TinyRecipe:
    """Architecture and training recipe of the tiny target/oracle. Part of the cache key.

    ``initializer_range=0.06`` (not Llama's 0.02) makes the 4-bit steps of the trained weights wide
    compared with what a bf16 weight can move at a small learning rate; label smoothing keeps the
    target's probabilities away from 1 so that a small-LR unlearning run has a gradient to follow.
    ``precision='mixed'``: fp32 weights and optimizer, bf16 matmuls (autocast; ~1.7x faster on a CPU
    with bf16 units); ``'fp32'``: fp32 throughout.
    """

    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    initializer_range: float = 0.06
    max_position_embeddings: int = 128
    lr: float = 3e-3
    warmup_fraction: float = 0.1
    batch_size: int = 64
    steps: int = 400
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    eval_every: int = 50
    precision: str = "mixed"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "batch_size", "steps", "eval_every"):
            check_range(name, getattr(self, name), 1, integer=True)
        check_range("initializer_range", self.initializer_range, 0.0, 1.0, low_inclusive=False)
        check_range("lr", self.lr, 0.0, 1.0, low_inclusive=False)
        check_range("warmup_fraction", self.warmup_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_choice("precision", self.precision, ("fp32", "mixed"))
        if self.hidden_size % self.num_attention_heads:
            raise UQError(f"hidden_size={self.hidden_size} is not accepted; accepted values: a multiple of num_attention_heads={self.num_attention_heads}")


DEFAULT_RECIPE = TinyRecipe()


# --- tokenizer ----------------------------------------------------------------------------------------
def build_word_tokenizer(texts: list[str], model_max_length: int = 128):
    """A word-level tokenizer over ``texts`` (every word and punctuation mark is one token).

    Built offline with ``tokenizers`` (vocabulary: the special tokens, then the sorted distinct words,
    so it is deterministic), wrapped as ``PreTrainedTokenizerFast`` that prepends ``<bos>``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ValueError("texts=[] is not accepted; accepted values: a non-empty list of strings")
    splitter = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in splitter.pre_tokenize_str(t)})
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + [w for w in words if w not in SPECIAL_TOKENS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=model_max_length, padding_side="right",
    )


def corpus_texts(data) -> list[str]:
    """Every string of a MUSE-shaped corpus (all splits, QA in prompt format): the tokenizer's input."""
    from .data import qa_text

    texts = [t for docs in data.raw.values() for t in docs] + [t for docs in data.privleak.values() for t in docs]
    qa_sets = list(data.knowmem.values()) + list(data.icl.values()) + [getattr(data, "qa_train", [])]
    texts += [qa_text(d) for qa in qa_sets for d in qa]
    texts += [d["prompt"] + " " + d["gt"] for d in data.verbmem]
    return texts


def tiny_config(tokenizer, recipe: TinyRecipe = DEFAULT_RECIPE):
    """The ``LlamaConfig`` of the tiny model (untied embeddings, ``initializer_range`` from the recipe)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_attention_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        initializer_range=recipe.initializer_range,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --- training -----------------------------------------------------------------------------------------
def _autocast(precision: str, model):
    """bf16 autocast on the model's device for ``precision='mixed'``, else a no-op context."""
    import contextlib

    if precision != "mixed":
        return contextlib.nullcontext()
    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type, dtype=torch.bfloat16)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Next-token cross-entropy over positions whose label is not ``-100`` (labels are unshifted)."""
    check_range("label_smoothing", label_smoothing, 0.0, 1.0, high_inclusive=False)
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=-100, label_smoothing=label_smoothing,
    )


def _batch_order(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` index batches drawn epoch by epoch from seeded permutations (no repeats in an epoch).

    Batches mix biographies and QA texts at random. (Length-sorted batches would pad less, but they
    slowed memorisation badly: seed 0 reached QA accuracy 0.45 instead of 1.0 in 250 steps.)
    """
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n, generator=generator).tolist()
    return [torch.tensor(order[i * batch_size:(i + 1) * batch_size]) for i in range(steps)]


def train_tiny_model(
    model,
    tokenizer,
    examples,
    recipe: TinyRecipe = DEFAULT_RECIPE,
    *,
    seed: int = 0,
    eval_sets: dict | None = None,
    progress: bool = True,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` with AdamW (gradients clipped at norm 1), a one-cycle LR and label smoothing, on
    every token of ``examples`` (random batches; EOS appended to each example).

    ``eval_sets`` maps a name to QA examples (``utils.data.Example``) whose answer accuracy
    (teacher-forced argmax) and mean answer probability are logged every ``recipe.eval_every`` steps.
    Returns the history: one dict per logged step (``step``, ``loss`` — the mean since the previous
    row, None at step 0 —, ``lr``, ``<name>_acc``, ``<name>_prob``, ``seconds``).
    """
    from tqdm.auto import tqdm

    from .data import encode_examples
    from .metrics import answer_stats
    from .repro import torch_generator

    check_range("seed", seed, 0, integer=True)
    enc = encode_examples(tokenizer, list(examples), add_eos=True)
    batches = _batch_order(enc["input_ids"].shape[0], recipe.batch_size, recipe.steps, torch_generator(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=recipe.warmup_fraction, anneal_strategy="cos"
    )
    history: list[dict] = []
    losses: list[float] = []
    start = time.perf_counter()

    def log(step: int) -> None:
        row = {"step": step, "loss": float(sum(losses) / len(losses)) if losses else None,
               "lr": float(schedule.get_last_lr()[0]), "seconds": round(time.perf_counter() - start, 2)}
        model.eval()
        for name, qa in (eval_sets or {}).items():
            stats = answer_stats(model, tokenizer, qa)
            row[f"{name}_acc"] = float(stats["correct"].float().mean())
            row[f"{name}_prob"] = float(stats["prob"].mean())
        model.train()
        history.append(row)
        losses.clear()

    log(0)
    model.train()
    bar = tqdm(batches, desc=desc, disable=not progress, leave=False)
    for step, idx in enumerate(bar, start=1):
        mask = enc["attention_mask"][idx]
        width = int(mask.sum(1).max())
        with _autocast(recipe.precision, model):
            logits = model(input_ids=enc["input_ids"][idx, :width], attention_mask=mask[:, :width]).logits
        loss = lm_loss(logits, enc["labels"][idx, :width], recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % recipe.eval_every == 0 or step == recipe.steps:
            log(step)
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    model.eval()
    return history


# --- saving and the cache -----------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(folder: Path, meta: dict | None = None) -> dict:
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"files": files, "meta": meta or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_saved_dir(path: str | Path) -> bool:
    """True when ``path`` holds a manifest and every file it lists exists with the same size and hash."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not files:
        return False
    for rel, info in files.items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != info["bytes"] or _sha256(p) != info["sha256"]:
            return False
    return True


def atomic_save_dir(model, tokenizer, path: str | Path, extra: dict[str, Any] | None = None, meta: dict | None = None) -> Path:
    """Save ``model`` and ``tokenizer`` (``save_pretrained``) plus ``extra`` JSON files into ``path``.

    Everything is written into a temporary sibling folder with a ``manifest.json`` (size and SHA-256 of
    every file), which then replaces ``path`` by renaming, so a crash never leaves a half-written
    model under ``path``. ``extra`` maps file names to JSON-serialisable content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{time.time_ns()}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, content in (extra or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")
        _write_manifest(tmp, meta)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}-{time.time_ns()}"
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old is not None and not path.exists():
                old.rename(path)  # put the previous complete version back under its name
                old = None
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or we cannot tell): keep its files
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` siblings of ``path`` left by a process that
    is no longer running (a killed save: a whole model each). Those of live processes are kept."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for sibling in path.parent.glob(f".{path.name}.*-*-*"):
        kind, _, rest = sibling.name[len(path.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def tiny_cache_key(seed: int, recipe: TinyRecipe = DEFAULT_RECIPE, corpus: str | None = None) -> str:
    """Short hash of the corpus fingerprint, the recipe and the seed (names the cache folder)."""
    from .data import corpus_fingerprint

    corpus = corpus if corpus is not None else corpus_fingerprint()
    blob = json.dumps({"corpus": corpus, "recipe": asdict(recipe), "seed": seed, "training": TRAINING_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TinyWorld:
    """The offline world: corpus, tokenizer, trained target and retrain oracle (and where they live)."""

    target: Any
    oracle: Any
    tokenizer: Any
    data: Any
    target_dir: Path
    oracle_dir: Path
    history: dict[str, list[dict]]
    recipe: TinyRecipe
    seed: int
    built: list[str] = field(default_factory=list)


def _build_role(role: str, data, tokenizer, recipe: TinyRecipe, seed: int, folder: Path, progress: bool) -> None:
    """Train the target (forget + retain) or the oracle (retain only) and save it atomically.

    Training runs on :data:`TRAIN_THREADS` CPU threads (restored afterwards): the same seed then gives
    the same weights whatever the machine's core count.
    """
    from transformers import LlamaForCausalLM

    from .data import ORACLE_SPLITS, TARGET_SPLITS, qa_examples, training_texts
    from .repro import seed_everything

    threads = torch.get_num_threads()
    seed_everything(seed, threads=TRAIN_THREADS)
    try:
        model = LlamaForCausalLM(tiny_config(tokenizer, recipe)).float()
        splits = TARGET_SPLITS if role == "target" else ORACLE_SPLITS
        # training curves: every forget and every utility question (never trained: they show extraction)
        eval_sets = {"forget": qa_examples(data, "forget"), "retain": qa_examples(data, "retain")}
        history = train_tiny_model(model, tokenizer, training_texts(data, splits), recipe, seed=seed,
                                   eval_sets=eval_sets, progress=progress, desc=f"training tiny {role}")
    finally:
        torch.set_num_threads(threads)
    meta = {"role": role, "seed": seed, "recipe": asdict(recipe), "trained_on": list(splits), "threads": TRAIN_THREADS}
    atomic_save_dir(model, tokenizer, folder, extra={HISTORY: history, "recipe.json": asdict(recipe)}, meta=meta)


def get_tiny_world(
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    *,
    recipe: TinyRecipe | None = None,
    data_folder: str | Path | None = None,
) -> TinyWorld:
    """Return the tiny target and retrain oracle for ``seed``, training them into the cache if needed.

    The cache folder is ``<cache_dir>/tiny/seed<seed>-<hash of corpus, recipe and seed>/{target,oracle}``;
    a folder that is missing, partial or corrupted (manifest mismatch) is rebuilt, otherwise it is
    reused. A file lock makes concurrent callers wait for one build instead of racing it.
    ``recipe`` and ``data_folder`` exist for tests (a smaller recipe, another corpus folder).
    """
    from filelock import FileLock
    from transformers import LlamaForCausalLM

    from .config import default_cache_dir
    from .data import corpus_fingerprint, load_muse_mini

    check_range("seed", seed, 0, integer=True)
    recipe = recipe or DEFAULT_RECIPE
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data = load_muse_mini(data_folder)
    key = tiny_cache_key(seed, recipe, corpus_fingerprint(data_folder))
    root = cache_dir / "tiny" / f"seed{seed}-{key}"
    tokenizer = build_word_tokenizer(corpus_texts(data), recipe.max_position_embeddings)
    root.mkdir(parents=True, exist_ok=True)  # only once the corpus has been read and checked
    built = []
    with FileLock(str(root) + ".lock", timeout=3600):
        for role in ROLES:
            if not verify_saved_dir(root / role):
                _build_role(role, data, tokenizer, recipe, seed, root / role, progress)
                built.append(role)
    models = {role: LlamaForCausalLM.from_pretrained(root / role).eval() for role in ROLES}
    history = {role: json.loads((root / role / HISTORY).read_text()) for role in ROLES}
    return TinyWorld(
        target=models["target"], oracle=models["oracle"], tokenizer=load_tokenizer(root / "target"), data=data,
        target_dir=root / "target", oracle_dir=root / "oracle", history=history, recipe=recipe, seed=seed, built=built,
    )


# --- one loader -------------------------------------------------------------------------------------
DTYPES = {"auto": "auto", "float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str) or isinstance(
            try_to_load_from_cache(repo_id, "tokenizer_config.json"), str)
    except Exception:  # a malformed id is "not cached"; the loader then explains
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers a TCP connection within ``timeout`` seconds (True behind a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(repo_id: str, why: str) -> str:
    return (
        f"cannot load {repo_id!r}: {why}. Download it once on a machine with network access "
        f"(`hf download {repo_id}`), point UQ_MODEL at a local folder, or use the offline "
        "default UQ_MODEL=tiny (trained on this machine in about two minutes)"
    )


def _local_message(folder: str, why: str) -> str:
    return (
        f"cannot load the local model folder {folder!r}: {why}; accepted values: a folder written by save_pretrained "
        f"(config.json, the weights and the tokenizer files), a preset ({', '.join(map(repr, PRESETS))}) or a hub id 'org/name'"
    )


def check_local_weights(folder: str | Path) -> None:
    """One :class:`UQError` naming the file when a ``*.safetensors`` file of a local model folder is
    truncated or corrupt (its header is read and checked against the file's size; no weights are loaded)."""
    from safetensors import safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:  # safetensors raises its own SafetensorError (not an OSError)
            raise UQError(
                f"model file {str(path)!r} is truncated or corrupt ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                "accepted values: a complete model folder: save it again (save_pretrained) or download it again"
            ) from None


def resolve_model_source(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """Map a preset name, local folder or hub id to ``(what from_pretrained gets, local_files_only)``.

    Fails within seconds with a clear message when a hub id is neither cached nor reachable.
    ``'tiny'`` resolves to the cached tiny target for seed ``$UQ_SEED`` (default 0; built on first use).
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UQError(f"name_or_path={name_or_path!r} is not accepted; accepted values: {', '.join(map(repr, PRESETS))}, a local folder or a hub id 'org/name'")
    preset = PRESETS.get(name_or_path)
    if preset is not None and preset.hub_id is None:
        from .config import check_seed

        seed = check_seed(os.environ.get("UQ_SEED", "0"))
        return str(get_tiny_world(seed=seed, progress=True).target_dir), True
    source = preset.hub_id if preset is not None else name_or_path
    local = Path(source).expanduser()
    if local.is_dir():
        return str(local), True
    if "/" not in source or source.startswith((".", "/", "~")):
        raise UQError(
            f"name_or_path={name_or_path!r} is not accepted: no such local folder, and not a preset "
            f"({', '.join(map(repr, PRESETS))}) or a hub id 'org/name'"
        )
    cached = _is_cached(source)
    if _hub_offline():
        if not cached:
            raise UQError(_offline_message(source, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE=1"))
        return source, True
    if not hub_reachable():
        if not cached:
            raise UQError(_offline_message(source, "it is not in the local Hugging Face cache and the hub cannot be reached (no network)"))
        return source, True
    return source, False


def _dtype(dtype) -> Any:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return DTYPES[check_choice("dtype", dtype, DTYPES)]


def load_tokenizer(name_or_path: str | os.PathLike):
    """The tokenizer of ``'tiny'``, a preset, a local folder or a hub id (pad token set if missing)."""
    from transformers import AutoTokenizer

    source, local_only = resolve_model_source(name_or_path)
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in ("config.json", "tokenizer_config.json", "tokenizer.json")):
        raise UQError(_local_message(source, "it has neither config.json nor tokenizer files (tokenizer_config.json, tokenizer.json)"))
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        preset = PRESETS.get(os.fspath(name_or_path))
        if preset is None or preset.tokenizer_id is None:
            why = f"the tokenizer could not be loaded ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            raise UQError(_local_message(source, why) if Path(source).is_dir() else _offline_message(source, why)) from err
        fallback, local_only = resolve_model_source(preset.tokenizer_id)
        tok = AutoTokenizer.from_pretrained(fallback, local_files_only=local_only)
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str | os.PathLike, *, dtype=None, device: str | torch.device = "cpu"):
    """Load a causal LM: ``'tiny'`` (the cached tiny target), a preset, a local folder or a hub id.

    ``dtype``: None (as saved), ``'auto'``, ``'float32'``, ``'bfloat16'``, ``'float16'`` or a torch dtype.
    ``device``: ``'cpu'``, ``'cuda'``, ``'cuda:N'``, ``'mps'``, ``'auto'`` or a ``torch.device``.
    The model is returned in eval mode.
    """
    from transformers import AutoModelForCausalLM

    from .config import check_device
    from .repro import pick_device

    torch_dtype = _dtype(dtype)
    dev = device if isinstance(device, torch.device) else pick_device(check_device(device))
    source, local_only = resolve_model_source(name_or_path)
    kwargs: dict[str, Any] = {"local_files_only": local_only}
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if Path(source).is_dir():  # a local folder: check it first, and never advise a download for it
        if not (Path(source) / "config.json").is_file():
            raise UQError(_local_message(source, "it has no config.json"))
        check_local_weights(source)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except Exception as err:  # noqa: BLE001 - one clear error naming the folder, the cause chained
            raise UQError(_local_message(source, f"loading failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")) from err
        return model.to(dev).eval()
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        raise UQError(_offline_message(source, f"loading failed ({str(err).splitlines()[0]})")) from err
    return model.to(dev).eval()


def count_parameters(model) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def with_recipe(**changes) -> TinyRecipe:
    """The default recipe with some fields changed (validated), e.g. ``with_recipe(steps=50)``."""
    from dataclasses import fields

    accepted = sorted(f.name for f in fields(TinyRecipe))
    unknown = sorted(set(changes) - set(accepted))
    if unknown:
        raise UQError(f"with_recipe got unknown field(s) {', '.join(f'{k}={changes[k]!r}' for k in unknown)}; "
                      f"accepted values (field names): {', '.join(accepted)}")
    return replace(DEFAULT_RECIPE, **changes)


__all__ = [
    "PRESETS", "Preset", "TinyRecipe", "DEFAULT_RECIPE", "TinyWorld", "get_tiny_world", "load_model", "load_tokenizer",
    "atomic_save_dir", "verify_saved_dir", "build_word_tokenizer", "tiny_config", "train_tiny_model", "lm_loss",
    "tiny_cache_key", "resolve_model_source", "count_parameters", "with_recipe", "corpus_texts", "hub_reachable",
]
