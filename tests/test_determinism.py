"""Determinism: same seed, same bits; another seed, other bits.

Every stochastic step of the series is checked twice with the same seed (bit-identical weights and
identical metrics) and once with another seed (different weights, so each test can fail):
the unlearning loop (bf16 and fp32), the tiny-model training function, the MUSE-mini generator, and
the quantizers (RTN, bitsandbytes, GPTQ and AWQ with a fixed calibration tensor, which must not depend
on the global random state). Finally every notebook must print its seed in its set-up cell.

Each run starts from a *scrambled* global random state, so a function that silently relies on the
global RNG (instead of seeding itself from its ``seed`` argument) fails here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils import unlearning as U
from utils.config import repo_root
from utils.data import Example, corpus_fingerprint, generate_muse_mini, write_muse_mini
from utils.models import TinyRecipe, build_word_tokenizer, tiny_config, train_tiny_model
from utils.quantization import fake_quantize_model

#: columns that measure wall time, not the computation
TIMING_COLUMNS = ("seconds",)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def scramble_global_rng(salt: int) -> None:
    """Put python/numpy/torch's global generators in a state unrelated to the seed under test."""
    import random

    import numpy as np

    random.seed(10_000 + salt)
    np.random.seed(10_000 + salt)
    torch.manual_seed(10_000 + salt)


def state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Bit-identical weights (same names, dtypes, shapes and bytes)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])


NAMES = ("Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ivy", "Jo", "Kit", "Lu")
CITIES = ("Paris", "Oslo", "Rome", "Lima", "Kyiv", "Baku")


def handful_of_examples() -> tuple[list[Example], list[Example]]:
    """8 forget and 12 retain QA facts (answer-only targets), as the series' ``qa`` forget loss uses."""
    facts = [Example(f"Question: Where was {n} born?\nAnswer:", f" {CITIES[i % len(CITIES)]}") for i, n in enumerate(NAMES)]
    facts += [Example(f"Question: Who likes {c}?\nAnswer:", f" {NAMES[i]}") for i, c in enumerate(CITIES)]
    forget, retain = facts[:8], facts[8:]
    return forget, retain


@pytest.fixture(scope="module")
def examples():
    return handful_of_examples()


@pytest.fixture(scope="module")
def tokenizer(examples):
    forget, retain = examples
    return build_word_tokenizer([e.prompt + e.target for e in forget + retain])


def tiny_llama(vocab_size: int, hidden: int = 32, intermediate: int = 64, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=vocab_size, tie_word_embeddings=False, initializer_range=0.06)
    return LlamaForCausalLM(cfg).eval()


# --------------------------------------------------------------------------------------------------
# 1. unlearning
# --------------------------------------------------------------------------------------------------
def run_unlearning(model, tokenizer, forget, retain, *, method: str, precision: str, seed: int, salt: int) -> U.UnlearnResult:
    scramble_global_rng(salt)
    # batch 3 < 8 forget / 12 retain facts: the seed decides *which* facts each step sees
    return U.unlearn(model, tokenizer, forget, retain, method=method, steps=4, lr=1e-3, batch_size=3,
                     precision=precision, eval_every=2, eval_fn=U.answer_eval_fn(tokenizer, forget, retain),
                     seed=seed, progress=False, device="cpu")


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("method", ["GA_GDR", "NPO_KLR"])
def test_unlearning_same_seed_same_bits_other_seed_other_bits(examples, tokenizer, method, precision):
    forget, retain = examples
    model = tiny_llama(len(tokenizer))
    first = run_unlearning(model, tokenizer, forget, retain, method=method, precision=precision, seed=5, salt=1)
    second = run_unlearning(model, tokenizer, forget, retain, method=method, precision=precision, seed=5, salt=2)
    other = run_unlearning(model, tokenizer, forget, retain, method=method, precision=precision, seed=6, salt=1)

    expected_dtype = U.precision_dtype(precision)
    assert next(first.model.parameters()).dtype == expected_dtype
    assert not state_dicts_equal(first.model, copy.deepcopy(model).to(expected_dtype)), "the run must change the weights"
    assert state_dicts_equal(first.model, second.model), "same seed, different weights"
    pd.testing.assert_frame_equal(without_timing(first.history), without_timing(second.history), check_exact=True)
    assert {"forget_acc", "forget_prob", "retain_prob", "loss"} <= set(first.history.columns)
    assert not state_dicts_equal(first.model, other.model), "another seed must give other weights"
    assert not without_timing(first.history).equals(without_timing(other.history))


def test_unlearning_leaves_the_input_model_untouched(examples, tokenizer):
    forget, retain = examples
    model = tiny_llama(len(tokenizer))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_unlearning(model, tokenizer, forget, retain, method="GA_GDR", precision="bf16", seed=0, salt=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)


# --------------------------------------------------------------------------------------------------
# 2. training the tiny model
# --------------------------------------------------------------------------------------------------
TRAIN_RECIPE = TinyRecipe(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          batch_size=4, steps=6, eval_every=3, lr=1e-2)


def run_training(tokenizer, examples, *, seed: int, salt: int) -> tuple[LlamaForCausalLM, list[dict]]:
    torch.manual_seed(0)  # the same initial weights for every run: only the training seed varies
    model = LlamaForCausalLM(tiny_config(tokenizer, TRAIN_RECIPE)).float()
    scramble_global_rng(salt)
    forget, retain = examples
    texts = [Example("", e.prompt + e.target) for e in forget + retain]
    history = train_tiny_model(model, tokenizer, texts, TRAIN_RECIPE, seed=seed, eval_sets={"forget": forget},
                               progress=False)
    return model, history


def test_tiny_training_same_seed_same_bits_other_seed_other_bits(examples, tokenizer):
    model_a, hist_a = run_training(tokenizer, examples, seed=3, salt=1)
    model_b, hist_b = run_training(tokenizer, examples, seed=3, salt=2)
    model_c, hist_c = run_training(tokenizer, examples, seed=4, salt=1)
    assert [r["step"] for r in hist_a] == [0, 3, 6]
    assert state_dicts_equal(model_a, model_b), "same seed, different weights"
    assert pd.DataFrame(hist_a).drop(columns="seconds").equals(pd.DataFrame(hist_b).drop(columns="seconds"))
    assert not state_dicts_equal(model_a, model_c), "another seed must give another batch order, other weights"


# --------------------------------------------------------------------------------------------------
# 3. the MUSE-mini generator
# --------------------------------------------------------------------------------------------------
def test_muse_mini_generator_is_a_pure_function_of_its_seed(tmp_path):
    scramble_global_rng(1)
    a = generate_muse_mini(seed=11, n_retain=10, n_retain2=5)
    scramble_global_rng(2)
    b = generate_muse_mini(seed=11, n_retain=10, n_retain2=5)
    c = generate_muse_mini(seed=12, n_retain=10, n_retain2=5)
    assert a == b
    assert a.people != c.people and a.raw != c.raw
    # the files too: two writes are byte-identical (same fingerprint), another seed is not
    write_muse_mini(tmp_path / "a", a)
    write_muse_mini(tmp_path / "b", b)
    write_muse_mini(tmp_path / "c", c)
    assert corpus_fingerprint(tmp_path / "a") == corpus_fingerprint(tmp_path / "b") != corpus_fingerprint(tmp_path / "c")


# --------------------------------------------------------------------------------------------------
# 4. quantizers
# --------------------------------------------------------------------------------------------------
#: every built-in and calibrated quantizer; GPTQ/AWQ see the same fixed calibration tensor
QUANTIZERS = ("rtn8", "rtn4", "int8", "fp4", "nf4", "gptq4", "awq4")


@pytest.fixture(scope="module")
def quant_model():
    # hidden 64 / intermediate 128: every row length is a multiple of the 64-weight groups
    return tiny_llama(vocab_size=96, hidden=64, intermediate=128, seed=1)


def calibration(seed: int) -> torch.Tensor:
    return torch.randint(0, 96, (4, 16), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", QUANTIZERS)
def test_quantizers_are_deterministic(quant_model, name):
    calib = calibration(0)
    scramble_global_rng(1)
    first = fake_quantize_model(quant_model, name, calibration=calib)
    scramble_global_rng(2)
    second = fake_quantize_model(quant_model, name, calibration=calib.clone())
    assert not state_dicts_equal(first, quant_model), f"{name} must change the weights"
    assert state_dicts_equal(first, second), f"{name}: the same input gave different weights"


@pytest.mark.parametrize("name", ["gptq4", "awq4"])
def test_calibrated_quantizers_depend_on_the_calibration(quant_model, name):
    """So that the determinism test above can fail: the calibration tensor does change the result."""
    a = fake_quantize_model(quant_model, name, calibration=calibration(0))
    b = fake_quantize_model(quant_model, name, calibration=calibration(1))
    assert not state_dicts_equal(a, b)


def test_quantizers_depend_on_the_weights(quant_model):
    other = tiny_llama(vocab_size=96, hidden=64, intermediate=128, seed=2)
    assert not state_dicts_equal(fake_quantize_model(quant_model, "rtn4"), fake_quantize_model(other, "rtn4"))


# --------------------------------------------------------------------------------------------------
# 5. notebooks print their seed
# --------------------------------------------------------------------------------------------------
NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.py"))
SEED_PRINT = re.compile(r"print\((?:(?!\n\S).)*\b(?:cfg\.seed|SEED)\b", re.S)
#: the seed must be printed among the first code cells (the set-up cell of CONTRIBUTING step 4)
EARLY_CODE_CELLS = 4


def code_cells(source: str) -> list[str]:
    """Bodies of the jupytext percent code cells (markdown cells dropped)."""
    cells = re.split(r"^# %%.*$", source, flags=re.M)
    headers = re.findall(r"^# %%.*$", source, flags=re.M)
    return [body for header, body in zip(headers, cells[1:]) if "[markdown]" not in header]


#: ``utils.config.offline_setup`` seeds everything and prints the seed (tests/test_config.py checks both)
SETUP_CALL = "offline_setup("


def seed_problem(source: str) -> str | None:
    """None when an early code cell calls ``seed_everything`` and one prints the seed; else what is wrong.

    A cell that calls ``offline_setup`` does both.
    """
    cells = code_cells(source)
    seeded = [i for i, body in enumerate(cells) if "seed_everything(" in body or SETUP_CALL in body]
    if not seeded:
        return "no code cell calls seed_everything"
    early = cells[:max(EARLY_CODE_CELLS, seeded[0] + 1)]
    if not any(SEED_PRINT.search(body) or SETUP_CALL in body for body in early):
        return f"none of its first {len(early)} code cells prints the seed (print(... cfg.seed ...))"
    return None


def test_the_seed_print_check_can_fail():
    setup = "# %%\ncfg = RunConfig(seed=SEED)\nseed_everything(cfg.seed)\n"
    assert seed_problem(setup + 'print(f"seed={cfg.seed}  device={device}")\n') is None
    assert seed_problem(setup + "print(device)\nx = cfg.seed\n") is not None
    assert seed_problem("# %% [markdown]\n# print(cfg.seed)\n# %%\nx = 1\n") == "no code cell calls seed_everything"
    assert seed_problem('# %%\ncfg, device = offline_setup(SEED, MODEL, DATA, DEVICE, notebook="04")\n') is None


def test_there_are_notebooks_to_check():
    assert NOTEBOOKS, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_prints_its_seed_in_an_early_cell(path: Path):
    problem = seed_problem(path.read_text(encoding="utf-8"))
    assert problem is None, f"{path.name}: {problem}"
