"""Bad input everywhere: every public entry point refuses a bad parameter with ONE
clear ``ValueError`` — one line that names the parameter, the value received and the accepted values —
raised before any expensive work (and, for things that need a network or a GPU, within seconds).

Cases that fail today are marked ``xfail(strict=True)`` with the fix they need in their reason, so the
mark must be removed when the fix lands.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils import config as C
from utils import data as D
from utils import models as M
from utils import quantization as Q
from utils import repro as R
from utils import study as S
from utils import sure as SU
from utils import unlearning as U
from utils.data import Example

#: what every message must contain besides the parameter: the accepted values (or the bounds); the
#: UQ_MODEL / name_or_path messages list them as "neither a preset (...), ... nor a hub id" instead
ACCEPTED = re.compile(r"accepted values|must be|neither a preset \(|not a preset \(", re.I)
#: a hang guard for anything that could wait on a network, not a speed target
HANG_GUARD_S = 30.0

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


@pytest.fixture(scope="module")
def ctx():
    """A tiny model, its tokenizer and one QA example: enough for every argument check to run."""
    forget = [Example("Question: Where was Ada born?\nAnswer:", " Oslo")]
    retain = [Example("Question: Where was Bo born?\nAnswer:", " Rome")]
    tok = M.build_word_tokenizer([e.prompt + e.target for e in forget + retain])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=len(tok))).eval()
    saliency = pd.DataFrame({"module": ["a", "b", "c", "d"], "saliency": [1.0, 2.0, 3.0, 4.0]})
    tied = pd.DataFrame({"module": ["a", "b", "c"], "saliency": [1.0, 1.0, 1.0]})
    return SimpleNamespace(model=model, tok=tok, forget=forget, retain=retain, saliency=saliency, tied=tied)


def unlearn(c, **overrides):
    """``utils.unlearning.unlearn`` on the tiny model, one step, with ``overrides``."""
    kwargs = dict(method="GA_GDR", steps=1, progress=False, eval_every=None, device="cpu")
    kwargs.update(overrides)
    forget = kwargs.pop("forget", c.forget)
    return U.unlearn(c.model, c.tok, forget, c.retain, **kwargs)


def assert_one_clear_error(call, names: str, flags: int = 0) -> str:
    """``call()`` raises a ValueError whose one-line message matches ``names`` and states the accepted values."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert re.search(names, message, flags), f"the message does not name {names!r}: {message}"
    assert ACCEPTED.search(message), f"the message does not state the accepted values: {message}"
    assert "\n" not in message.strip(), f"the message is not one line: {message!r}"
    return message


def xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


# --------------------------------------------------------------------------------------------------
# the table: (call with the fixture namespace, regex the message must match)
# --------------------------------------------------------------------------------------------------
CASES = [
    # utils.unlearning -------------------------------------------------------------------------------
    pytest.param(lambda c: unlearn(c, method="GAX"), r"method='GAX'.*'GA'.*'NPO_KLR'", id="unlearn-method-unknown"),
    pytest.param(lambda c: unlearn(c, method="ga"), r"method='ga'", id="unlearn-method-lowercase"),
    pytest.param(lambda c: unlearn(c, alpha=-1.0), r"alpha=-1\.0", id="unlearn-alpha-negative"),
    pytest.param(lambda c: unlearn(c, alpha=float("nan")), r"alpha=nan", id="unlearn-alpha-nan"),
    pytest.param(lambda c: unlearn(c, method="NPO", beta=0.0), r"beta=0\.0", id="unlearn-beta-zero"),
    pytest.param(lambda c: unlearn(c, method="NPO", beta=-0.1), r"beta=-0\.1", id="unlearn-beta-negative"),
    pytest.param(lambda c: unlearn(c, lr=0.0), r"lr=0\.0", id="unlearn-lr-zero"),
    pytest.param(lambda c: unlearn(c, lr=-2e-5), r"lr=-2e-05", id="unlearn-lr-negative"),
    pytest.param(lambda c: unlearn(c, forget=[]), r"forget=\[\]", id="unlearn-forget-empty"),
    pytest.param(lambda c: unlearn(c, forget=None), r"forget=None", id="unlearn-forget-none"),
    pytest.param(lambda c: U.unlearn(c.model, c.tok, c.forget, [], method="GA_GDR", steps=1, progress=False),
                 r"retain=\[\]", id="unlearn-retain-empty-with-gdr"),
    pytest.param(lambda c: unlearn(c, precision="fp16"), r"precision='fp16'.*'bf16'.*'fp32'", id="unlearn-precision"),
    pytest.param(lambda c: unlearn(c, steps=0), r"steps=0", id="unlearn-steps-zero"),
    pytest.param(lambda c: unlearn(c, batch_size=0), r"batch_size=0", id="unlearn-batch-size-zero"),
    pytest.param(lambda c: unlearn(c, clip=0.0), r"clip=0\.0", id="unlearn-clip-zero"),
    pytest.param(lambda c: unlearn(c, seed=-1), r"seed=-1", id="unlearn-seed-negative"),
    pytest.param(lambda c: unlearn(c, trainable="q_proj"), r"trainable='q_proj'", id="unlearn-trainable-string"),
    pytest.param(lambda c: unlearn(c, lr=float("inf")), r"lr=inf", id="unlearn-lr-inf"),
    pytest.param(lambda c: unlearn(c, method="NPO", beta=float("inf")), r"beta=inf", id="unlearn-beta-inf"),
    pytest.param(lambda c: unlearn(c, device="tpu"), r"(?i)device='tpu'", id="unlearn-device-unknown"),
    pytest.param(lambda c: U.UnlearnRecipe(lr=0.0), r"lr=0\.0", id="recipe-lr-zero"),
    pytest.param(lambda c: U.UnlearnRecipe(alpha=-1.0), r"alpha=-1\.0", id="recipe-alpha-negative"),
    pytest.param(lambda c: U.UnlearnRecipe(beta=0.0), r"beta=0\.0", id="recipe-beta-zero"),
    pytest.param(lambda c: U.UnlearnRecipe(forget_on="docs"), r"forget_on='docs'.*'text'.*'answers'", id="recipe-forget-on"),
    pytest.param(lambda c: U.UnlearnRecipe(precision="int8"), r"precision='int8'", id="recipe-precision"),
    pytest.param(lambda c: U.unlearn_cached_result(None, "GAX"), r"method='GAX'", id="unlearn-cached-method"),
    pytest.param(lambda c: U.unlearn_all(None, ["GA", "GAX"]), r"method='GAX'", id="unlearn-all-method"),
    # utils.quantization -----------------------------------------------------------------------------
    pytest.param(lambda c: Q.get_quantizer("rtn5"), r"quantizer='rtn5'.*'rtn4'.*'nf4'", id="quantizer-name"),
    pytest.param(lambda c: Q.fake_quantize_model(c.model, "bogus"), r"quantizer='bogus'", id="fake-quantize-model-name"),
    pytest.param(lambda c: Q.fake_quantize_weight(torch.randn(4, 64), "q4"), r"quantizer='q4'", id="fake-quantize-weight-name"),
    pytest.param(lambda c: Q.QuantSpec("x", method="fp4", bits=3), r"bits=3.*4", id="fp4-bits-3"),
    pytest.param(lambda c: Q.QuantSpec("x", method="nf4", bits=3), r"bits=3.*4", id="nf4-bits-3"),
    pytest.param(lambda c: Q.QuantSpec("x", method="int8", bits=3, granularity="channel", group_size=None), r"bits=3.*8",
                 id="int8-bits-3"),
    pytest.param(lambda c: Q.QuantSpec("x", method="nf4", group_size=32), r"group_size=32.*64", id="nf4-block-size"),
    pytest.param(lambda c: Q.QuantSpec("x", method="hqq"), r"method='hqq'.*'rtn'", id="quantspec-method"),
    pytest.param(lambda c: Q.rtn_spec(bits=1), r"bits=1.*2.*8", id="rtn-bits-1"),
    pytest.param(lambda c: Q.rtn_spec(bits=9), r"bits=9.*2.*8", id="rtn-bits-9"),
    pytest.param(lambda c: Q.rtn_spec(bits=4.0), r"bits=4\.0", id="rtn-bits-float"),
    pytest.param(lambda c: Q.rtn_quantize(torch.randn(4, 64), bits=9), r"bits=9", id="rtn-quantize-bits-9"),
    pytest.param(lambda c: Q.rtn_quantize(torch.randn(4, 48), group_size=32), r"group_size=32.*48", id="rtn-group-not-dividing"),
    pytest.param(lambda c: Q.fake_quantize_weight(torch.randn(4, 48), Q.rtn_spec(group_size=32)), r"group_size=32",
                 id="fake-quantize-weight-group-not-dividing"),
    pytest.param(lambda c: Q.fake_quantize_model(c.model, "rtn4"), r"group_size=64.*32",
                 id="fake-quantize-model-group-not-dividing"),
    pytest.param(lambda c: Q.rtn_spec(scheme="symmetric"), r"scheme='symmetric'.*'absmax'.*'minmax'", id="rtn-scheme"),
    pytest.param(lambda c: Q.rtn_spec(granularity="block"), r"granularity='block'.*'tensor'.*'channel'.*'group'",
                 id="rtn-granularity"),
    pytest.param(lambda c: Q.rtn_quantize(torch.randn(4, 64), scheme="sym"), r"scheme='sym'", id="rtn-quantize-scheme"),
    pytest.param(lambda c: Q.rtn_quantize(torch.randn(4, 64), granularity="row"), r"granularity='row'",
                 id="rtn-quantize-granularity"),
    pytest.param(lambda c: Q.fake_quantize_model(c.model, "gptq4"), r"calibration=None", id="gptq-without-calibration"),
    pytest.param(lambda c: Q.load_quantized_pretrained("/nonexistent", "rtn4"), r"quantizer='rtn4'.*'fp4'",
                 id="load-quantized-not-bnb"),
    pytest.param(lambda c: Q.load_quantized_pretrained("/nonexistent-uq-folder", "nf4"), r"path='/nonexistent-uq-folder'",
                 id="load-quantized-path"),
    # utils.sure -------------------------------------------------------------------------------------
    pytest.param(lambda c: SU.select_modules(c.saliency, 0), r"gamma=0\b.*100", id="sure-gamma-0"),
    pytest.param(lambda c: SU.select_modules(c.saliency, 100), r"gamma=100", id="sure-gamma-100"),
    pytest.param(lambda c: SU.select_modules(c.saliency, -5.0), r"gamma=-5\.0", id="sure-gamma-negative"),
    pytest.param(lambda c: SU.select_modules(c.saliency, 150), r"gamma=150", id="sure-gamma-150"),
    pytest.param(lambda c: SU.saliency_threshold(c.saliency, float("nan")), r"gamma=nan", id="sure-gamma-nan"),
    pytest.param(lambda c: SU.select_modules(c.tied, 90), r"gamma=90 selects no module", id="sure-selects-nothing"),
    pytest.param(lambda c: SU.sweep_name(100, 1e-4), r"gamma=100", id="sure-sweep-gamma"),
    # utils.config.RunConfig (the UQ_* parameters cell) ----------------------------------------------
    pytest.param(lambda c: C.RunConfig(model="smollm2"), r"UQ_MODEL='smollm2'.*'tiny'.*'smollm2-135m'", id="config-preset-typo"),
    pytest.param(lambda c: C.RunConfig(model="not a model!"), r"UQ_MODEL='not a model!'", id="config-model-garbage"),
    pytest.param(lambda c: C.RunConfig(model=""), r"UQ_MODEL=''", id="config-model-empty"),
    pytest.param(lambda c: C.RunConfig(data="big"), r"UQ_DATA='big'.*'mini'.*'news'.*'books'", id="config-data"),
    pytest.param(lambda c: C.RunConfig(device="tpu"), r"UQ_DEVICE='tpu'.*'cpu'", id="config-device"),
    pytest.param(lambda c: C.RunConfig(device="cuda:x"), r"UQ_DEVICE='cuda:x'", id="config-device-cuda-x"),
    pytest.param(lambda c: C.RunConfig(device="tpu"), r"UQ_DEVICE='tpu'.*cuda:N", id="config-device-lists-cuda-N"),
    pytest.param(lambda c: C.RunConfig(seed=-1), r"UQ_SEED=-1", id="config-seed-negative"),
    pytest.param(lambda c: C.RunConfig(seed=1.5), r"UQ_SEED=1\.5", id="config-seed-float"),
    pytest.param(lambda c: C.RunConfig(seed=True), r"UQ_SEED=True", id="config-seed-bool"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_SEED": "one"}), r"UQ_SEED='one'", id="env-seed-word"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_SEED": "-3"}), r"UQ_SEED='-3'", id="env-seed-negative"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_MODEL": "???"}), r"UQ_MODEL='\?\?\?'", id="env-model"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_DATA": "MINI"}), r"UQ_DATA='MINI'", id="env-data-case"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_DEVICE": "gpu"}), r"UQ_DEVICE='gpu'", id="env-device"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_DEVICE": ""}), r"UQ_DEVICE=''", id="env-device-empty"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_CACHE": "/proc/uq-cache"}), r"UQ_CACHE='/proc/uq-cache'.*/proc", id="env-cache-proc"),
    pytest.param(lambda c: C.RunConfig(cache_dir="/sys/uq-cache"), r"UQ_CACHE='/sys/uq-cache'.*/sys", id="config-cache-sys"),
    pytest.param(lambda c: C.RunConfig.from_env({"UQ_SEED": "1.5"}), r"UQ_SEED='1\.5'", id="env-seed-float"),
    # utils.repro ------------------------------------------------------------------------------------
    pytest.param(lambda c: R.pick_device("tpu"), r"UQ_DEVICE='tpu'", id="pick-device-unknown"),
    pytest.param(lambda c: R.pick_device(None), r"(UQ_DEVICE|preference)=None", id="pick-device-none"),
    pytest.param(lambda c: R.seed_everything(-1), r"seed=-1", id="seed-everything-negative"),
    # utils.data -------------------------------------------------------------------------------------
    pytest.param(lambda c: D.generate_muse_mini(n_forget=0), r"n_forget=0", id="generate-n-forget"),
    pytest.param(lambda c: D.generate_muse_mini(n_bios=30), r"n_bios=30", id="generate-n-bios"),
    pytest.param(lambda c: D.generate_muse_mini(name_words=3), r"name_words=3", id="generate-name-words"),
    pytest.param(lambda c: D.generate_muse_mini(seed=-1), r"seed=-1", id="generate-seed"),
    pytest.param(lambda c: D.load_data("wiki"), r"data='wiki'.*'mini'", id="load-data-name"),
    # utils.models -----------------------------------------------------------------------------------
    pytest.param(lambda c: M.TinyRecipe(steps=0), r"steps=0", id="tiny-recipe-steps"),
    pytest.param(lambda c: M.TinyRecipe(label_smoothing=1.0), r"label_smoothing=1\.0", id="tiny-recipe-label-smoothing"),
    pytest.param(lambda c: M.with_recipe(step=50), r"step", id="with-recipe-unknown-field"),
    pytest.param(lambda c: M.load_model("no-such-model-or-folder"), r"name_or_path='no-such-model-or-folder'",
                 id="load-model-not-a-name"),
    pytest.param(lambda c: M.load_model("tiny", dtype="int3"), r"dtype='int3'", id="load-model-dtype"),
    pytest.param(lambda c: M.load_model("tiny", device="tpu"), r"UQ_DEVICE='tpu'", id="load-model-device"),
    # utils.muse -------------------------------------------------------------------------------------
    pytest.param(lambda c: __import__("utils.muse").muse.load_muse("wiki"), r"data='wiki'.*'news'.*'books'", id="muse-name"),
    pytest.param(lambda c: __import__("utils.muse").muse.load_muse("news", local_dir="/nonexistent-uq-muse"),
                 r"local_dir='/nonexistent-uq-muse'", id="muse-local-dir-missing"),
]


@pytest.mark.parametrize("call, names", CASES)
def test_bad_parameter_gives_one_clear_error(ctx, call, names):
    assert_one_clear_error(lambda: call(ctx), names)


# --------------------------------------------------------------------------------------------------
# utils.study: StudySettings fields and GPU checks
# --------------------------------------------------------------------------------------------------
STUDY_CASES = [
    pytest.param({"model": "x y"}, r"UQ_MODEL='x y'", id="model"),
    pytest.param({"data": "wiki"}, r"(UQ_)?data='wiki'", id="data"),
    pytest.param({"seed": -2}, r"(UQ_)?seed=-2", id="seed"),
    pytest.param({"device": "tpu"}, r"(UQ_)?device='tpu'", id="device"),
    pytest.param({"methods": ("GA", "XX")}, r"methods?=.*'XX'", id="methods-unknown"),
    pytest.param({"methods": "GA_GDR"}, r"methods='GA_GDR'", id="methods-a-string"),
    pytest.param({"quantizers": ("rtn4", "rtn5")}, r"quantizers?=.*'rtn5'", id="quantizers-unknown"),
    pytest.param({"steps": 0}, r"steps=0", id="steps"),
    pytest.param({"lr": 0.0}, r"lr=0\.0", id="lr-zero"),
    pytest.param({"lr": -1.0}, r"lr=-1\.0", id="lr-negative"),
    pytest.param({"finetune_steps": 0}, r"finetune_steps=0", id="finetune-steps"),
    pytest.param({"out": None}, r"out=None", id="out-none"),
    pytest.param({"out": "/proc/uq-out"}, r"out='/proc/uq-out'.*/proc", id="out-under-proc"),
    pytest.param({"out": "/sys/uq-out"}, r"out='/sys/uq-out'.*/sys", id="out-under-sys"),
    pytest.param({"cache_dir": "/proc/uq-cache"}, r"cache_dir='/proc/uq-cache'.*/proc", id="cache-dir-under-proc"),
]


@pytest.mark.parametrize("fields, names", STUDY_CASES)
def test_study_settings_validate_every_field(fields, names):
    assert_one_clear_error(lambda: S.StudySettings(**fields), names, re.I)


def test_study_command_line_reports_bad_input_as_one_line(capsys):
    assert S.main(["--seed", "x", "--out", "/nonexistent-uq-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--seed='x'" in err and err.count("\n") == 1


@pytest.mark.parametrize("preset", ["muse-news-7b", "muse-books-7b", "qwen2.5-0.5b", "smollm2-135m"])
def test_gpu_only_presets_refuse_the_cpu(preset):
    message = assert_one_clear_error(lambda: S.check_fits(preset, torch.device("cpu")), rf"UQ_MODEL='{re.escape(preset)}'")
    assert "GPU" in message and "UQ_MODEL='tiny'" in message


def test_tiny_fits_the_cpu():
    assert "CPU" in S.check_fits("tiny", torch.device("cpu"))


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_asking_for_an_absent_gpu_fails_clearly(device):
    message = assert_one_clear_error(lambda: R.pick_device(device), rf"UQ_DEVICE='{device}'")
    assert "CUDA is not available" in message


@pytest.mark.skipif(HAS_MPS, reason="this machine has Apple's GPU")
def test_asking_for_an_absent_mps_fails_clearly():
    assert_one_clear_error(lambda: R.pick_device("mps"), r"UQ_DEVICE='mps'")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_load_model_on_an_absent_gpu_fails_clearly(ctx, tmp_path):
    folder = M.atomic_save_dir(ctx.model, ctx.tok, tmp_path / "m")
    assert_one_clear_error(lambda: M.load_model(str(folder), device="cuda"), r"UQ_DEVICE='cuda'")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_unlearn_on_an_absent_gpu_fails_clearly(ctx):
    assert_one_clear_error(lambda: unlearn(ctx, device="cuda"), r"device='cuda'", re.I)


# --------------------------------------------------------------------------------------------------
# no network: an uncached hub id, the real MUSE corpus
# --------------------------------------------------------------------------------------------------
def _timed(call) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value), time.monotonic() - start


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def no_network(monkeypatch):
    """No offline flag, but the hub endpoint refuses connections (as on a machine without network)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.parametrize("loader", [M.load_model, M.load_tokenizer], ids=["load_model", "load_tokenizer"])
@pytest.mark.parametrize("network", ["offline", "no_network"])
def test_uncached_hub_id_fails_fast_naming_the_id_and_the_offline_default(request, loader, network):
    request.getfixturevalue(network)
    message, seconds = _timed(lambda: loader("someorg/not-cached-model"))
    assert seconds < HANG_GUARD_S, f"took {seconds:.1f} s: it waits on the network"
    assert "'someorg/not-cached-model'" in message and "UQ_MODEL=tiny" in message
    assert "\n" not in message


def test_uncached_preset_names_its_hub_id(offline):
    message, seconds = _timed(lambda: M.load_model("smollm2-135m"))
    assert seconds < HANG_GUARD_S
    assert "HuggingFaceTB/SmolLM2-135M" in message and "UQ_MODEL=tiny" in message


@pytest.mark.parametrize("name, repo", [("news", "muse-bench/MUSE-News"), ("books", "muse-bench/MUSE-Books")])
@pytest.mark.parametrize("network", ["offline", "no_network"])
def test_muse_without_network_or_local_copy_fails_fast(request, tmp_path, name, repo, network):
    from utils.muse import load_muse

    request.getfixturevalue(network)
    message, seconds = _timed(lambda: load_muse(name, cache_dir=tmp_path / "datasets-cache"))
    assert seconds < HANG_GUARD_S, f"took {seconds:.1f} s: it waits on the network"
    assert repr(repo) in message and "UQ_DATA=mini" in message and "local_dir" in message


def test_muse_books_hint_names_books(offline, tmp_path):
    from utils.muse import load_muse

    message, _ = _timed(lambda: load_muse("books", cache_dir=tmp_path / "datasets-cache"))
    assert "load_muse('books')" in message


def test_muse_local_folder_without_the_splits_names_what_is_missing(tmp_path):
    from utils.muse import load_muse

    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError) as info:
        load_muse("news", local_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "lacks the splits" in message and "raw/forget" in message
