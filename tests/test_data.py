"""MUSE-mini: regeneration is byte-identical, the world is well-formed, encoding masks prompts."""

from __future__ import annotations

import re

import pytest

from utils.data import (
    ATTRIBUTES,
    ORACLE_SPLITS,
    TARGET_SPLITS,
    answer_examples,
    training_texts,
    Example,
    default_mini_folder,
    encode_examples,
    generate_muse_mini,
    load_data,
    qa_examples,
    qa_prompt,
    text_examples,
    write_muse_mini,
)


def test_committed_corpus_is_byte_identical_to_a_regeneration(tmp_path):
    written = write_muse_mini(tmp_path)
    committed = default_mini_folder()
    assert len(written) == len(list(committed.rglob("*.json")))
    for path in written:
        rel = path.relative_to(tmp_path)
        assert (committed / rel).read_bytes() == path.read_bytes(), f"{rel} differs from a regeneration"


def test_generation_depends_on_the_seed():
    assert generate_muse_mini(seed=1).raw["forget"] != generate_muse_mini(seed=0).raw["forget"]


def test_loaded_equals_generated(mini):
    gen = generate_muse_mini()
    assert mini.raw == gen.raw and mini.knowmem == gen.knowmem and mini.verbmem == gen.verbmem
    assert mini.privleak == gen.privleak and mini.people == gen.people and mini.qa_train == gen.qa_train


def test_world_shape(mini):
    splits = [p["split"] for p in mini.people]
    assert [splits.count(s) for s in ("forget", "retain", "retain2", "holdout")] == [10, 60, 30, 10]
    assert {s: len(mini.raw[s]) for s in mini.raw} == {"forget": 60, "retain": 360, "retain2": 180, "holdout": 60}
    assert len(mini.knowmem["forget"]) == 40 and len(mini.knowmem["retain"]) == 120 and len(mini.qa_train) == 240
    assert len({p["name"] for p in mini.people}) == len(mini.people), "names must be unique"
    assert all(len(mini.privleak[s]) == 60 for s in ("forget", "retain", "holdout"))


def test_names_are_single_tokens(mini, tokenizer):
    for p in mini.people:
        assert len(tokenizer(p["name"], add_special_tokens=False)["input_ids"]) == 1
        assert len(tokenizer(p["city"], add_special_tokens=False)["input_ids"]) == 1


def test_relation_phrases_are_prefix_free():
    bodies = [re.sub(r"\{name\} |\{value\}.*", "", t) for templates, _ in ATTRIBUTES.values() for t in templates]
    for a in bodies:
        for b in bodies:
            assert a == b or not b.startswith(a), f"{a!r} is a prefix of {b!r}"


def test_every_biography_states_every_fact_of_its_person(mini):
    people = {p["name"]: p for p in mini.people}
    for split, docs in mini.raw.items():
        for doc in docs:
            person = people[doc.split(" ")[0]]
            assert person["split"] == split
            assert all(f" {person[a]}" in doc for a in ATTRIBUTES) and doc.count(".") == 4
    for name, person in people.items():
        own = [d for d in mini.raw[person["split"]] if d.startswith(name + " ")]
        assert len(own) == len(set(own)) == 6, name


def test_knowmem_asks_about_forget_and_retain2_people(mini):
    split_of = {p["name"]: p["split"] for p in mini.people}
    assert {split_of[d["name"]] for d in mini.knowmem["forget"]} == {"forget"}
    assert {split_of[d["name"]] for d in mini.knowmem["retain"]} == {"retain2"}
    trained_qa_people = {d["question"].split("What is ")[1].split("'s")[0] for d in mini.qa_train}
    assert {split_of[n] for n in trained_qa_people} == {"retain"}


def test_no_evaluation_item_is_a_training_item(mini):
    """No KnowMem question (forget, utility, few-shot) is in any model's training texts or in any
    unlearning loss's examples; no holdout person appears in any of them."""
    target, oracle = training_texts(mini, TARGET_SPLITS), training_texts(mini, ORACLE_SPLITS)
    unlearning = [e for split in ("forget", "retain") for e in text_examples(mini, split) + answer_examples(mini, split)]
    texts = [e.prompt + e.target for e in target + oracle + unlearning]
    blob = "\n".join(texts)
    questions = [d["question"] for part in (mini.knowmem, mini.icl) for items in part.values() for d in items]
    assert questions and not any(q in blob for q in questions)
    holdout = {p["name"] for p in mini.people if p["split"] == "holdout"}
    words = set(blob.split())
    assert holdout and not holdout & words
    assert not any(doc in blob for doc in mini.raw["holdout"] + mini.privleak["holdout"])
    assert not any(doc in "\n".join(e.prompt + e.target for e in oracle) for doc in mini.raw["forget"])


def test_answer_examples_cover_the_answer_words_of_the_text(mini):
    people = {p["name"]: p for p in mini.people}
    examples = answer_examples(mini, "forget")
    assert len(examples) == 4 * len(mini.raw["forget"])
    for ex in examples:
        person = people[ex.prompt.split(" ")[0]]
        assert ex.target[1:] in {person[a] for a in ATTRIBUTES}
        assert any(doc.startswith(ex.prompt + ex.target) for doc in mini.raw["forget"])


def test_verbmem_items_continue_forget_documents(mini):
    for item in mini.verbmem:
        assert any(doc == item["prompt"] + " " + item["gt"] for doc in mini.raw["forget"])


def test_qa_examples_use_the_training_format(mini):
    ex = qa_examples(mini, "forget")[0]
    d = mini.knowmem["forget"][0]
    assert ex == Example(f"Question: {d['question']}\nAnswer:", " " + d["answer"])
    shot = qa_examples(mini, "forget", shots=2)[0]
    assert shot.prompt.startswith("Question: ") and shot.prompt.count("Question:") == 3
    assert qa_prompt("q?") == "Question: q?\nAnswer:"


def test_encode_examples_masks_prompt_and_pad(mini, tokenizer):
    examples = qa_examples(mini, "forget")[:2] + text_examples(mini, "forget")[:1]
    enc = encode_examples(tokenizer, examples, add_eos=True)
    assert enc["input_ids"].shape == enc["labels"].shape == enc["attention_mask"].shape
    # QA: exactly the answer token and EOS are labelled
    for row in range(2):
        labelled = enc["labels"][row][enc["labels"][row] != -100].tolist()
        answer = tokenizer(examples[row].target, add_special_tokens=False)["input_ids"]
        assert labelled == answer + [tokenizer.eos_token_id]
    # right padding: pads are at the end, masked, and unlabelled
    row = enc["attention_mask"][0]
    n = int(row.sum())
    assert row[:n].all() and not row[n:].any()
    assert (enc["labels"][0][n:] == -100).all() and (enc["input_ids"][0][n:] == tokenizer.pad_token_id).all()
    # raw text: everything but the BOS is labelled
    assert enc["input_ids"][2][0] == tokenizer.bos_token_id and enc["labels"][2][0] == -100
    assert (enc["labels"][2][1:] != -100).all()


def test_encode_examples_truncates_from_the_left(mini, tokenizer):
    enc = encode_examples(tokenizer, qa_examples(mini, "forget")[:1], max_length=4)
    assert enc["input_ids"].shape[1] == 4 and enc["labels"][0][-1] != -100


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda d: qa_examples(d, "holdout"), "split='holdout'"),
        (lambda d: text_examples(d, "train"), "split='train'"),
        (lambda d: qa_examples(d, "retain2"), "split='retain2'"),
        (lambda d: qa_examples(d, "forget", shots=99), "shots=99"),
        (lambda d: load_data("wiki"), "data='wiki'"),
        (lambda d: generate_muse_mini(n_bios=25), "n_bios=25"),
    ],
)
def test_bad_parameters_name_themselves(mini, call, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        call(mini)


def test_encode_examples_rejects_empty(tokenizer):
    with pytest.raises(ValueError, match="examples"):
        encode_examples(tokenizer, [])


def test_load_data_mini(mini):
    data = load_data("mini")
    assert data.summary() == mini.summary()
