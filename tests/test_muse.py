"""The real-MUSE loader, against a local fixture in the hub dataset's layout (no network)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from datasets import Dataset

from utils.data import load_data
from utils.muse import load_muse, local_split_files
from utils.validation import UQError


def _write(folder: Path, config: str, split: str, rows: list[dict], fmt: str = "parquet") -> None:
    (folder / config).mkdir(parents=True, exist_ok=True)
    ds = Dataset.from_list(rows)
    if fmt == "parquet":
        ds.to_parquet(str(folder / config / f"{split}-00000-of-00001.parquet"))
    else:
        ds.to_json(str(folder / config / f"{split}.json"))


def _fixture(folder: Path, retain_name: str = "retain", fmt: str = "parquet") -> Path:
    """A miniature MUSE-News in the hub layout: every config and split, a few rows each."""
    for split, n in (("forget", 3), ("retain1", 4), ("retain2", 2), ("holdout", 3)):
        _write(folder, "raw", split, [{"text": f"{split} document {i}"} for i in range(n)], fmt)
    _write(folder, "verbmem", "forget", [{"prompt": f"prefix {i}", "gt": f"continuation {i}"} for i in range(2)], fmt)
    qa_retain = "retain_qa" if retain_name == "retain" else "retain2_qa"
    for split, n in (("forget_qa", 3), (qa_retain, 2), ("forget_qa_icl", 2), (qa_retain + "_icl", 1)):
        _write(folder, "knowmem", split, [{"answer": f"a{i}", "question": f"{split} q{i}?"} for i in range(n)], fmt)
    for split in ("forget", retain_name, "holdout"):
        _write(folder, "privleak", split, [{"text": f"{split} text {i}"} for i in range(2)], fmt)
    return folder


def test_local_fixture_in_the_hub_layout(tmp_path):
    folder = _fixture(tmp_path / "muse")
    assert sorted(local_split_files(folder, "raw")) == ["forget", "holdout", "retain1", "retain2"]
    data = load_muse("news", local_dir=folder, cache_dir=tmp_path / "hf")
    assert data.name == "news"
    assert data.raw["forget"] == [f"forget document {i}" for i in range(3)]
    assert len(data.raw["retain"]) == 4 and len(data.raw["retain2"]) == 2 and len(data.raw["holdout"]) == 3
    assert data.verbmem == [{"prompt": f"prefix {i}", "gt": f"continuation {i}"} for i in range(2)]
    assert data.knowmem["forget"][0] == {"question": "forget_qa q0?", "answer": "a0"}
    assert len(data.knowmem["retain"]) == 2 and len(data.icl["forget"]) == 2 and len(data.icl["retain"]) == 1
    assert data.privleak["holdout"] == ["holdout text 0", "holdout text 1"]
    assert set(data.privleak) == {"forget", "retain", "holdout"}


def test_older_split_names_and_json_files(tmp_path):
    folder = _fixture(tmp_path / "muse", retain_name="retain2", fmt="json")
    data = load_data("books", folder=folder, cache_dir=tmp_path / "hf")
    assert data.name == "books"
    assert data.knowmem["retain"][0]["question"] == "retain2_qa q0?"
    assert data.privleak["retain"] == ["retain2 text 0", "retain2 text 1"]


def test_missing_split_is_named(tmp_path):
    folder = _fixture(tmp_path / "muse")
    for f in (folder / "privleak").glob("holdout*"):
        f.unlink()
    with pytest.raises(UQError, match="privleak/holdout"):
        load_muse("news", local_dir=folder, cache_dir=tmp_path / "hf")


def test_bad_name_and_folder(tmp_path):
    with pytest.raises(ValueError, match="data='wiki'"):
        load_muse("wiki")
    with pytest.raises(ValueError, match="local_dir="):
        load_muse("news", local_dir=tmp_path / "nowhere")


def test_offline_hub_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(UQError) as err:
        load_muse("news", cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - start < 20
    assert "muse-bench/MUSE-News" in str(err.value) and "UQ_DATA=mini" in str(err.value)
