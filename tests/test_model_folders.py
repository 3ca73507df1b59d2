"""A user's model folder that is not a complete model: one UQError naming the folder or the damaged
file, with advice for a local folder (never a hub download of a path)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils import models as M
from utils import study as S
from utils.validation import UQError


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=64))
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    return folder


def test_an_intact_folder_loads(saved):
    assert isinstance(M.load_model(saved), LlamaForCausalLM)


@pytest.mark.parametrize("damage", ["half", "header", "garbage"])
def test_a_truncated_or_corrupt_weights_file_is_one_error_naming_it(saved, damage):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"half": data[: len(data) // 2], "header": data[:4], "garbage": b"\x00" * len(data)}[damage])
    with pytest.raises(UQError) as info:
        M.load_model(saved)
    message = str(info.value)
    assert str(weights) in message and "truncated or corrupt" in message and "\n" not in message
    assert "hf download" not in message


def test_an_empty_folder_gets_advice_for_a_local_folder(tmp_path):
    for load in (M.load_model, M.load_tokenizer):
        with pytest.raises(UQError) as info:
            load(str(tmp_path))
        message = str(info.value)
        assert message.startswith(f"cannot load the local model folder {str(tmp_path)!r}: ") and "save_pretrained" in message
        assert "hf download" not in message and "\n" not in message


def test_the_study_refuses_an_empty_model_folder_without_leaving_folders(tmp_path, capsys):
    empty, out, cache = tmp_path / "empty", tmp_path / "out", tmp_path / "cache"
    empty.mkdir()
    argv = ["--model", str(empty), "--out", str(out), "--cache-dir", str(cache), "--device", "cpu", "--no-progress"]
    assert S.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot load the local model folder {str(empty)!r}") and err.count("\n") == 1
    assert "it has neither config.json nor tokenizer files" in err and "hf download" not in err
    assert not out.exists() and not list(cache.rglob("empty-*"))
