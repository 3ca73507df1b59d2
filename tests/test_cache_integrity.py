"""Corrupted caches: a damaged cache entry is detected and rebuilt, an intact one is
reused without retraining, and an interrupted save never leaves a half-written folder under the final name.

- ``utils.models.atomic_save_dir`` / ``verify_saved_dir``: every kind of damage (truncated or emptied
  weights, a flipped byte, a missing or unreadable manifest, a missing file, a leftover temporary folder
  of an interrupted save) makes the folder invalid.
- ``utils.models.get_tiny_world`` (a tiny recipe, a temporary cache): reuse (``TinyWorld.built == []``,
  files untouched, no training), and the damaged role — only that one — is rebuilt, bit-identical.
- ``utils.unlearning.unlearn_cached_result`` on that tiny world: the same contract, with a build counter.

Damage is done by *replacing* files (``os.replace``), never by writing into a file in place: a model
loaded from the cache memory-maps its weights, and the damage must look like what a crash leaves.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import utils.models as M
from utils import unlearning as U
from utils.models import MANIFEST, TinyRecipe, atomic_save_dir, get_tiny_world, verify_saved_dir

#: a recipe small enough to build a whole world in seconds (the cache logic does not care about size)
SMALL = TinyRecipe(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                   batch_size=16, steps=3, eval_every=3)
SEED = 4
WEIGHTS = "model.safetensors"
UNLEARN_RECIPE = U.UnlearnRecipe(steps=2, batch_size=4)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------
# damage, as a crash or a bad disk leaves it
# --------------------------------------------------------------------------------------------------
def replace_bytes(path: Path, data: bytes) -> None:
    """Give ``path`` new contents through a new inode (what a re-download or a copy leaves)."""
    fresh = path.with_name(path.name + ".damage")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def truncate_weights(folder: Path) -> None:
    data = (folder / WEIGHTS).read_bytes()
    replace_bytes(folder / WEIGHTS, data[: len(data) // 2])


def empty_weights(folder: Path) -> None:
    replace_bytes(folder / WEIGHTS, b"")


def flip_a_weight_byte(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-1] ^= 0x01  # same size: only the hash can tell
    replace_bytes(folder / WEIGHTS, bytes(data))


def remove_manifest(folder: Path) -> None:
    (folder / MANIFEST).unlink()


def half_written_manifest(folder: Path) -> None:
    text = (folder / MANIFEST).read_text()
    replace_bytes(folder / MANIFEST, text[: len(text) // 2].encode())


def empty_manifest(folder: Path) -> None:
    replace_bytes(folder / MANIFEST, json.dumps({"files": {}, "meta": {}}).encode())


def remove_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def leftover_temporary_folder(folder: Path) -> None:
    """What a process killed in the middle of ``atomic_save_dir`` leaves: a partial temporary sibling
    and nothing under the final name (the weights are there, the tokenizer and manifest are not)."""
    tmp = folder.parent / f".{folder.name}.tmp-999999-1"
    tmp.mkdir()
    shutil.copy2(folder / "config.json", tmp / "config.json")
    shutil.copy2(folder / WEIGHTS, tmp / WEIGHTS)
    shutil.rmtree(folder)


DAMAGE = [truncate_weights, empty_weights, flip_a_weight_byte, remove_manifest, half_written_manifest, empty_manifest,
          remove_config, leftover_temporary_folder]
DAMAGE_IDS = [d.__name__ for d in DAMAGE]
#: the three cases the issue names, for the slower cached-build tests
MAIN_DAMAGE = [truncate_weights, remove_manifest, leftover_temporary_folder]
MAIN_IDS = [d.__name__ for d in MAIN_DAMAGE]


def temporaries(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def file_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file: unchanged stamps mean the folder was not rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# 1. atomic_save_dir / verify_saved_dir
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    """A tiny random model and a word tokenizer."""
    tok = M.build_word_tokenizer(["Question: Where was Ada born?\nAnswer: Oslo", "Bo likes Rome ."])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=len(tok)))
    return model, tok


def test_an_intact_save_verifies_and_leaves_no_temporary(small, tmp_path):
    model, tok = small
    path = atomic_save_dir(model, tok, tmp_path / "m", extra={"history.json": [{"step": 0}]}, meta={"role": "test"})
    assert verify_saved_dir(path)
    manifest = json.loads((path / MANIFEST).read_text())
    assert {WEIGHTS, "config.json", "history.json"} <= set(manifest["files"]) and manifest["meta"] == {"role": "test"}
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("damage", DAMAGE, ids=DAMAGE_IDS)
def test_every_damage_is_detected(small, tmp_path, damage):
    model, tok = small
    path = atomic_save_dir(model, tok, tmp_path / "m")
    assert verify_saved_dir(path)
    damage(path)
    assert not verify_saved_dir(path)
    for leftover in tmp_path.glob(".m.tmp-*"):
        assert not verify_saved_dir(leftover), "a leftover temporary folder must not pass for a saved model"


def test_a_missing_folder_is_invalid(tmp_path):
    assert not verify_saved_dir(tmp_path / "never-written")
    assert not verify_saved_dir(tmp_path)  # a folder with no manifest


def raise_in_the_middle(monkeypatch, model) -> None:
    """Make ``model.save_pretrained`` write part of the weights, then fail (a crash, a full disk)."""
    def broken_save(folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / WEIGHTS).write_bytes(b"\x00" * 100)
        raise OSError("simulated crash in the middle of save_pretrained")

    monkeypatch.setattr(model, "save_pretrained", broken_save)


def test_an_interrupted_first_save_leaves_nothing_under_the_final_name(small, tmp_path, monkeypatch):
    model, tok = small
    raise_in_the_middle(monkeypatch, model)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_save_dir(model, tok, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert temporaries(tmp_path) == [], "the temporary folder must be removed"


@pytest.mark.parametrize("where", ["save_pretrained", "manifest"])
def test_an_interrupted_resave_keeps_the_old_version_intact(small, tmp_path, monkeypatch, where):
    model, tok = small
    path = atomic_save_dir(model, tok, tmp_path / "m")
    before = json.loads((path / MANIFEST).read_text())["files"]
    if where == "save_pretrained":
        raise_in_the_middle(monkeypatch, model)
    else:
        def broken_manifest(folder, meta=None):
            raise OSError("simulated crash while writing the manifest")

        monkeypatch.setattr(M, "_write_manifest", broken_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_save_dir(model, tok, path)
    assert verify_saved_dir(path)
    assert json.loads((path / MANIFEST).read_text())["files"] == before
    assert temporaries(tmp_path) == []


def test_a_failed_final_rename_restores_the_old_version(small, tmp_path, monkeypatch):
    model, tok = small
    path = atomic_save_dir(model, tok, tmp_path / "m")
    real_rename = pathlib.Path.rename

    def rename(self, target):
        if ".tmp-" in self.name:
            raise OSError("simulated failure of the final rename")
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    with pytest.raises(OSError, match="simulated failure"):
        atomic_save_dir(model, tok, path)
    monkeypatch.undo()
    assert verify_saved_dir(path), "the previous complete version must still be under the final name"
    assert temporaries(tmp_path) == []


def test_a_save_removes_stale_temporaries_of_dead_processes(small, tmp_path):
    model, tok = small
    path = atomic_save_dir(model, tok, tmp_path / "m")
    leftover_temporary_folder(path)
    assert temporaries(tmp_path) == [".m.tmp-999999-1"]
    atomic_save_dir(model, tok, path)
    assert verify_saved_dir(path)
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# 2. get_tiny_world: reuse and rebuild
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny world built into a module cache; each test works on a copy of that cache."""
    cache = tmp_path_factory.mktemp("reference-cache")
    world = get_tiny_world(seed=SEED, cache_dir=cache, progress=False, recipe=SMALL)
    assert world.built == ["target", "oracle"]
    return world, cache


@pytest.fixture
def cache_copy(built, tmp_path):
    """A private copy of the built cache, and the world's folders inside it."""
    _, cache = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy, copy_function=shutil.copy2)
    (root,) = [p for p in (copy / "tiny").glob(f"seed{SEED}-*") if p.is_dir()]  # not its .lock file
    return copy, root


def forbid(monkeypatch, module, name: str) -> None:
    """Make ``module.name`` fail loudly: proof that a reuse does not call it."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} was called: the cache entry was not reused")

    monkeypatch.setattr(module, name, refuse)


def test_an_intact_world_is_reused_without_training(built, cache_copy, monkeypatch):
    world, _ = built
    cache, root = cache_copy
    stamps = {role: file_stamps(root / role) for role in M.ROLES}
    forbid(monkeypatch, M, "_build_role")
    again = get_tiny_world(seed=SEED, cache_dir=cache, progress=False, recipe=SMALL)
    assert again.built == []
    assert {role: file_stamps(root / role) for role in M.ROLES} == stamps
    assert state_dicts_equal(again.target, world.target) and state_dicts_equal(again.oracle, world.oracle)


@pytest.mark.parametrize("damage", MAIN_DAMAGE, ids=MAIN_IDS)
@pytest.mark.parametrize("role", M.ROLES)
def test_a_damaged_role_is_rebuilt_identically_and_the_other_kept(built, cache_copy, damage, role):
    world, _ = built
    cache, root = cache_copy
    other = [r for r in M.ROLES if r != role][0]
    other_stamps = file_stamps(root / other)
    damage(root / role)
    assert not verify_saved_dir(root / role)
    rebuilt = get_tiny_world(seed=SEED, cache_dir=cache, progress=False, recipe=SMALL)
    assert rebuilt.built == [role]
    assert verify_saved_dir(root / role)
    assert file_stamps(root / other) == other_stamps, f"the intact {other} must not be rewritten"
    assert state_dicts_equal(getattr(rebuilt, role), getattr(world, role)), "same seed, same rebuilt weights"


def test_an_interrupted_world_build_leaves_nothing_half_written(built, cache_copy, monkeypatch):
    cache, root = cache_copy
    shutil.rmtree(root / "target")
    calls = {"n": 0}
    real = M._write_manifest

    def crash_once(folder, meta=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("simulated crash while saving the target")
        return real(folder, meta)

    monkeypatch.setattr(M, "_write_manifest", crash_once)
    with pytest.raises(OSError, match="simulated crash"):
        get_tiny_world(seed=SEED, cache_dir=cache, progress=False, recipe=SMALL)
    assert not (root / "target").exists() and temporaries(root) == []
    world = get_tiny_world(seed=SEED, cache_dir=cache, progress=False, recipe=SMALL)
    assert world.built == ["target"] and verify_saved_dir(root / "target")


# --------------------------------------------------------------------------------------------------
# 3. unlearn_cached_result: reuse and rebuild
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def unlearn_counter(monkeypatch):
    """Count the calls of ``utils.unlearning.unlearn`` made by the cached function."""
    calls = {"n": 0}
    real = U.unlearn

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(U, "unlearn", counting)
    return calls


def cached_unlearn(world, cache: Path) -> U.UnlearnResult:
    return U.unlearn_cached_result(world, "GA_GDR", UNLEARN_RECIPE, seed=0, cache_dir=cache, eval_every=None,
                                   progress=False, device="cpu")


def unlearned_folder(cache: Path) -> Path:
    (folder,) = [p for p in (cache / "unlearned").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


@pytest.mark.parametrize("damage", MAIN_DAMAGE, ids=MAIN_IDS)
def test_unlearned_cache_is_reused_and_a_damaged_entry_rebuilt(built, tmp_path, unlearn_counter, damage):
    world, _ = built
    cache = tmp_path / "cache"
    first = cached_unlearn(world, cache)
    assert unlearn_counter["n"] == 1
    folder = unlearned_folder(cache)
    assert verify_saved_dir(folder)
    stamps = file_stamps(folder)

    reused = cached_unlearn(world, cache)
    assert unlearn_counter["n"] == 1, "an intact entry must be loaded, not retrained"
    assert file_stamps(folder) == stamps
    assert state_dicts_equal(reused.model, first.model)
    assert reused.settings["key"] == first.settings["key"]

    damage(folder)
    rebuilt = cached_unlearn(world, cache)
    assert unlearn_counter["n"] == 2, "a damaged entry must be retrained"
    assert verify_saved_dir(folder)
    assert state_dicts_equal(rebuilt.model, first.model), "same seed, same unlearned weights"


def test_an_interrupted_unlearned_save_leaves_nothing_half_written(built, tmp_path, monkeypatch, unlearn_counter):
    world, _ = built
    cache = tmp_path / "cache"

    def crash(folder, meta=None):
        raise OSError("simulated crash while saving the unlearned model")

    with monkeypatch.context() as patch:
        patch.setattr(M, "_write_manifest", crash)
        with pytest.raises(OSError, match="simulated crash"):
            cached_unlearn(world, cache)
    assert [p.name for p in (cache / "unlearned").iterdir() if p.is_dir()] == [], "no folder, final or temporary"
    cached_unlearn(world, cache)
    assert unlearn_counter["n"] == 2 and verify_saved_dir(unlearned_folder(cache))
