import re
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.config import RunConfig, check_seed, default_cache_dir, offline_setup, repo_root
from utils.repro import pick_device, seed_everything, torch_generator
from utils.validation import UQError


def test_defaults_are_the_offline_default():
    cfg = RunConfig.from_env({})
    assert (cfg.seed, cfg.model, cfg.data, cfg.device) == (0, "tiny", "mini", "auto")
    assert cfg.offline_default


def test_from_env_reads_every_variable(tmp_path):
    cfg = RunConfig.from_env({"UQ_SEED": "2", "UQ_DATA": "news", "UQ_DEVICE": "cpu", "UQ_CACHE": str(tmp_path)})
    assert (cfg.seed, cfg.data, cfg.device, cfg.cache_dir) == (2, "news", "cpu", tmp_path)
    assert not cfg.offline_default


def test_local_model_folder_and_hub_id_are_accepted(tmp_path):
    assert RunConfig(model=str(tmp_path)).model == str(tmp_path)
    assert RunConfig(model="HuggingFaceTB/SmolLM2-135M").model == "HuggingFaceTB/SmolLM2-135M"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"seed": -1}, "UQ_SEED"),
        ({"seed": "x"}, "UQ_SEED"),
        ({"data": "wiki"}, "UQ_DATA"),
        ({"device": "tpu"}, "UQ_DEVICE"),
        ({"model": "no such thing"}, "UQ_MODEL"),
        ({"model": ""}, "UQ_MODEL"),
    ],
)
def test_bad_values_name_the_variable(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RunConfig(**kwargs)


def test_cache_dir_default_is_inside_repo(monkeypatch):
    monkeypatch.delenv("UQ_CACHE", raising=False)
    assert default_cache_dir() == repo_root() / ".cache" / "uq"
    assert (repo_root() / "utils" / "__init__.py").exists()


def test_seed_everything_makes_torch_repeatable():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(torch.randn(3, generator=torch_generator(1)), torch.randn(3, generator=torch_generator(1)))


def test_seed_everything_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-3)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="UQ_DEVICE"):
        pick_device("quantum")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_offline_setup_seeds_prints_and_returns_config_and_device(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("UQ_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        cfg, device = offline_setup(3, "tiny", "mini", "cpu", notebook="04")
        a = torch.randn(4)
        assert torch.get_num_threads() == 1
        assert offline_setup("3", "tiny", "mini", "cpu", notebook="04")[0] == cfg
        assert torch.equal(a, torch.randn(4))  # seeded again: the same numbers
    finally:
        torch.set_num_threads(threads)
    assert cfg == RunConfig(seed=3, model="tiny", data="mini", device="cpu", cache_dir=tmp_path)
    assert device == torch.device("cpu")
    assert capsys.readouterr().out.splitlines()[0] == f"seed=3  device=cpu  cache={tmp_path}"


def test_offline_setup_threads_none_keeps_the_thread_count(monkeypatch):
    monkeypatch.delenv("UQ_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        offline_setup(0, "tiny", "mini", "cpu", notebook="03", threads=None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("model, data", [("tiny", "news"), ("HuggingFaceTB/SmolLM2-135M", "mini")])
def test_offline_setup_refuses_other_models_and_data_in_one_line(model, data, capsys):
    threads = torch.get_num_threads()
    try:
        with pytest.raises(UQError) as err:
            offline_setup(0, model, data, "cpu", notebook="05")
    finally:
        torch.set_num_threads(threads)
    message = str(err.value)
    assert "\n" not in message
    for part in (f"UQ_MODEL={model!r}", f"UQ_DATA={data!r}", "notebook 05", "UQ_MODEL='tiny'", "UQ_DATA='mini'",
                 "notebook 06", "python -m utils.study"):
        assert part in message
    assert capsys.readouterr().out == ""  # nothing printed for a refused run


def test_offline_setup_validates_before_anything_else():
    with pytest.raises(UQError, match="UQ_DEVICE"):
        offline_setup(0, "tiny", "mini", "tpu", notebook="04")
    with pytest.raises(UQError, match="UQ_SEED"):
        offline_setup(-1, "tiny", "mini", "cpu", notebook="04")


# --------------------------------------------------------------------------------------------------
# UQ_SEED as a string: what a parameters cell reads from the environment, validated by utils.config
# --------------------------------------------------------------------------------------------------
BAD_SEEDS = ["abc", "1.5", "-1", "", " ", "1e3", "0x1", "\u00b2", "\u0663"]  # ² and the Arabic-Indic 3 are not ASCII digits


def _seed_message(value):
    return rf"^UQ_SEED={re.escape(repr(value))} is not accepted; accepted values: a non-negative integer"


@pytest.mark.parametrize("value", BAD_SEEDS)
def test_a_bad_seed_string_is_one_clear_error_everywhere(value, monkeypatch, tmp_path):
    monkeypatch.setenv("UQ_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        for call in (lambda: check_seed(value), lambda: RunConfig(seed=value), lambda: RunConfig.from_env({"UQ_SEED": value}),
                     lambda: offline_setup(value, "tiny", "mini", "cpu", notebook="04")):
            with pytest.raises(UQError, match=_seed_message(value)):
                call()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("value, seed", [("0", 0), ("3", 3), (" 7 ", 7), ("0012", 12), (5, 5), (np.int64(2), 2)])
def test_a_seed_string_of_digits_is_accepted_everywhere(value, seed):
    assert check_seed(value) == seed and type(check_seed(value)) is int
    assert RunConfig(seed=value).seed == seed
    assert seed_everything(value) == seed


def test_check_seed_names_the_parameter_it_is_given():
    with pytest.raises(UQError, match=r"^--seed='x' is not accepted; accepted values: a non-negative integer"):
        check_seed("x", name="--seed")
    with pytest.raises(UQError, match=r"^seed='x' is not accepted"):
        seed_everything("x")


def _parameters_cells():
    from utils.series import notebook_sources

    return notebook_sources()


@pytest.mark.parametrize("py", _parameters_cells(), ids=lambda p: p.name)
def test_a_parameters_cell_leaves_the_seed_to_utils_config(py, monkeypatch):
    """UQ_SEED=abc: the parameters cell runs, and RunConfig refuses the seed with the clear message."""
    import jupytext

    cell = next(c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
    monkeypatch.setenv("UQ_SEED", "abc")
    namespace: dict = {}
    exec(compile(cell.source, f"{py.name}:parameters", "exec"), namespace)  # noqa: S102 - our own notebook source
    with pytest.raises(UQError, match=_seed_message("abc")):
        RunConfig(seed=namespace["SEED"])
