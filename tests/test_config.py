from pathlib import Path

import pytest
import torch

from utils.config import RunConfig, default_cache_dir, repo_root
from utils.repro import pick_device, seed_everything, torch_generator


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
