"""Figures and a widget for notebook 02 ("A model that remembers").

- :func:`plot_training_curves` — answer accuracy / probability / loss of target and oracle over training
- :func:`plot_min_k_distributions` — Min-K% scores of forget vs holdout (and retain) texts for one model
- :func:`plot_metric_bars` — MUSE metrics of several models side by side
- :func:`answer_table` / :func:`person_explorer` — what each model answers about one person (widget)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..validation import check_choice

CURVE_METRICS = ("acc", "prob", "loss")
SPLIT_COLORS = {"forget": "tab:red", "retain": "tab:blue", "holdout": "tab:gray"}
ROLE_STYLES = {"target": "-", "oracle": "--"}


def _axes(ax, figsize=(6.0, 3.6)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def history_frame(history: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """Long table of training histories: one row per (model, logged step) with every logged column."""
    rows = [dict(row, model=role) for role, rows_ in history.items() for row in rows_]
    if not rows:
        raise ValueError("history={} is not accepted; accepted values: {'target': [{'step': ..., ...}], ...}")
    return pd.DataFrame(rows)


def plot_training_curves(history: Mapping[str, Sequence[dict]], metric: str = "acc", ax=None):
    """Forget and retain answer accuracy (``'acc'``), answer probability (``'prob'``) or training loss
    (``'loss'``) against the training step, one line style per model (target solid, oracle dashed)."""
    check_choice("metric", metric, CURVE_METRICS)
    frame = history_frame(history)
    fig, ax = _axes(ax)
    for role, part in frame.groupby("model", sort=False):
        style = ROLE_STYLES.get(role, ":")
        if metric == "loss":
            part = part[part["step"] > 0]
            ax.plot(part["step"], part["loss"], style, color="black", label=f"{role}")
            continue
        for split in ("forget", "retain"):
            col = f"{split}_{metric}"
            if col in part:
                ax.plot(part["step"], part[col], style, color=SPLIT_COLORS[split], label=f"{role}: {split} questions")
    ax.set_xlabel("training step")
    ax.set_ylabel({"acc": "answer accuracy (teacher-forced)", "prob": "mean probability of the true answer",
                   "loss": "training loss (nats/token, label-smoothed)"}[metric])
    if metric != "loss":
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_min_k_distributions(scores: Mapping[str, np.ndarray], ax=None, title: str | None = None, bins: int = 20):
    """Histograms of Min-K% scores (mean of the lowest 40% token log-probabilities) per split.

    A model that memorised the forget set puts forget texts to the right of holdout texts.
    """
    if not scores:
        raise ValueError("scores={} is not accepted; accepted values: {'forget': array, 'holdout': array, ...}")
    for split in scores:
        check_choice("split", split, tuple(SPLIT_COLORS))
    fig, ax = _axes(ax)
    values = np.concatenate([np.asarray(v, dtype=float) for v in scores.values()])
    edges = np.linspace(values.min(), values.max() + 1e-9, bins + 1)
    for split, vals in scores.items():
        ax.hist(np.asarray(vals, dtype=float), bins=edges, alpha=0.5, color=SPLIT_COLORS[split], label=f"{split} ({len(vals)} texts)")
    ax.set_xlabel("Min-40% score (mean log-prob of the 40% least likely tokens, nats)")
    ax.set_ylabel("number of texts")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_metric_bars(results: Mapping[str, Mapping[str, float]], keys: Sequence[str], ax=None):
    """Grouped bars: one group per metric in ``keys``, one bar per model of ``results`` (values in [0, 1])."""
    if not results:
        raise ValueError("results={} is not accepted; accepted values: {'target': {...}, 'oracle': {...}}")
    for name, res in results.items():
        for key in keys:
            if key not in res:
                raise ValueError(f"keys={list(keys)!r} is not accepted: {name!r} has no {key!r}; accepted values: {sorted(res)}")
    fig, ax = _axes(ax, figsize=(max(6.0, 1.1 * len(keys) + 1.0), 3.8))
    width = 0.8 / len(results)
    x = np.arange(len(keys))
    for i, (name, res) in enumerate(results.items()):
        ax.bar(x + (i - (len(results) - 1) / 2) * width, [res[k] for k in keys], width, label=name)
    ax.set_xticks(x, [k.replace("_", "\n") for k in keys], fontsize=8)
    ax.set_ylabel("score (fraction)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def answer_table(models: Mapping[str, object], tokenizer, data, name: str) -> pd.DataFrame:
    """For one person of MUSE-mini: each question, the true answer, and every model's greedy answer and
    probability of the true answer."""
    from ..data import Example, qa_prompt
    from ..metrics import answer_stats, greedy_generate

    people = {p["name"]: p for p in data.people}
    check_choice("name", name, list(people))
    person = people[name]
    from ..data import ATTRIBUTES, question_for

    questions = [question_for(name, a) for a in ATTRIBUTES]
    truths = [person[a] for a in ATTRIBUTES]
    table = pd.DataFrame({"split": person["split"], "question": questions, "true answer": truths})
    examples = [Example(qa_prompt(q), " " + t) for q, t in zip(questions, truths)]
    for label, model in models.items():
        table[f"{label} says"] = greedy_generate(model, tokenizer, [e.prompt for e in examples], max_new_tokens=4)
        table[f"{label} p(true)"] = answer_stats(model, tokenizer, examples)["prob"].numpy().round(3)
    return table


def person_explorer(models: Mapping[str, object], tokenizer, data, names: Sequence[str] | None = None):
    """A dropdown of people (forget people first) showing :func:`answer_table` for the chosen one."""
    import ipywidgets as widgets
    from IPython.display import display

    order = {"forget": 0, "retain": 1, "retain2": 2, "holdout": 3}
    names = list(names) if names is not None else [p["name"] for p in sorted(data.people, key=lambda p: order[p["split"]])]
    labels = [(f"{n} ({next(p['split'] for p in data.people if p['name'] == n)})", n) for n in names]
    dropdown = widgets.Dropdown(options=labels, value=names[0], description="person")
    out = widgets.Output()

    def show(change=None) -> None:
        out.clear_output(wait=True)
        with out:
            display(answer_table(models, tokenizer, data, dropdown.value))

    dropdown.observe(show, names="value")
    show()
    return widgets.VBox([dropdown, out])
