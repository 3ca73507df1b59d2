"""Tiny models: tokenizer, atomic saving with a manifest, the cache (reuse / rebuild), the one loader."""

from __future__ import annotations

import re
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils.config import RunConfig
from utils.data import qa_examples
from utils.models import (
    PRESETS,
    TinyRecipe,
    atomic_save_dir,
    build_word_tokenizer,
    corpus_texts,
    get_tiny_world,
    load_model,
    load_tokenizer,
    tiny_cache_key,
    train_tiny_model,
    verify_saved_dir,
    with_recipe,
)
from utils.validation import UQError

#: a recipe small enough to build a whole world in seconds (the cache logic does not care about size)
SMALL = TinyRecipe(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                   batch_size=16, steps=3, eval_every=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def _small_model(tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, vocab_size=len(tokenizer), pad_token_id=0))


def test_presets():
    assert {"tiny", "smollm2-135m", "qwen2.5-0.5b", "muse-news-7b", "muse-books-7b"} <= set(PRESETS)
    assert PRESETS["tiny"].hub_id is None
    assert PRESETS["smollm2-135m"].hub_id == "HuggingFaceTB/SmolLM2-135M"
    assert PRESETS["qwen2.5-0.5b"].hub_id == "Qwen/Qwen2.5-0.5B"
    assert PRESETS["muse-news-7b"].hub_id == "muse-bench/MUSE-News_target"
    assert PRESETS["muse-books-7b"].hub_id == "muse-bench/MUSE-Books_target"
    assert all(p.gpu_gb_unlearn >= p.gpu_gb_eval for p in PRESETS.values())
    assert RunConfig(model="muse-news-7b").model == "muse-news-7b"  # config accepts presets


def test_word_tokenizer_is_deterministic_and_round_trips(mini, tokenizer, tmp_path):
    again = build_word_tokenizer(corpus_texts(mini))
    assert tokenizer.get_vocab() == again.get_vocab()
    name = mini.people[0]["name"]
    ids = tokenizer(f"What is {name}'s birth city?")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(str(tmp_path / "tok"))
    assert loaded(f"What is {name}'s birth city?")["input_ids"] == ids
    assert loaded.pad_token_id == tokenizer.pad_token_id and loaded.eos_token_id == tokenizer.eos_token_id


def test_atomic_save_writes_a_manifest_that_detects_damage(tokenizer, tmp_path):
    path = atomic_save_dir(_small_model(tokenizer), tokenizer, tmp_path / "m", extra={"history.json": [1, 2]})
    assert verify_saved_dir(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder may remain"
    weights = path / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    assert not verify_saved_dir(path), "a corrupted file must fail the manifest check"
    weights.unlink()
    assert not verify_saved_dir(path), "a missing file must fail the manifest check"
    assert not verify_saved_dir(tmp_path / "nothing-here")
    # saving again replaces the folder atomically
    atomic_save_dir(_small_model(tokenizer), tokenizer, path)
    assert verify_saved_dir(path)


def test_training_lowers_the_loss_and_logs_curves(mini, tokenizer):
    recipe = TinyRecipe(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        batch_size=32, steps=30, eval_every=10, lr=1e-2)
    model = _small_model(tokenizer)
    qa = qa_examples(mini, "forget")[:8]
    history = train_tiny_model(model, tokenizer, [type(q)("", q.prompt + q.target) for q in qa], recipe,
                               eval_sets={"forget": qa}, progress=False)
    assert [row["step"] for row in history] == [0, 10, 20, 30]
    assert history[-1]["loss"] < 0.6 * history[1]["loss"]
    assert history[-1]["forget_prob"] > history[0]["forget_prob"]
    assert not model.training


def test_tiny_world_is_cached_reused_and_rebuilt(tmp_path):
    start = time.perf_counter()
    world = get_tiny_world(seed=3, cache_dir=tmp_path, progress=False, recipe=SMALL)
    assert world.built == ["target", "oracle"]
    assert verify_saved_dir(world.target_dir) and verify_saved_dir(world.oracle_dir)
    assert world.target_dir.parent.name == f"seed3-{tiny_cache_key(3, SMALL)}"
    assert len(world.history["target"]) == 2 and "forget_acc" in world.history["oracle"][-1]
    # reused: same weights, nothing rebuilt
    again = get_tiny_world(seed=3, cache_dir=tmp_path, progress=False, recipe=SMALL)
    assert again.built == []
    for a, b in zip(world.target.parameters(), again.target.parameters()):
        assert torch.equal(a, b)
    # the oracle never saw the forget set; the target did (different weights)
    assert not torch.equal(world.target.model.embed_tokens.weight, world.oracle.model.embed_tokens.weight)
    # a corrupted target is rebuilt, the intact oracle is kept
    # (replace the file rather than truncating it in place: the loaded model memory-maps the old one)
    broken = world.target_dir / "broken.tmp"
    broken.write_bytes(b"broken")
    broken.replace(world.target_dir / "model.safetensors")
    rebuilt = get_tiny_world(seed=3, cache_dir=tmp_path, progress=False, recipe=SMALL)
    assert rebuilt.built == ["target"]
    for a, b in zip(world.target.parameters(), rebuilt.target.parameters()):
        assert torch.equal(a, b), "the same seed must rebuild the same model"
    assert time.perf_counter() - start < 60


def test_cache_key_changes_with_seed_and_recipe():
    keys = {tiny_cache_key(0, SMALL, "c"), tiny_cache_key(1, SMALL, "c"), tiny_cache_key(0, with_recipe(steps=7), "c"),
            tiny_cache_key(0, SMALL, "other corpus")}
    assert len(keys) == 4


def test_load_model_from_a_local_folder_with_dtype(tokenizer, tmp_path):
    path = atomic_save_dir(_small_model(tokenizer), tokenizer, tmp_path / "m")
    model = load_model(str(path), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert load_tokenizer(str(path)).get_vocab() == tokenizer.get_vocab()


def test_uncached_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UQError) as err:
        load_model("uq-test-org/definitely-not-cached-model")
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert "uq-test-org/definitely-not-cached-model" in message and "UQ_MODEL=tiny" in message


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: load_model("no-such-model-or-folder"), "name_or_path='no-such-model-or-folder'"),
        (lambda: load_model("tiny", dtype="int3"), "dtype='int3'"),
        (lambda: load_model("tiny", device="tpu"), "UQ_DEVICE='tpu'"),
        (lambda: TinyRecipe(lr=0.0), "lr=0.0"),
        (lambda: TinyRecipe(hidden_size=30, num_attention_heads=4), "hidden_size=30"),
        (lambda: get_tiny_world(seed=-1), "seed=-1"),
    ],
)
def test_bad_parameters_name_themselves(call, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        call()
