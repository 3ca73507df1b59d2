"""MUSE's metrics, as small pure functions plus batched model passes.

Following MUSE (Shi et al., 2024; public code ``swj0419/muse_bench``):

- **VerbMem** — ROUGE-L F1 (``rouge_score``, no stemmer) between the greedy continuation of a prefix of a
  forget document and its true continuation.
- **KnowMem** — ROUGE-L F1 between the greedy answer to a question and the true answer, with MUSE's
  prompt (``Question: q\\nAnswer:``, after ``shots`` few-shot pairs; the output is cut at a blank line or
  the next ``Question``); here also exact-match accuracy. On retain questions it is the *utility*.
- **PrivLeak** — Min-K% (K = 40%) membership inference: a text's score is the mean of its lowest 40%
  token log-probabilities. MUSE's AUC ``forget_holdout_Min-40%`` labels holdout texts 1 and forget
  texts 0 and ranks them by that score, i.e. ``AUC = P(score(holdout) > score(forget))``: a model that
  memorised the forget set makes forget texts *more* likely than holdout ones, so AUC -> 0.
  ``PrivLeak = (AUC - AUC_oracle) / AUC_oracle * 100`` (≈ -100 for a memorising target, 0 for the
  oracle itself, ≈ 0 for perfect unlearning, positive for over-unlearning).
- **answer probability** — mean over questions of the true answer's probability under teacher forcing
  (per-token geometric mean for multi-token answers): the smooth companion of accuracy.

Scale: ROUGE and accuracies are fractions in [0, 1] (MUSE prints them x100); PrivLeak is in percent.
Generation is batched with left padding and the KV cache.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .validation import check_choice, check_range

#: MUSE cuts a generated KnowMem answer at the first of these
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")
MIN_K = 0.4
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SCORER = None


# --- pure functions ----------------------------------------------------------------------------------
def _scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _SCORER


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of ``prediction`` against ``reference`` (``rouge_score``, as MUSE): 1 when equal."""
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace: ``' Velmora. '`` -> ``'velmora'``."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> bool:
    """Whether the normalised prediction equals the normalised reference."""
    return normalize_answer(prediction) == normalize_answer(reference)


def truncate_answer(text: str, stops: Sequence[str] = KNOWMEM_STOPS) -> str:
    """The generated text up to the first stop string (MUSE's ``get_prefix_before_words_occur``)."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def min_k_score(token_logprobs: Sequence[float] | torch.Tensor | np.ndarray, k: float = MIN_K) -> float:
    """Min-K% score: mean of the lowest ``k`` fraction of token log-probabilities (at least one).

    Higher means the text looks more familiar. (MUSE stores the negative of this number.)
    """
    check_range("k", k, 0.0, 1.0, low_inclusive=False)
    values = np.sort(np.asarray(token_logprobs, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("token_logprobs=[] is not accepted; accepted values: at least one log-probability")
    count = max(1, int(values.size * k))
    return float(values[:count].mean())


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve when higher scores should mean "positive": ``P(pos > neg)``, ties ½.

    Equal to ``sklearn.metrics.roc_auc_score`` with labels 1 for ``positive``; 1.0 for perfectly
    separated scores, 0.5 for identical distributions.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"positive has {pos.size} and negative {neg.size} scores; accepted values: both non-empty")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("scores must be finite; accepted values: finite numbers")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def privleak_auc_from_scores(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """MUSE's ``forget_holdout_Min-40%`` AUC: ``P(score(holdout) > score(forget))`` (memorised -> 0)."""
    return roc_auc(positive=holdout_scores, negative=forget_scores)


def privleak(auc: float, oracle_auc: float) -> float:
    """PrivLeak in percent: ``(auc - oracle_auc) / oracle_auc * 100`` (MUSE's sign convention)."""
    check_range("auc", auc, 0.0, 1.0)
    check_range("oracle_auc", oracle_auc, 0.0, 1.0, low_inclusive=False)
    return (auc - oracle_auc) / oracle_auc * 100.0


# --- model passes ------------------------------------------------------------------------------------
def _device(model) -> torch.device:
    try:
        return model.device
    except AttributeError:
        return next(model.parameters()).device


@contextmanager
def _padding_side(tokenizer, side: str):
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@torch.no_grad()
def target_logprobs(model, tokenizer, examples, batch_size: int = 64) -> list[torch.Tensor]:
    """Per example, the log-probabilities of its target tokens under teacher forcing (a 1-D tensor).

    ``examples`` are ``utils.data.Example`` (prompt/target); texts become ``Example('', text)``.
    """
    from .data import Example, encode_examples

    check_range("batch_size", batch_size, 1, integer=True)
    examples = [e if isinstance(e, Example) else Example("", e) for e in examples]
    out: list[torch.Tensor] = []
    device = _device(model)
    for start in range(0, len(examples), batch_size):
        enc = encode_examples(tokenizer, examples[start:start + batch_size])
        ids, mask, labels = (enc[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        logp = -F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        keep = target != -100
        out += [logp[i][keep[i]].cpu() for i in range(ids.shape[0])]
    return out


@torch.no_grad()
def answer_stats(model, tokenizer, examples, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Teacher-forced statistics of each example's target: ``logprob`` (mean per token), ``prob``
    (``exp`` of it: the geometric-mean token probability) and ``correct`` (every target token is the
    argmax). One forward pass per batch; cheap enough to log during training.
    """
    from .data import encode_examples

    check_range("batch_size", batch_size, 1, integer=True)
    device = _device(model)
    logprob, correct = [], []
    for start in range(0, len(examples), batch_size):
        enc = encode_examples(tokenizer, list(examples[start:start + batch_size]))
        ids, mask, labels = (enc[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        keep = target != -100
        logp = -F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        hit = (logits.argmax(-1) == target) | ~keep
        logprob.append(((logp * keep).sum(1) / keep.sum(1).clamp(min=1)).cpu())
        correct.append(hit.all(1).cpu())
    lp = torch.cat(logprob)
    return {"logprob": lp, "prob": lp.exp(), "correct": torch.cat(correct)}


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 64) -> list[str]:
    """Greedy continuations of ``prompts`` (batched: left padding, KV cache), decoded without special tokens.

    Generation stops at EOS; for models with a short context (the tiny one) ``max_new_tokens`` is capped
    so that prompt + continuation fit ``max_position_embeddings``.
    """
    check_range("max_new_tokens", max_new_tokens, 1, integer=True)
    check_range("batch_size", batch_size, 1, integer=True)
    device = _device(model)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    outputs: list[str] = []
    with _padding_side(tokenizer, "left"):
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True)
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            new = max_new_tokens if not limit else max(1, min(max_new_tokens, limit - ids.shape[1]))
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False, num_beams=1,
                pad_token_id=_pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id, use_cache=True,
            )
            outputs += tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in outputs]


def knowmem(
    model,
    tokenizer,
    qa: Sequence[dict],
    icl: Sequence[dict] = (),
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> dict:
    """KnowMem on ``qa`` (``{'question', 'answer'}``) with ``icl`` few-shot pairs: mean ROUGE-L F1,
    exact-match accuracy, and per-question ``outputs``, ``rouge``, ``correct``."""
    from .data import qa_prompt

    prompts = [qa_prompt(d["question"], list(icl)) for d in qa]
    outputs = [truncate_answer(o).strip() for o in greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size)]
    rouge = [rouge_l_f1(o, d["answer"]) for o, d in zip(outputs, qa)]
    correct = [exact_match(o, d["answer"]) for o, d in zip(outputs, qa)]
    return {"rouge": float(np.mean(rouge)), "acc": float(np.mean(correct)), "outputs": outputs,
            "rouge_each": rouge, "correct": correct}


def verbmem(model, tokenizer, items: Sequence[dict], max_new_tokens: int = 128, batch_size: int = 64) -> dict:
    """VerbMem on ``{'prompt', 'gt'}`` items: mean ROUGE-L F1 of greedy continuations vs the truth."""
    outputs = greedy_generate(model, tokenizer, [d["prompt"] for d in items], max_new_tokens, batch_size)
    rouge = [rouge_l_f1(o, d["gt"]) for o, d in zip(outputs, items)]
    return {"rouge": float(np.mean(rouge)), "outputs": outputs, "rouge_each": rouge}


def min_k_scores(model, tokenizer, texts: Sequence[str], k: float = MIN_K, batch_size: int = 64) -> np.ndarray:
    """Min-K% score of each text (mean of its lowest ``k`` token log-probabilities)."""
    check_range("k", k, 0.0, 1.0, low_inclusive=False)
    return np.array([min_k_score(lp, k) for lp in target_logprobs(model, tokenizer, list(texts), batch_size)])


def privleak_scores(
    model, tokenizer, data, k: float = MIN_K, batch_size: int = 64, splits: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Min-K% scores of the PrivLeak texts, per split (default: every split of ``data.privleak``).

    MUSE's texts are long (~2k tokens): use a small ``batch_size`` (4-8) for 7B models.
    """
    splits = list(data.privleak) if splits is None else [check_choice("splits", s, list(data.privleak)) for s in splits]
    return {split: min_k_scores(model, tokenizer, data.privleak[split], k, batch_size) for split in splits}


def privleak_auc(model, tokenizer, data, k: float = MIN_K, batch_size: int = 64) -> float:
    """MUSE's forget-vs-holdout Min-K% AUC of ``model`` (compute it on the oracle for ``oracle_auc``)."""
    scores = privleak_scores(model, tokenizer, data, k, batch_size, splits=("forget", "holdout"))
    return privleak_auc_from_scores(scores["forget"], scores["holdout"])


def evaluate_model(
    model,
    tokenizer,
    data,
    *,
    oracle_auc: float | None = None,
    batch_size: int = 64,
    shots: int = 0,
    k: float = MIN_K,
    knowmem_max_new_tokens: int = 32,
    verbmem_max_new_tokens: int = 128,
    include: Sequence[str] = ("knowmem", "verbmem", "privleak", "prob"),
) -> dict[str, float]:
    """Every MUSE metric of ``model`` on ``data`` (a ``MuseData``), as one flat dict of floats.

    Keys: ``knowmem_forget_acc``, ``knowmem_forget_rouge``, ``knowmem_retain_acc``,
    ``knowmem_retain_rouge`` (utility), ``forget_answer_prob``, ``retain_answer_prob``,
    ``verbmem_forget``, ``privleak_auc`` and, when ``oracle_auc`` is given, ``privleak`` (percent).
    ``shots`` few-shot pairs from ``data.icl`` precede each KnowMem question (0 for the tiny model,
    which was trained on the zero-shot format). ``include`` selects metric groups (all by default).
    """
    from .data import qa_examples

    check_range("batch_size", batch_size, 1, integer=True)
    check_range("shots", shots, 0, integer=True)
    for group in include:
        check_choice("include", group, ("knowmem", "verbmem", "privleak", "prob"))
    if oracle_auc is not None:
        check_range("oracle_auc", oracle_auc, 0.0, 1.0, low_inclusive=False)
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        for split in ("forget", "retain"):
            if split not in data.knowmem:
                continue
            icl = data.icl.get(split, [])[:shots]
            if "knowmem" in include:
                res = knowmem(model, tokenizer, data.knowmem[split], icl, knowmem_max_new_tokens, batch_size)
                out[f"knowmem_{split}_acc"] = res["acc"]
                out[f"knowmem_{split}_rouge"] = res["rouge"]
            if "prob" in include:
                stats = answer_stats(model, tokenizer, qa_examples(data, split, shots=len(icl)), batch_size)
                out[f"{split}_answer_prob"] = float(stats["prob"].mean())
        if "verbmem" in include and data.verbmem:
            out["verbmem_forget"] = verbmem(model, tokenizer, data.verbmem, verbmem_max_new_tokens, batch_size)["rouge"]
        if "privleak" in include:
            out["privleak_auc"] = privleak_auc(model, tokenizer, data, k, batch_size)
            if oracle_auc is not None:
                out["privleak"] = privleak(out["privleak_auc"], oracle_auc)
    finally:
        model.train(was_training)
    return out
