"""Six unlearning methods (GA, NPO, each alone or with a GDR / KLR utility constraint) and one training loop.

Conventions (the notebook 03 shows each equation next to the line that implements it):

- A batch is a dict with ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on every token a
  loss must not cover), as made by :func:`utils.data.encode_examples`. Which tokens are covered is the
  caller's choice. MUSE's protocol (the default, ``forget_on="text"``): every token of the raw forget
  documents, and every token of the retain documents for GDR/KLR. The variant ``forget_on="answers"``
  covers only the answer words of the facts inside those documents.
- ``log p(y|x)`` is the *sequence* log-likelihood: the sum over the covered tokens of one example.
  Every loss averages over the examples of a batch; every loss is *minimised*.
- GA: ``L = mean_i log p_θ(y_i|x_i)`` (= −NLL; minimising it raises the forget NLL).
- NPO: ``L = −(2/β) mean_i log σ(−β [log p_θ(y_i|x_i) − log p_ref(y_i|x_i)])`` vs a frozen reference.
- GDR adds ``α · NLL`` on retain; KLR adds ``α · KL(p_ref ‖ p_θ)`` summed over the covered retain
  tokens (from log-softmax: always ≥ 0).

:func:`reference_code_npo_loss` and :func:`reference_code_kl` reproduce the *defect* of the paper's
released code (NPO and "KL" on raw logits); they exist to be shown, never to train.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .repro import pick_device, seed_everything, torch_generator
from .validation import UQError, check_choice, check_range

IGNORE_INDEX = -100
METHODS: tuple[str, ...] = ("GA", "GA_GDR", "GA_KLR", "NPO", "NPO_GDR", "NPO_KLR")
FORGET_LOSSES: tuple[str, ...] = ("GA", "NPO")
RETAIN_LOSSES: tuple[str, ...] = ("GDR", "KLR")
#: "bf16": weights stored and updated in bf16 (the paper's set-up); "fp32": weights and arithmetic in fp32;
#: "mixed": weights stored and updated in fp32, forward/backward matmuls in bf16 (autocast) — the same
#: arithmetic as "bf16", only the storage differs (and, on CPUs with bf16 units, about as fast)
PRECISIONS: tuple[str, ...] = ("bf16", "fp32", "mixed")
#: what the losses cover: "text" every token of the raw documents (MUSE); "answers" the answer words only
FORGET_ON: tuple[str, ...] = ("text", "answers")
#: α per utility constraint: 1 for both, as the paper's released recipe
DEFAULT_ALPHA: dict[str | None, float] = {None: 0.0, "GDR": 1.0, "KLR": 1.0}
DEFAULT_BETA = 0.1
#: the largest reference KL cache (covered retain tokens × vocabulary, float32) kept instead of a forward pass
KL_CACHE_MAX_FLOATS = 2**25
HISTORY_FILE = "unlearn_history.json"
SETTINGS_FILE = "unlearn.json"
#: bump when the loop or a loss changes, so cached unlearned models are rebuilt
LOOP_VERSION = 3

Batch = Mapping[str, torch.Tensor]
EvalFn = Callable[[torch.nn.Module], Mapping[str, float]]


# --------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------
def check_method(method: str) -> str:
    """Return ``method`` if it is one of :data:`METHODS`, else raise a clear ``ValueError``."""
    return check_choice("method", method, METHODS)


def forget_loss_name(method: str) -> str:
    """'GA' or 'NPO': the forget term of ``method``."""
    return check_method(method).split("_")[0]


def retain_loss_name(method: str) -> str | None:
    """'GDR', 'KLR' or None (no utility constraint) for ``method``."""
    parts = check_method(method).split("_")
    return parts[1] if len(parts) > 1 else None


def needs_reference(method: str) -> bool:
    """Whether ``method`` needs a frozen copy of the target (NPO and KLR do)."""
    return forget_loss_name(method) == "NPO" or retain_loss_name(method) == "KLR"


def default_alpha(method: str) -> float:
    """The recipe's α for ``method`` (GDR 1, KLR 1, 0 when there is no retain term)."""
    return DEFAULT_ALPHA[retain_loss_name(method)]


# --------------------------------------------------------------------------------------------------
# Losses: small pure functions of logits and labels
# --------------------------------------------------------------------------------------------------
def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise UQError(
            f"logits of shape {tuple(logits.shape)} and labels of shape {tuple(labels.shape)} are not accepted; "
            "accepted values: logits [batch, length, vocab] and labels [batch, length]"
        )


def covered_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(example index, position) of every covered token, in the *shifted* frame.

    Position ``t`` of the shifted frame is predicted by ``logits[:, t]`` and its token is
    ``labels[:, t + 1]`` (a causal LM predicts the next token).
    """
    return (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p(token | prefix)`` of every covered token, flattened in (example, position) order; float32."""
    _check_logits_labels(logits, labels)
    rows, cols = covered_positions(labels)
    picked = logits[:, :-1][rows, cols].float().log_softmax(-1)  # [N, vocab]
    return picked.gather(-1, labels[:, 1:][rows, cols].unsqueeze(-1)).squeeze(-1)


def sequence_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p(y_i | x_i)`` per example: the sum of the covered tokens' log-probabilities ([batch], float32).

    An example that covers no token gets 0.
    """
    rows, _ = covered_positions(labels)
    per_token = token_log_probs(logits, labels)
    return torch.zeros(labels.shape[0], dtype=per_token.dtype, device=per_token.device).index_add(0, rows, per_token)


def nll_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean_i −log p(y_i|x_i)``: the negative sequence log-likelihood averaged over examples."""
    return -sequence_log_likelihood(logits, labels).mean()


def ga_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on forget: ``L_GA = −NLL = mean_i log p_θ(y_i|x_i)`` (minimised: pushes p down)."""
    return -nll_loss(logits, labels)


def npo_from_log_likelihoods(log_p: torch.Tensor, ref_log_p: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """``−(2/β) mean_i log σ(−β [log_p_i − ref_log_p_i])`` from per-example sequence log-likelihoods."""
    check_range("beta", beta, 0, low_inclusive=False)
    if log_p.shape != ref_log_p.shape:
        raise UQError(f"ref_log_p of shape {tuple(ref_log_p.shape)} is not accepted; accepted values: the shape of log_p {tuple(log_p.shape)}")
    log_ratio = log_p - ref_log_p.detach().to(log_p)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def npo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """``L_NPO = −(2/β) mean_i log σ(−β [log p_θ(y_i|x_i) − log p_ref(y_i|x_i)])``.

    At θ = ref its gradient equals :func:`ga_loss`'s; as ``log p_θ`` falls below ``log p_ref`` the
    weight ``σ(β Δ)`` of each example vanishes, which slows the collapse GA runs into.
    """
    check_range("beta", beta, 0, low_inclusive=False)
    return npo_from_log_likelihoods(sequence_log_likelihood(logits, labels), sequence_log_likelihood(ref_logits.detach(), labels), beta)


def covered_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The full next-token log-distribution (float32 log-softmax) at every covered token: [N, vocab]."""
    _check_logits_labels(logits, labels)
    rows, cols = covered_positions(labels)
    return logits[:, :-1][rows, cols].float().log_softmax(-1)


def kl_from_log_probs(ref_log_probs: torch.Tensor, log_probs: torch.Tensor, rows: torch.Tensor, n_examples: int) -> torch.Tensor:
    """``mean_i Σ_{t of i} KL(p_ref ‖ p_θ)`` from covered-token log-distributions ([N, vocab] each) and the
    example index ``rows`` of each covered token; per-token KLs are clamped at 0 (rounding gives −1e-9)."""
    if ref_log_probs.shape != log_probs.shape:
        raise UQError(f"ref_log_probs of shape {tuple(ref_log_probs.shape)} is not accepted; accepted values: the shape of log_probs {tuple(log_probs.shape)}")
    ref = ref_log_probs.detach().to(log_probs)
    per_token = (ref.exp() * (ref - log_probs)).sum(-1).clamp_min(0.0)
    return torch.zeros(n_examples, dtype=per_token.dtype, device=per_token.device).index_add(0, rows, per_token).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``mean_i Σ_t KL(p_ref(·|x_i,<t) ‖ p_θ(·|x_i,<t))`` over the covered tokens, from log-softmax (≥ 0)."""
    if ref_logits.shape != logits.shape:
        raise UQError(f"ref_logits of shape {tuple(ref_logits.shape)} is not accepted; accepted values: the shape of logits {tuple(logits.shape)}")
    rows, _ = covered_positions(labels)
    return kl_from_log_probs(covered_log_probs(ref_logits.detach(), labels), covered_log_probs(logits, labels), rows, labels.shape[0])


def gdr_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Gradient descent on retain: ``α · NLL_retain``."""
    check_range("alpha", alpha, 0)
    return alpha * nll_loss(logits, labels)


def klr_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL on retain: ``α · KL(p_ref ‖ p_θ)`` (see :func:`kl_to_reference`)."""
    check_range("alpha", alpha, 0)
    return alpha * kl_to_reference(logits, ref_logits, labels)


def unlearning_loss(
    method: str,
    forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    *,
    ref_forget_logits: torch.Tensor | None = None,
    ref_forget_log_likelihood: torch.Tensor | None = None,
    retain_logits: torch.Tensor | None = None,
    retain_labels: torch.Tensor | None = None,
    ref_retain_logits: torch.Tensor | None = None,
    ref_retain_log_probs: torch.Tensor | None = None,
    alpha: float | None = None,
    beta: float = DEFAULT_BETA,
) -> dict[str, torch.Tensor]:
    """The loss of ``method`` as ``{"loss", "forget_term", "retain_term"}`` (``loss`` = the sum; minimised).

    ``alpha`` defaults to :func:`default_alpha`. NPO needs the reference on the forget batch: its logits
    or its per-example ``ref_forget_log_likelihood``; GDR/KLR need the retain logits and labels; KLR also
    the reference on the retain batch: its logits or its covered-token ``ref_retain_log_probs`` [N, vocab].
    """
    forget_name, retain_name = forget_loss_name(method), retain_loss_name(method)
    alpha = default_alpha(method) if alpha is None else alpha
    check_range("alpha", alpha, 0)
    check_range("beta", beta, 0, low_inclusive=False)
    if forget_name == "GA":
        forget_term = ga_loss(forget_logits, forget_labels)
    else:
        if ref_forget_log_likelihood is None:
            if ref_forget_logits is None:
                raise UQError(f"ref_forget_logits=None is not accepted for method={method!r}; accepted values: the reference model's logits (or log-likelihoods) on the forget batch")
            ref_forget_log_likelihood = sequence_log_likelihood(ref_forget_logits.detach(), forget_labels)
        forget_term = npo_from_log_likelihoods(sequence_log_likelihood(forget_logits, forget_labels), ref_forget_log_likelihood, beta)
    retain_term = torch.zeros((), device=forget_term.device)
    if retain_name is not None:
        if retain_logits is None or retain_labels is None:
            raise UQError(f"retain_logits/retain_labels=None is not accepted for method={method!r}; accepted values: the model's logits and labels on a retain batch")
        if retain_name == "GDR":
            retain_term = gdr_loss(retain_logits, retain_labels, alpha)
        else:
            if ref_retain_log_probs is None:
                if ref_retain_logits is None:
                    raise UQError(f"ref_retain_logits=None is not accepted for method={method!r}; accepted values: the reference model's logits (or covered log-probs) on the retain batch")
                ref_retain_log_probs = covered_log_probs(ref_retain_logits.detach(), retain_labels)
            rows, _ = covered_positions(retain_labels)
            kl = kl_from_log_probs(ref_retain_log_probs, covered_log_probs(retain_logits, retain_labels), rows, retain_labels.shape[0])
            retain_term = alpha * kl
    return {"loss": forget_term + retain_term, "forget_term": forget_term, "retain_term": retain_term}


# --- the released code's versions: a documented DEFECT, shown in notebook 03, never used to train ---
def reference_code_npo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """DEFECT, as in the paper's released code: NPO on *raw logits*, not on log-likelihoods.

    ``−(2/β) · mean over every position AND vocabulary entry of log σ(β (ref_logits − logits))``: it covers
    prompt and padding tokens, compares unnormalised scores (adding a constant to every logit changes the
    loss, not the distribution) and rewards lowering *every* logit, not the answer's probability.
    """
    check_range("beta", beta, 0, low_inclusive=False)
    if logits.shape != ref_logits.shape:
        raise UQError(f"ref_logits of shape {tuple(ref_logits.shape)} is not accepted; accepted values: the shape of logits {tuple(logits.shape)}")
    return -F.logsigmoid(beta * (ref_logits.float() - logits.float())).mean() * 2.0 / beta


def reference_code_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """DEFECT, as in the paper's released code: ``F.kl_div(logits, ref_logits, 'batchmean', log_target=True)``
    on *raw logits* (``Σ exp(ref) (ref − logits) / batch``).

    Raw logits are not log-probabilities, so this "KL" is not a divergence: shifting every logit of the
    model up by ``c`` (same distribution) changes it by ``−c Σ exp(ref)`` — it goes negative and is
    unbounded below, so minimising it pushes logits up instead of keeping the distribution.
    """
    if logits.shape != ref_logits.shape:
        raise UQError(f"ref_logits of shape {tuple(ref_logits.shape)} is not accepted; accepted values: the shape of logits {tuple(logits.shape)}")
    return F.kl_div(logits.float(), ref_logits.float(), reduction="batchmean", log_target=True)


# --------------------------------------------------------------------------------------------------
# Batches and cheap metrics
# --------------------------------------------------------------------------------------------------
def encode(tokenizer: Any, examples: Any, name: str = "forget") -> dict[str, torch.Tensor]:
    """A list of :class:`utils.data.Example` (encoded with :func:`utils.data.encode_examples`) or an
    already-encoded batch dict → ``{input_ids, attention_mask, labels}``; raises on an empty set."""
    if isinstance(examples, Mapping):
        missing = [k for k in ("input_ids", "attention_mask", "labels") if k not in examples]
        if missing:
            raise UQError(f"{name} is a dict without {missing}; accepted values: a list of Examples or a dict with input_ids, attention_mask, labels")
        batch = {k: torch.as_tensor(examples[k]) for k in ("input_ids", "attention_mask", "labels")}
    else:
        if examples is None or len(examples) == 0:
            raise UQError(f"{name}={examples!r} is empty; accepted values: a non-empty list of Examples")
        from .data import encode_examples  # local import: data is an optional sibling at import time

        batch = dict(encode_examples(tokenizer, list(examples)))
    if batch["input_ids"].shape[0] == 0:
        raise UQError(f"{name} is empty (0 examples); accepted values: a non-empty list of Examples")
    if not bool((batch["labels"][:, 1:] != IGNORE_INDEX).any()):
        raise UQError(f"{name} covers no token (every label is -100); accepted values: examples with a non-empty target")
    return batch


def trim_padding(batch: Batch) -> dict[str, torch.Tensor]:
    """Drop the leading/trailing columns that are padding in every row (a batch of short facts runs faster)."""
    keep = batch["attention_mask"].bool().any(0).nonzero()
    if keep.numel() == 0:
        return dict(batch)
    start, stop = int(keep[0]), int(keep[-1]) + 1
    return {k: v[:, start:stop] for k, v in batch.items()}


def select_rows(batch: Batch, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``index`` of every tensor of ``batch``, trimmed of shared padding."""
    return trim_padding({k: v[index] for k, v in batch.items()})


class BatchStream:
    """Endless seeded batches: a fresh random permutation of the rows each pass (no row repeats within one)."""

    def __init__(self, data: Batch, batch_size: int, generator: torch.Generator):
        check_range("batch_size", batch_size, 1, integer=True)
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self.n = int(data["input_ids"].shape[0])
        self._order = torch.empty(0, dtype=torch.long)

    def next(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(row indices, batch)`` of the next ``min(batch_size, n)`` rows."""
        size = min(self.batch_size, self.n)
        if self._order.numel() < size:
            self._order = torch.cat([self._order, torch.randperm(self.n, generator=self.generator)])
        index, self._order = self._order[:size], self._order[size:]
        return index, select_rows(self.data, index)


def concat_batches(first: Batch, second: Batch) -> dict[str, torch.Tensor]:
    """Rows of ``first`` then ``second``, right-padded to a common width (mask 0, label -100, id 0)."""
    width = max(int(first["input_ids"].shape[1]), int(second["input_ids"].shape[1]))
    fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[1]), value=value)

    return {k: torch.cat([pad(first[k], fill[k]), pad(second[k], fill[k])]) for k in fill}


def _to(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@torch.no_grad()
def reference_log_likelihoods(reference: torch.nn.Module, data: Batch, *, batch_size: int = 64) -> torch.Tensor:
    """``log p_ref(y_i|x_i)`` for every row of ``data`` (float32, on the reference's device).

    The reference is frozen, so NPO's reference term is computed once instead of once per step.
    """
    device = next(reference.parameters()).device
    n = int(data["input_ids"].shape[0])
    parts = []
    for start in range(0, n, batch_size):
        part = _to(select_rows(data, torch.arange(start, min(start + batch_size, n))), device)
        parts.append(sequence_log_likelihood(_logits(reference, part), part["labels"]))
    return torch.cat(parts)


@torch.no_grad()
def reference_covered_log_probs(reference: torch.nn.Module, data: Batch, *, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's next-token log-distributions at every covered token of ``data``, packed row by row
    ([N, vocab] float32) with ``offsets`` [n + 1]: row ``i`` owns ``packed[offsets[i]:offsets[i + 1]]``."""
    device = next(reference.parameters()).device
    n = int(data["input_ids"].shape[0])
    parts = []
    for start in range(0, n, batch_size):
        part = _to(select_rows(data, torch.arange(start, min(start + batch_size, n))), device)
        parts.append(covered_log_probs(_logits(reference, part), part["labels"]))
    counts = (data["labels"][:, 1:] != IGNORE_INDEX).sum(-1)
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = counts.cumsum(0)
    return torch.cat(parts), offsets


def gather_packed(packed: torch.Tensor, offsets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The packed rows of examples ``index``, in that order (see :func:`reference_covered_log_probs`)."""
    pieces = [torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in index.tolist()]
    return packed[torch.cat(pieces).to(packed.device)] if pieces else packed[:0]


def spaced_subset(n: int, k: int) -> list[int]:
    """``min(k, n)`` indices spread evenly over ``range(n)`` (deterministic, first and last included)."""
    check_range("n", n, 0, integer=True)
    check_range("k", k, 0, integer=True)
    k = min(k, n)
    if k <= 1:
        return list(range(k))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def answer_eval_fn(tokenizer: Any, forget: Sequence[Any], retain: Sequence[Any], *, max_examples: int = 100) -> EvalFn:
    """A cheap ``eval_fn`` for :func:`unlearn`: on at most ``max_examples`` (evenly spaced) QA Examples of
    each set, the answer accuracy (``<set>_acc``: every answer token is the argmax) and the mean
    true-answer probability (``<set>_prob``), as :func:`utils.metrics.answer_stats` computes them."""
    from .metrics import answer_stats

    check_range("max_examples", max_examples, 1, integer=True)
    sets = {}
    for name, examples in (("forget", forget), ("retain", retain)):
        if examples is None or len(examples) == 0:
            raise UQError(f"{name}={examples!r} is empty; accepted values: a non-empty list of Examples")
        sets[name] = [examples[i] for i in spaced_subset(len(examples), max_examples)]

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        out = {}
        for name, examples in sets.items():
            stats = answer_stats(model, tokenizer, examples)
            out[f"{name}_acc"] = float(stats["correct"].float().mean())
            out[f"{name}_prob"] = float(stats["prob"].mean())
        return out

    return evaluate


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------
@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns: the unlearned model (eval mode) and one history row per evaluation."""

    model: torch.nn.Module
    history: pd.DataFrame
    method: str = ""
    seconds: float = float("nan")
    settings: dict[str, Any] = field(default_factory=dict)


def trainable_names(model: torch.nn.Module, trainable: Any = None) -> list[str]:
    """Names of the parameters to train: all (``None``), those a predicate ``name -> bool`` accepts, or
    those in a collection of names (unknown names raise)."""
    names = [n for n, _ in model.named_parameters()]
    if trainable is None:
        return names
    if callable(trainable):
        chosen = [n for n in names if trainable(n)]
    elif isinstance(trainable, Collection) and not isinstance(trainable, (str, bytes)):
        unknown = sorted(set(trainable) - set(names))
        if unknown:
            raise UQError(f"trainable contains {unknown[:5]} which are not parameters of the model; accepted values: names from model.named_parameters(), e.g. {names[:3]}")
        chosen = [n for n in names if n in set(trainable)]
    else:
        raise UQError(f"trainable={trainable!r} is not accepted; accepted values: None, a callable name -> bool, or a collection of parameter names")
    if not chosen:
        raise UQError("trainable selects no parameter; accepted values: a filter or names that select at least one parameter")
    return chosen


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype the weights are *stored* in: 'bf16' → torch.bfloat16; 'fp32' and 'mixed' → torch.float32."""
    return {"bf16": torch.bfloat16, "fp32": torch.float32, "mixed": torch.float32}[check_choice("precision", precision, PRECISIONS)]


def compute_context(precision: str, device: torch.device):
    """The context the forward/backward passes run in: bf16 autocast for 'mixed', nothing otherwise."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _make_accelerator(device: str | torch.device | None):
    """One accelerate ``Accelerator``: the CPU when asked for (or when there is no GPU), else the GPU that
    ``accelerate`` assigns to this process (``accelerate launch`` for several; ``CUDA_VISIBLE_DEVICES`` to
    pick one). In a single process, a state left by an earlier call on the other kind of device is reset
    (accelerate's state is a process-wide singleton that would otherwise refuse or ignore the change)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if device is not None:  # an unknown or absent device fails here, naming it (never a silent CPU fallback)
        device = pick_device(str(device))
    want_cpu = (device is not None and device.type == "cpu") or not torch.cuda.is_available()
    shared = PartialState._shared_state
    if shared and shared.get("num_processes", 1) == 1 and shared.get("device") is not None:
        if (shared["device"].type == "cpu") != want_cpu:
            AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=want_cpu)


def _use_fast_attention(model: torch.nn.Module, device: torch.device) -> str | None:
    """On the CPU, switch a transformers model to eager attention for training; return the implementation
    to restore afterwards (None when nothing changed).

    Same mathematics, different kernel: for the short sequences of the tiny world the CPU's fused SDPA
    backward costs about as much as the whole rest of a step (measured: fwd+bwd 48 ms eager vs 102 ms SDPA,
    bf16, batch 32 × 12 tokens, one thread)."""
    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if device.type != "cpu" or current != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return None
    model.set_attn_implementation("eager")
    return current


def _validate_unlearn_args(method, steps, lr, batch_size, alpha, beta, precision, clip, eval_every, seed) -> float:
    check_method(method)
    check_range("steps", steps, 1, integer=True)
    check_range("lr", lr, 0, low_inclusive=False)
    check_range("batch_size", batch_size, 1, integer=True)
    alpha = default_alpha(method) if alpha is None else alpha
    check_range("alpha", alpha, 0)
    check_range("beta", beta, 0, low_inclusive=False)
    check_choice("precision", precision, PRECISIONS)
    if clip is not None:
        check_range("clip", clip, 0, low_inclusive=False)
    if eval_every is not None:
        check_range("eval_every", eval_every, 1, integer=True)
    check_range("seed", seed, 0, integer=True)
    return float(alpha)


def unlearn(
    model: torch.nn.Module,
    tokenizer: Any,
    forget: Any,
    retain: Any = None,
    *,
    method: str,
    steps: int = 900,
    lr: float = 2e-5,
    batch_size: int = 32,
    alpha: float | None = None,
    beta: float = DEFAULT_BETA,
    precision: str = "bf16",
    clip: float | None = 1.0,
    eval_every: int | None = 50,
    eval_fn: EvalFn | None = None,
    seed: int = 0,
    trainable: Any = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    inplace: bool = False,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with ``method`` (one of :data:`METHODS`); return the model and history.

    - ``forget`` / ``retain``: lists of :class:`utils.data.Example` (or encoded dicts); the tokens their
      targets cover are the tokens the losses cover. ``retain`` is needed by GDR/KLR methods.
    - Constant-LR AdamW (β = (0.9, 0.999), ε = 1e-8, no weight decay), gradient-norm clipping at ``clip``;
      each step draws ``batch_size`` forget and ``batch_size`` retain examples (seeded, without
      replacement within a pass).
    - ``precision="bf16"``: the weights are *stored and updated* in bfloat16 (``model.to(bfloat16)``,
      AdamW on the bf16 parameters, as the paper's Trainer set-up); ``"fp32"``: in float32;
      ``"mixed"``: stored and updated in float32, matmuls in bf16 (autocast): the bf16 run's arithmetic
      with fp32 storage, the clean control for "is bf16 *storage* the cause?".
    - ``trainable``: ``None`` (all), a predicate on parameter names or a collection of names; the others
      get ``requires_grad=False``, stay out of the optimizer and come back bit-identical.
    - ``eval_fn(model) -> dict`` runs (no grad, eval mode) before training, every ``eval_every`` steps and
      at the end; see :func:`answer_eval_fn`.
    - The reference model (NPO, KLR) is a frozen copy of ``model`` made after the precision cast.
    - Runs through ``accelerate`` (``Accelerator().prepare(model, optimizer)``): one CPU process, one GPU or
      ``accelerate launch`` on several GPUs; ``device="cpu"`` forces the CPU.
    - ``inplace=False`` trains a deep copy (the caller's model is untouched).
    """
    alpha = _validate_unlearn_args(method, steps, lr, batch_size, alpha, beta, precision, clip, eval_every, seed)
    forget_data = encode(tokenizer, forget, "forget")
    retain_name = retain_loss_name(method)
    retain_data = encode(tokenizer, retain, "retain") if retain_name is not None else None

    seed_everything(seed)
    accelerator = _make_accelerator(device)
    model = model if inplace else copy.deepcopy(model)
    model.to(precision_dtype(precision))
    original_attention = _use_fast_attention(model, accelerator.device)
    names = set(trainable_names(model, trainable))
    original_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    reference = None
    if needs_reference(method):
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    params = [p for n, p in model.named_parameters() if n in names]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    model, optimizer = accelerator.prepare(model, optimizer)
    device_ = accelerator.device

    # the reference is frozen: its NPO log-likelihoods (one number per forget example) and, when they fit
    # in KL_CACHE_MAX_FLOATS, its KLR log-distributions on the retain tokens are computed once
    ref_forget_ll = ref_retain_packed = None
    if reference is not None:
        reference.to(device_)
        with compute_context(precision, device_):
            if forget_loss_name(method) == "NPO":
                ref_forget_ll = reference_log_likelihoods(reference, forget_data)
            if retain_name == "KLR":
                vocab = int(_logits(reference, _to(select_rows(retain_data, torch.arange(1)), device_)).shape[-1])
                covered = int((retain_data["labels"][:, 1:] != IGNORE_INDEX).sum())
                if covered * vocab <= KL_CACHE_MAX_FLOATS:
                    ref_retain_packed = reference_covered_log_probs(reference, retain_data)
        if retain_name != "KLR" or ref_retain_packed is not None:
            reference = None  # everything it contributes is cached: free it

    rank_seed = seed + 1_000_003 * accelerator.process_index
    generator = torch_generator(rank_seed)
    forget_stream = BatchStream(forget_data, batch_size, generator)
    retain_stream = BatchStream(retain_data, batch_size, generator) if retain_data is not None else None

    rows: list[dict[str, float]] = []
    window: dict[str, list[float]] = {"loss": [], "forget_term": [], "retain_term": [], "grad_norm": []}
    t0 = time.perf_counter()

    def record(step: int) -> None:
        row: dict[str, float] = {"step": step}
        for key, values in window.items():
            row[key] = float(sum(values) / len(values)) if values else float("nan")
            values.clear()
        if eval_fn is not None:
            inner = accelerator.unwrap_model(model).eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in eval_fn(inner).items()})
            inner.train()
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)

    record(0)
    bar = tqdm(range(1, steps + 1), desc=method, disable=not progress or not accelerator.is_local_main_process, leave=False)
    for step in bar:
        f_index, f_batch = forget_stream.next()
        extra: dict[str, Any] = {}
        if ref_forget_ll is not None:
            extra["ref_forget_log_likelihood"] = ref_forget_ll[f_index.to(ref_forget_ll.device)]
        with compute_context(precision, device_):
            if retain_stream is None:
                f_batch = _to(f_batch, device_)
                f_logits = _logits(model, f_batch)
            else:
                # one forward pass over forget + retain (DDP allows one forward per backward)
                r_index, r_batch = retain_stream.next()
                both = _to(concat_batches(f_batch, r_batch), device_)
                n_f = int(f_batch["input_ids"].shape[0])
                logits = _logits(model, both)
                f_batch = {k: v[:n_f] for k, v in both.items()}
                r_batch = {k: v[n_f:] for k, v in both.items()}
                f_logits = logits[:n_f]
                extra["retain_logits"], extra["retain_labels"] = logits[n_f:], r_batch["labels"]
                if ref_retain_packed is not None:
                    extra["ref_retain_log_probs"] = gather_packed(*ref_retain_packed, r_index)
                elif reference is not None:
                    with torch.no_grad():
                        extra["ref_retain_logits"] = _logits(reference, r_batch)
            terms = unlearning_loss(method, f_logits, f_batch["labels"], alpha=alpha, beta=beta, **extra)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(terms["loss"])
        if clip is not None:
            grad_norm = accelerator.clip_grad_norm_(params, clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params if p.grad is not None]))
        optimizer.step()
        for key in ("loss", "forget_term", "retain_term"):
            window[key].append(float(terms[key].detach()))
        window["grad_norm"].append(float(grad_norm))
        if eval_every is not None and (step % eval_every == 0 or step == steps):
            record(step)
            if progress:
                bar.set_postfix({k: f"{v:.3g}" for k, v in rows[-1].items() if k in ("loss", "forget_acc", "retain_acc")})
        elif eval_every is None and step == steps:
            record(step)
    bar.close()

    model = accelerator.unwrap_model(model)
    optimizer.zero_grad(set_to_none=True)
    if original_attention is not None:
        model.set_attn_implementation(original_attention)
    for n, p in model.named_parameters():
        p.requires_grad_(original_flags[n])
    model.eval()
    seconds = time.perf_counter() - t0
    accelerator.free_memory()
    settings = dict(method=method, steps=steps, lr=lr, batch_size=batch_size, alpha=alpha, beta=beta, precision=precision, clip=clip, seed=seed, trainable=len(names))
    return UnlearnResult(model=model, history=pd.DataFrame(rows), method=method, seconds=seconds, settings=settings)


# --------------------------------------------------------------------------------------------------
# Recipes and the cache
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnlearnRecipe:
    """The hyper-parameters of one unlearning run (MUSE protocol by default: raw text, bf16, small constant LR).

    ``alpha=None`` means the method's default (:data:`DEFAULT_ALPHA`: GDR 1, KLR 1). ``forget_on`` picks
    what the forget/retain losses cover: ``"text"`` every token of the raw documents (MUSE's protocol),
    ``"answers"`` only the answer words of the facts in them.
    """

    steps: int = 900
    lr: float = 2e-5
    batch_size: int = 16
    alpha: float | None = None
    beta: float = DEFAULT_BETA
    precision: str = "bf16"
    clip: float | None = 1.0
    forget_on: str = "text"

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, integer=True)
        check_range("lr", self.lr, 0, low_inclusive=False)
        check_range("batch_size", self.batch_size, 1, integer=True)
        if self.alpha is not None:
            check_range("alpha", self.alpha, 0)
        check_range("beta", self.beta, 0, low_inclusive=False)
        check_choice("precision", self.precision, PRECISIONS)
        if self.clip is not None:
            check_range("clip", self.clip, 0, low_inclusive=False)
        check_choice("forget_on", self.forget_on, FORGET_ON)

    def for_method(self, method: str) -> "UnlearnRecipe":
        """This recipe with ``alpha`` resolved for ``method`` (0 when the method has no retain term)."""
        if retain_loss_name(method) is None:
            return replace(self, alpha=0.0)
        return replace(self, alpha=default_alpha(method) if self.alpha is None else float(self.alpha))

    def kwargs(self, method: str) -> dict[str, Any]:
        """Keyword arguments of :func:`unlearn` for ``method``."""
        r = self.for_method(method)
        return dict(method=method, steps=r.steps, lr=r.lr, batch_size=r.batch_size, alpha=r.alpha, beta=r.beta, precision=r.precision, clip=r.clip)


def forget_retain_examples(data: Any, forget_on: str = "text") -> tuple[list, list]:
    """The (forget, retain) Examples of ``data`` for ``forget_on``: ``'text'`` the raw forget documents and
    the regulariser's retain documents (``data.raw['retain']``, MUSE's retain1), every token covered;
    ``'answers'`` the answer words of the facts in the same documents. No KnowMem question is among them."""
    check_choice("forget_on", forget_on, FORGET_ON)
    from .data import answer_examples, text_examples

    pick = text_examples if forget_on == "text" else answer_examples
    return pick(data, "forget"), pick(data, "retain")


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every tensor of ``model.state_dict()`` (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def examples_fingerprint(examples: Sequence[Any]) -> str:
    """sha256 of the (prompt, target) pairs of a list of Examples."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([getattr(ex, "prompt", str(ex)), getattr(ex, "target", "")]).encode())
    return h.hexdigest()


def cache_key(target_fingerprint: str, data_fingerprint: str, method: str, recipe: UnlearnRecipe, seed: int) -> str:
    """The 16-hex-digit key of an unlearned model: hash of target + data + method + recipe + seed + loop version."""
    payload = {
        "target": target_fingerprint,
        "data": data_fingerprint,
        "method": check_method(method),
        "recipe": asdict(recipe.for_method(method)),
        "seed": seed,
        "loop_version": LOOP_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def unlearned_dir(cache_dir: str | Path | None, method: str, key: str) -> Path:
    """``<cache>/unlearned/<method>-<key>``."""
    from .config import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "unlearned" / f"{method.lower()}-{key}"


def unlearn_cached_result(
    world: Any,
    method: str,
    recipe: UnlearnRecipe | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    eval_every: int | None = 50,
    progress: bool = True,
    device: str | torch.device | None = None,
    rebuild: bool = False,
) -> UnlearnResult:
    """Unlearn ``method`` from ``world.target`` with ``recipe`` (default :class:`UnlearnRecipe`), or load it.

    The model is cached under :func:`unlearned_dir` (keyed by :func:`cache_key`: target weights, forget
    and retain examples, method, recipe, seed), saved with :func:`utils.models.atomic_save_dir` together
    with its history (``history.json``) and settings (``unlearn.json``); a folder whose manifest does not
    match is rebuilt, and a file lock makes concurrent callers wait for one build. The history records
    the answer metrics of the KnowMem forget and utility questions (never trained on, whatever ``forget_on`` is).
    """
    check_method(method)
    check_range("seed", seed, 0, integer=True)
    recipe = (recipe or UnlearnRecipe()).for_method(method)
    forget, retain = forget_retain_examples(world.data, recipe.forget_on)
    key = cache_key(model_fingerprint(world.target), examples_fingerprint(list(forget) + list(retain)), method, recipe, seed)
    return train_or_load(world, method, recipe, forget, retain, unlearned_dir(cache_dir, method, key), key, train=unlearn,
                         role="unlearned", main_process_saves=True, seed=seed, eval_every=eval_every, progress=progress,
                         device=device, rebuild=rebuild)  # fmt: skip


def train_or_load(
    world: Any,
    method: str,
    recipe: UnlearnRecipe,
    forget: Sequence[Any],
    retain: Sequence[Any],
    path: Path,
    key: str,
    *,
    train: Callable[..., UnlearnResult],
    role: str,
    main_process_saves: bool,
    seed: int,
    eval_every: int | None,
    progress: bool,
    device: str | torch.device | None,
    rebuild: bool,
) -> UnlearnResult:
    """The cache behind :func:`unlearn_cached_result` and :func:`utils.sure.sure_cached_result`.

    Under a file lock on ``path``: when ``rebuild`` or ``path`` is not a verified model folder,
    ``train(world.target, world.tokenizer, forget, retain, ...)`` (:func:`unlearn`'s arguments, the
    QA answer metrics logged every ``eval_every`` steps) and save the model with its history and
    settings (``key`` among them) under ``path``, ``meta["role"] = role`` (only from the main process
    when ``main_process_saves``; the others wait); otherwise load the model in ``recipe``'s precision.
    """
    from filelock import FileLock

    from .models import atomic_save_dir, load_model, verify_saved_dir

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=3600):
        if rebuild or not verify_saved_dir(path):
            from .data import qa_examples

            qa_forget, qa_retain = qa_examples(world.data, "forget"), qa_examples(world.data, "retain")
            eval_fn = answer_eval_fn(world.tokenizer, qa_forget, qa_retain) if eval_every is not None else None
            result = train(world.target, world.tokenizer, forget, retain, seed=seed, eval_every=eval_every,
                           eval_fn=eval_fn, progress=progress, device=device, **recipe.kwargs(method))
            result.settings.update(forget_on=recipe.forget_on, key=key, seconds=round(result.seconds, 2))
            extra = {HISTORY_FILE: json.loads(result.history.to_json(orient="records")), SETTINGS_FILE: result.settings}
            meta = {"role": role, **result.settings}
            if main_process_saves:
                from accelerate import PartialState

                if PartialState().is_main_process:
                    atomic_save_dir(result.model, world.tokenizer, path, extra=extra, meta=meta)
                PartialState().wait_for_everyone()
            else:
                atomic_save_dir(result.model, world.tokenizer, path, extra=extra, meta=meta)
            return result
    model = load_model(str(path), dtype=precision_dtype(recipe.precision), device=_load_device(device))
    history = pd.DataFrame(json.loads((path / HISTORY_FILE).read_text()))
    settings = json.loads((path / SETTINGS_FILE).read_text())
    return UnlearnResult(model=model.eval(), history=history, method=method, seconds=float(settings.get("seconds", float("nan"))), settings=settings)


def unlearn_cached(world: Any, method: str, recipe: UnlearnRecipe | None = None, **kwargs: Any) -> torch.nn.Module:
    """The unlearned model of :func:`unlearn_cached_result` (trained once, then loaded from the cache)."""
    return unlearn_cached_result(world, method, recipe, **kwargs).model


def _load_device(device: str | torch.device | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def unlearn_all(world: Any, methods: Sequence[str] = METHODS, recipe: UnlearnRecipe | None = None, **kwargs: Any) -> dict[str, UnlearnResult]:
    """:func:`unlearn_cached_result` for each of ``methods`` (cached), as ``{method: result}``."""
    for m in methods:
        check_method(m)
    return {m: unlearn_cached_result(world, m, recipe, **kwargs) for m in tqdm(methods, desc="methods", disable=not kwargs.get("progress", True))}


def history_long(results: Mapping[str, UnlearnResult]) -> pd.DataFrame:
    """All histories stacked, with a ``method`` column (for plotting curves of several methods)."""
    frames = [r.history.assign(method=m) for m, r in results.items() if not r.history.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def results_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``{model name: {metric: value}}`` as a DataFrame indexed by model (index name ``model``), columns in order."""
    if not isinstance(rows, Mapping) or not rows:
        raise UQError("rows is empty; accepted values: a non-empty mapping {model name: {metric: value}}")
    frame = pd.DataFrame.from_dict({k: dict(v) for k, v in rows.items()}, orient="index")
    frame.index.name = "model"
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UQError(f"columns {missing} are not in the rows; accepted values: some of {list(frame.columns)}")
        frame = frame[list(columns)]
    return frame


__all__ = [
    "METHODS", "FORGET_ON", "PRECISIONS", "DEFAULT_ALPHA", "DEFAULT_BETA", "IGNORE_INDEX",
    "check_method", "forget_loss_name", "retain_loss_name", "needs_reference", "default_alpha",
    "covered_positions", "token_log_probs", "sequence_log_likelihood", "nll_loss", "ga_loss", "npo_loss",
    "kl_to_reference", "gdr_loss", "klr_loss", "unlearning_loss", "reference_code_npo_loss", "reference_code_kl",
    "encode", "trim_padding", "select_rows", "concat_batches", "BatchStream", "reference_log_likelihoods", "reference_covered_log_probs",
    "gather_packed", "answer_eval_fn", "spaced_subset", "npo_from_log_likelihoods", "covered_log_probs", "kl_from_log_probs",
    "UnlearnResult", "trainable_names", "precision_dtype", "compute_context", "unlearn",
    "UnlearnRecipe", "forget_retain_examples", "model_fingerprint", "examples_fingerprint", "cache_key",
    "unlearned_dir", "unlearn_cached_result", "train_or_load", "unlearn_cached", "unlearn_all", "history_long", "results_table",
]
