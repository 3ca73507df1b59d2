"""A corrupt MUSE-mini copy: every damaged file is one clear error naming it and the command that
regenerates the corpus, caught when the corpus is read (before any model cache folder is created)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from utils.data import check_corpus_items, check_corpus_schema, default_mini_folder, generate_muse_mini, load_muse_mini
from utils.validation import UQError


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "muse_mini"
    shutil.copytree(default_mini_folder(), folder)
    return folder


def _edit(path, change):
    items = json.loads(path.read_text())
    change(items)
    path.write_text(json.dumps(items))


def _error(folder) -> str:
    with pytest.raises(UQError) as info:
        load_muse_mini(folder)
    message = str(info.value)
    assert "\n" not in message
    assert f"write_muse_mini({json.dumps(str(folder))})'`" in message, message  # the regeneration command, for this folder
    return message


@pytest.mark.parametrize("rel", ["knowmem/forget_qa.json", "raw/retain1.json", "meta.json", "people.json"])
def test_invalid_json_names_the_file_and_the_regeneration_command(corpus, rel):
    (corpus / rel).write_text('[{"question": "What is', encoding="utf-8")
    message = _error(corpus)
    assert message.startswith(f"corpus file {str(corpus / rel)!r} is not valid JSON (") and "line 1" in message


@pytest.mark.parametrize(
    "rel, change, expected",
    [
        ("knowmem/forget_qa.json", lambda items: items[3].pop("answer"), r"item 3 lacks the key 'answer'"),
        ("knowmem/retain_qa.json", lambda items: items[0].pop("question"), r"item 0 lacks the key 'question'"),
        ("knowmem/forget_qa_icl.json", lambda items: items[1].update(answer=7), r"item 1 has answer=7, not a string"),
        ("verbmem/forget.json", lambda items: items[2].pop("gt"), r"item 2 lacks the key 'gt'"),
        ("verbmem/forget.json", lambda items: items.__setitem__(0, "a text"), r"item 0 is 'a text', not an object"),
        ("raw/forget.json", lambda items: items.__setitem__(1, {"text": "x"}), r"item 1 is \{'text': 'x'\}, not a string"),
        ("privleak/holdout.json", lambda items: items.append(None), r"item 60 is None, not a string"),
    ],
)
def test_an_item_of_the_wrong_shape_is_caught_when_the_corpus_is_read(corpus, rel, change, expected):
    _edit(corpus / rel, change)
    message = _error(corpus)
    assert message.startswith(f"corpus file {str(corpus / rel)!r}: ") and re.search(expected, message), message
    assert "accepted values: a list of" in message


def test_a_file_of_the_wrong_kind_or_a_missing_file_is_one_error(corpus):
    (corpus / "privleak" / "forget.json").write_text(json.dumps({"texts": []}))
    assert "holds a dict; accepted values: a list of strings" in _error(corpus)
    (corpus / "privleak" / "forget.json").unlink()
    assert _error(corpus).startswith(f"corpus file {str(corpus / 'privleak' / 'forget.json')!r} is missing")


def test_the_committed_folder_gets_the_plain_regeneration_command():
    with pytest.raises(UQError, match=re.escape("`python -c 'from utils.data import write_muse_mini; write_muse_mini()'`")):
        check_corpus_items("knowmem", [{"question": "q"}], "knowmem['forget']")


def test_check_corpus_schema_accepts_the_generated_corpus_and_names_the_bad_part():
    data = generate_muse_mini()
    assert check_corpus_schema(data) is data
    del data.knowmem["retain"][5]["answer"]
    with pytest.raises(UQError, match=r"^knowmem\['retain'\]: item 5 lacks the key 'answer'"):
        check_corpus_schema(data)


def test_a_corrupt_corpus_leaves_no_cache_folder(corpus, tmp_path):
    from utils.models import get_tiny_world, with_recipe

    _edit(corpus / "knowmem" / "forget_qa.json", lambda items: items[0].pop("answer"))
    cache = tmp_path / "cache"
    with pytest.raises(UQError, match="lacks the key 'answer'"):
        get_tiny_world(seed=0, cache_dir=cache, progress=False, recipe=with_recipe(steps=1), data_folder=corpus)
    assert not cache.exists()
