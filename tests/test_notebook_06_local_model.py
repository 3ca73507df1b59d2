"""Notebook 06 with UQ_MODEL pointing at a locally saved model in the hub layout: the hub path, offline.

The test writes a small Llama (random weights, the MUSE-mini tokenizer) with ``save_pretrained`` — the
layout a hub download has — and executes the notebook with short recipes. The notebook must fine-tune
it into a target and an oracle, unlearn, quantize, evaluate and pass its own structural checks.
"""


import nbformat
import pytest
import torch
from nbclient import NotebookClient
from transformers import LlamaConfig, LlamaForCausalLM

from utils.config import repo_root
from utils.data import load_muse_mini
from utils.models import build_word_tokenizer, corpus_texts

NOTEBOOK = repo_root() / "notebooks" / "06_at_scale.ipynb"


@pytest.fixture()
def local_model(tmp_path):
    tokenizer = build_word_tokenizer(corpus_texts(load_muse_mini()), 128)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    folder = tmp_path / "my-local-model"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    return folder


def test_notebook_06_runs_on_a_local_model_folder(local_model, tmp_path, monkeypatch):
    for key, value in {"UQ_MODEL": str(local_model), "UQ_METHODS": "GA_GDR", "UQ_QUANTIZERS": "rtn4",
                       "UQ_STEPS": "4", "UQ_FINETUNE_STEPS": "4", "UQ_CACHE": str(tmp_path / "cache"),
                       "UQ_OUT": str(tmp_path / "out"), "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "checks passed" in outputs
    assert (tmp_path / "out" / "results.csv").exists()
    assert list((tmp_path / "cache" / "finetuned").glob("*/target/config.json")), "the local model was not fine-tuned into a target"
