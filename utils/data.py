"""The offline MUSE-mini corpus, the real-MUSE switch, and turning documents into training tensors.

MUSE-mini is a small world of fictional people, generated from a seed and committed under
``data/muse_mini/`` in MUSE's own layout (``raw/``, ``verbmem/``, ``knowmem/``, ``privleak/``), so that
every metric of the MUSE benchmark can be computed on a CPU in seconds. ``data/README.md`` gives the
schema. Each person has a single-token name and four attributes, each stated by its own relation
phrase (none is a prefix of another, which would make questions ambiguous)::

    Velsar was born in Quorvik.     Velsar works as a potter.
    Velsar keeps a pet ferret.      Velsar likes the color teal.

and the same facts appear as questions in MUSE's KnowMem prompt format
(``Question: What is Velsar's birth city?\\nAnswer: Quorvik``), which is the format the tiny target is
trained on, so that KnowMem works zero-shot on it.

Splits: ``forget`` (the people to unlearn, ~10%), ``retain`` (everyone else the target knows) and
``holdout`` (people from the same distribution that *no* model is trained on; PrivLeak compares
forget against holdout).

Both MUSE-mini and the real MUSE corpora come back as one :class:`MuseData`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .validation import UQError, check_choice, check_range

#: bump when the generator's output changes (it is part of the corpus hash the model cache uses)
GENERATOR_VERSION = 1
DATA_NAMES = ("mini", "news", "books")
SPLITS = ("forget", "retain", "holdout")
QA_SPLITS = ("forget", "retain")

# --- the world ---------------------------------------------------------------------------------------
#: attribute -> (bio sentence template, question template); relation phrases are unique and prefix-free
#: Every question has the same shape (``What is <name>'s <two words>?``), so the name and the answer sit
#: at the same token positions in all of them: a small model memorises such facts ~3x faster than
#: questions of varying shape (measured: 75 vs >250 steps to reach accuracy 0.8 on QA alone).
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "city": ("{name} was born in {value}.", "What is {name}'s birth city?"),
    "job": ("{name} works as a {value}.", "What is {name}'s job title?"),
    "pet": ("{name} keeps a pet {value}.", "What is {name}'s pet animal?"),
    "color": ("{name} likes the color {value}.", "What is {name}'s favorite color?"),
}
JOBS = ("baker", "barber", "butcher", "carpenter", "cobbler", "dentist", "doctor", "farmer", "fisher",
        "gardener", "lawyer", "miner", "nurse", "painter", "pilot", "potter", "sailor", "singer",
        "tailor", "weaver")
PETS = ("badger", "beetle", "canary", "cat", "dog", "ferret", "frog", "gecko", "goat", "hamster",
        "lizard", "parrot", "rabbit", "snail", "tortoise", "weasel")
COLORS = ("amber", "azure", "beige", "crimson", "gold", "green", "indigo", "lilac", "maroon", "olive",
          "orange", "pink", "purple", "silver", "teal", "violet")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr",
           "st", "th", "tr", "vl", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
_CODAS = ("", "", "l", "n", "r", "s", "th", "x", "nd", "rk")


@dataclass(frozen=True)
class Example:
    """One training/evaluation item: a loss or a metric covers the ``target`` tokens only."""

    prompt: str
    target: str


@dataclass
class MuseData:
    """A MUSE-shaped corpus (MUSE-mini or the real MUSE-News / MUSE-Books).

    - ``raw``: documents per split, ``'forget'``, ``'retain'``, ``'holdout'`` (real MUSE also has
      ``'retain2'``, the retain documents the target saw but unlearning does not use)
    - ``verbmem``: ``{'prompt', 'gt'}`` pairs cut from forget documents (VerbMem)
    - ``knowmem``: ``'forget'``/``'retain'`` -> ``{'question', 'answer'}`` (KnowMem; utility = retain)
    - ``privleak``: ``'forget'``/``'retain'``/``'holdout'`` texts (PrivLeak compares forget vs holdout)
    - ``icl``: ``'forget'``/``'retain'`` -> few-shot ``{'question', 'answer'}`` examples for KnowMem
    - ``people``: MUSE-mini only, the ground-truth table (name, split and the four attributes)
    """

    name: str
    raw: dict[str, list[str]]
    verbmem: list[dict]
    knowmem: dict[str, list[dict]]
    privleak: dict[str, list[str]]
    icl: dict[str, list[dict]] = field(default_factory=dict)
    people: list[dict] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Item counts per part, e.g. ``{'raw/forget': 10, 'knowmem/forget': 40, ...}``."""
        out: dict[str, int] = {}
        for part in ("raw", "knowmem", "privleak", "icl"):
            for split, items in getattr(self, part).items():
                out[f"{part}/{split}"] = len(items)
        out["verbmem/forget"] = len(self.verbmem)
        return out


# --- generation --------------------------------------------------------------------------------------
def _make_names(rng: random.Random, count: int, banned: set[str]) -> list[str]:
    """``count`` distinct capitalised pseudo-words of two syllables (fictional names and places)."""
    names: list[str] = []
    seen = {b.lower() for b in banned}
    while len(names) < count:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2)) + rng.choice(_CODAS)
        if 5 <= len(word) <= 9 and word not in seen:
            seen.add(word)
            names.append(word.capitalize())
    return names


def bio_sentence(name: str, attribute: str, value: str) -> str:
    """The biography sentence stating one fact, e.g. ``'Velsar was born in Quorvik.'``."""
    check_choice("attribute", attribute, ATTRIBUTES)
    return ATTRIBUTES[attribute][0].format(name=name, value=value)


def question_for(name: str, attribute: str) -> str:
    """The KnowMem question asking for one fact, e.g. ``"What is Velsar's birth city?"``."""
    check_choice("attribute", attribute, ATTRIBUTES)
    return ATTRIBUTES[attribute][1].format(name=name)


def qa_prompt(question: str, icl: list[dict] | None = None) -> str:
    """MUSE's KnowMem prompt: optional ``Question:/Answer:`` shots, then the question and ``Answer:``.

    The answer is appended as ``' ' + answer`` (a leading space, as a tokenizer expects a new word).
    """
    shots = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in (icl or []))
    return f"{shots}Question: {question}\nAnswer:"


def _person_documents(person: dict, order: list[str]) -> tuple[str, list[str]]:
    """A person's biography (sentences in ``order``) and its sentences."""
    sentences = [bio_sentence(person["name"], a, person[a]) for a in order]
    return " ".join(sentences), sentences


def generate_muse_mini(
    seed: int = 0,
    n_people: int = 100,
    forget_fraction: float = 0.1,
    n_holdout: int | None = None,
    n_cities: int = 20,
    n_icl: int = 4,
) -> MuseData:
    """Generate MUSE-mini: ``n_people`` the target knows (``forget_fraction`` of them to forget)
    plus ``n_holdout`` never-trained people (default: as many as the forget people).

    Deterministic in its arguments (Python's ``random.Random(seed)``), so the committed files can be
    regenerated byte for byte. Biographies list the four facts in a per-person random order (so
    VerbMem needs memory, not just the template); VerbMem prompts are the first one and the first
    two sentences of each forget biography. PrivLeak texts are, per person, the biography and the
    four QA texts, for the forget and holdout people and as many retain people.
    """
    check_range("seed", seed, 0, integer=True)
    check_range("n_people", n_people, 10, 10_000, integer=True)
    check_range("forget_fraction", forget_fraction, 0.0, 0.5, low_inclusive=False)
    check_range("n_cities", n_cities, 2, 1000, integer=True)
    check_range("n_icl", n_icl, 0, 64, integer=True)
    n_forget = max(1, round(n_people * forget_fraction))
    n_holdout = n_forget if n_holdout is None else check_range("n_holdout", n_holdout, 1, 10_000, integer=True)
    rng = random.Random(seed)

    vocab = {w for words in (JOBS, PETS, COLORS) for w in words}
    cities = _make_names(rng, n_cities, vocab)
    names = _make_names(rng, n_people + n_holdout, vocab | set(cities))
    values = {"city": cities, "job": JOBS, "pet": PETS, "color": COLORS}

    split_of = ["forget"] * n_forget + ["retain"] * (n_people - n_forget)
    rng.shuffle(split_of)
    split_of += ["holdout"] * n_holdout
    people = []
    for name, split in zip(names, split_of):
        person = {"name": name, "split": split}
        person.update({a: rng.choice(values[a]) for a in ATTRIBUTES})
        person["order"] = rng.sample(list(ATTRIBUTES), len(ATTRIBUTES))
        people.append(person)

    raw: dict[str, list[str]] = {s: [] for s in SPLITS}
    qa: dict[str, list[dict]] = {s: [] for s in SPLITS}
    verbmem: list[dict] = []
    for person in people:
        bio, sentences = _person_documents(person, person["order"])
        raw[person["split"]].append(bio)
        qa[person["split"]] += [
            {"question": question_for(person["name"], a), "answer": person[a], "name": person["name"], "attribute": a}
            for a in ATTRIBUTES
        ]
        if person["split"] == "forget":
            for k in (1, 2):
                verbmem.append({"prompt": " ".join(sentences[:k]), "gt": " ".join(sentences[k:])})

    def qa_text(d: dict) -> str:
        return qa_prompt(d["question"]) + " " + d["answer"]

    retain_people = [p for p in people if p["split"] == "retain"]
    privleak_retain = {p["name"] for p in rng.sample(retain_people, min(n_holdout, len(retain_people)))}
    privleak: dict[str, list[str]] = {s: [] for s in SPLITS}
    for person in people:
        split = person["split"]
        if split == "retain" and person["name"] not in privleak_retain:
            continue
        privleak[split].append(_person_documents(person, person["order"])[0])
        privleak[split] += [qa_text(d) for d in qa[split] if d["name"] == person["name"]]

    # few-shot examples: facts about extra people who appear nowhere else (as in MUSE, the shots are
    # not questions of the evaluation set); the tiny model is evaluated zero-shot
    icl_names = _make_names(rng, 2 * n_icl, vocab | set(cities) | set(names))
    icl = {
        split: [
            {"question": question_for(n, a), "answer": rng.choice(values[a])}
            for n, a in zip(icl_names[i * n_icl:(i + 1) * n_icl], [list(ATTRIBUTES)[j % 4] for j in range(n_icl)])
        ]
        for i, split in enumerate(QA_SPLITS)
    }
    meta = {
        "name": "muse-mini", "seed": seed, "generator_version": GENERATOR_VERSION, "n_people": n_people,
        "n_forget": n_forget, "n_holdout": n_holdout, "qa_format": qa_prompt("{question}") + " {answer}",
    }
    return MuseData(
        name="mini",
        raw=raw,
        verbmem=verbmem,
        knowmem={s: qa[s] for s in QA_SPLITS},
        privleak=privleak,
        icl=icl,
        people=people,
        meta=meta,
    )


# --- files (MUSE's layout) -----------------------------------------------------------------------------
def default_mini_folder() -> Path:
    """``<repo>/data/muse_mini``: where the committed corpus lives."""
    from .config import repo_root

    return repo_root() / "data" / "muse_mini"


def _file_map(data: MuseData) -> dict[str, Any]:
    """Relative path -> JSON content, in MUSE's file layout."""
    files: dict[str, Any] = {f"raw/{s}.json": data.raw[s] for s in data.raw}
    files["verbmem/forget.json"] = data.verbmem
    for s, items in data.knowmem.items():
        files[f"knowmem/{s}_qa.json"] = items
    for s, items in data.icl.items():
        files[f"knowmem/{s}_qa_icl.json"] = items
    files.update({f"privleak/{s}.json": data.privleak[s] for s in data.privleak})
    files["people.json"] = data.people
    files["meta.json"] = data.meta
    return files


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=True, sort_keys=False) + "\n"


def write_muse_mini(folder: str | Path | None = None, data: MuseData | None = None) -> list[Path]:
    """Write MUSE-mini (default: ``generate_muse_mini()``) as JSON files under ``folder``.

    Each file is written to a temporary name and renamed. Returns the paths written.
    """
    folder = Path(folder) if folder is not None else default_mini_folder()
    data = data if data is not None else generate_muse_mini()
    written = []
    for rel, content in _file_map(data).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(_dumps(content), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


#: per kind of corpus file, the keys every item must have (None: the file is a list of strings)
CORPUS_SCHEMA: dict[str, tuple[str, ...] | None] = {
    "raw": None, "privleak": None, "verbmem": ("prompt", "gt"), "knowmem": ("question", "answer"),
    "icl": ("question", "answer"), "people": ("name", "split"),
}


def regenerate_command(folder: str | Path | None = None) -> str:
    """The shell command that rewrites MUSE-mini into ``folder`` (default: the committed ``data/muse_mini``)."""
    if folder is None or Path(folder).resolve() == default_mini_folder().resolve():
        return "python -c 'from utils.data import write_muse_mini; write_muse_mini()'"
    return f"python -c 'from utils.data import write_muse_mini; write_muse_mini({json.dumps(str(folder))})'"


def _read_json(path: Path, folder: Path | None = None) -> Any:
    """The content of one corpus file; a missing, unreadable or invalid file is one error naming it."""
    hint = f"regenerate the corpus with `{regenerate_command(folder)}`"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UQError(f"corpus file {str(path)!r} is missing; accepted values: the files utils.data.write_muse_mini writes: {hint}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UQError(f"corpus file {str(path)!r} cannot be read ({err}); accepted values: UTF-8 JSON as utils.data.write_muse_mini writes it: {hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UQError(f"corpus file {str(path)!r} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                      f"accepted values: JSON as utils.data.write_muse_mini writes it: {hint}") from None


def check_corpus_items(kind: str, items: Any, where: str, folder: str | Path | None = None) -> Any:
    """Check one part of a corpus against :data:`CORPUS_SCHEMA` (``kind``: ``'raw'``, ``'knowmem'``, ...).

    ``items`` must be a list of strings (``raw``, ``privleak``) or of objects whose required keys hold
    strings (``knowmem``/``icl``: question and answer, ``verbmem``: prompt and gt, ``people``: name and
    split); ``where`` names it in the message (a file path). Returns ``items``.
    """
    check_choice("kind", kind, CORPUS_SCHEMA)
    keys = CORPUS_SCHEMA[kind]
    hint = f"regenerate the corpus with `{regenerate_command(folder)}`"
    want = "a list of strings" if keys is None else f"a list of objects with the keys {', '.join(map(repr, keys))}"
    if not isinstance(items, list):
        raise UQError(f"{where} holds a {type(items).__name__}; accepted values: {want}: {hint}")
    for i, item in enumerate(items):
        if keys is None:
            if not isinstance(item, str):
                raise UQError(f"{where}: item {i} is {item!r}, not a string; accepted values: {want}: {hint}")
            continue
        if not isinstance(item, dict):
            raise UQError(f"{where}: item {i} is {item!r}, not an object; accepted values: {want}: {hint}")
        for key in keys:
            if key not in item:
                raise UQError(f"{where}: item {i} lacks the key {key!r}; accepted values: {want}: {hint}")
            if not isinstance(item[key], str):
                raise UQError(f"{where}: item {i} has {key}={item[key]!r}, not a string; accepted values: {want}: {hint}")
    return items


def check_corpus_schema(data: MuseData, folder: str | Path | None = None) -> MuseData:
    """Check every part of a MUSE-shaped corpus with :func:`check_corpus_items` (what the models, the
    tokenizer and the metrics read); returns ``data``."""
    for split, items in data.raw.items():
        check_corpus_items("raw", items, f"raw[{split!r}]", folder)
    for split, items in data.privleak.items():
        check_corpus_items("privleak", items, f"privleak[{split!r}]", folder)
    check_corpus_items("verbmem", data.verbmem, "verbmem", folder)
    for split, items in data.knowmem.items():
        check_corpus_items("knowmem", items, f"knowmem[{split!r}]", folder)
    for split, items in data.icl.items():
        check_corpus_items("icl", items, f"icl[{split!r}]", folder)
    check_corpus_items("people", data.people, "people", folder)
    return data


def load_muse_mini(folder: str | Path | None = None) -> MuseData:
    """Read MUSE-mini from ``folder`` (default: the committed ``data/muse_mini``).

    Every file is checked as it is read (valid JSON, the items of its kind: :data:`CORPUS_SCHEMA`): a
    corrupt or incomplete file is one :class:`UQError` naming it and the command that regenerates it.
    """
    folder = Path(folder) if folder is not None else default_mini_folder()
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(
            f"folder={str(folder)!r} holds no MUSE-mini corpus (no meta.json); regenerate it with "
            f"`{regenerate_command(folder)}`"
        )

    def read(rel: str, kind: str | None = None) -> Any:
        content = _read_json(folder / rel, folder)
        if kind is not None:
            check_corpus_items(kind, content, f"corpus file {str(folder / rel)!r}", folder)
        return content

    meta = read("meta.json")
    if not isinstance(meta, dict):
        raise UQError(f"corpus file {str(folder / 'meta.json')!r} holds a {type(meta).__name__}; accepted values: an object: "
                      f"regenerate the corpus with `{regenerate_command(folder)}`")
    return MuseData(
        name="mini",
        raw={s: read(f"raw/{s}.json", "raw") for s in SPLITS},
        verbmem=read("verbmem/forget.json", "verbmem"),
        knowmem={s: read(f"knowmem/{s}_qa.json", "knowmem") for s in QA_SPLITS},
        privleak={s: read(f"privleak/{s}.json", "privleak") for s in SPLITS},
        icl={s: read(f"knowmem/{s}_qa_icl.json", "icl") for s in QA_SPLITS},
        people=read("people.json", "people"),
        meta=meta,
    )


def corpus_fingerprint(folder: str | Path | None = None) -> str:
    """SHA-256 over the corpus files (names and bytes): changes whenever the corpus changes."""
    import hashlib

    folder = Path(folder) if folder is not None else default_mini_folder()
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.json")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def load_data(name: str = "mini", *, folder: str | Path | None = None, cache_dir: str | Path | None = None) -> MuseData:
    """Load a corpus by name: ``'mini'`` (offline, committed), ``'news'`` or ``'books'`` (MUSE, hub).

    ``folder`` overrides where MUSE-mini is read from, or (for 'news'/'books') a local folder in the
    hub dataset's layout; ``cache_dir`` is passed to ``datasets``.
    """
    check_choice("data", name, DATA_NAMES)
    if name == "mini":
        return load_muse_mini(folder)
    from .muse import load_muse

    return load_muse(name, local_dir=folder, cache_dir=cache_dir)


# --- examples ------------------------------------------------------------------------------------------
def qa_examples(data: MuseData, split: str, shots: int = 0) -> list[Example]:
    """KnowMem QA as examples in MUSE's prompt format (the format the tiny target was trained on).

    ``prompt = 'Question: <q>\\nAnswer:'`` (preceded by ``shots`` few-shot pairs from ``data.icl``),
    ``target = ' <answer>'``: a loss or metric on these covers the answer tokens only.
    """
    check_choice("split", split, list(data.knowmem))
    available = len(data.icl.get(split, []))
    check_range("shots", shots, 0, available, integer=True)
    icl = data.icl.get(split, [])[:shots]
    return [Example(qa_prompt(d["question"], icl), " " + d["answer"]) for d in data.knowmem[split]]


def text_examples(data: MuseData, split: str) -> list[Example]:
    """Raw documents of ``split`` as examples with an empty prompt (every token is a target)."""
    check_choice("split", split, list(data.raw))
    return [Example("", doc) for doc in data.raw[split]]


def training_examples(data: MuseData, splits: tuple[str, ...] = ("forget", "retain")) -> list[Example]:
    """What a MUSE-mini target is trained on: raw biographies plus every QA text, all tokens as target."""
    for s in splits:
        check_choice("splits", s, QA_SPLITS)
    out: list[Example] = []
    for s in splits:
        out += text_examples(data, s)
        out += [Example("", e.prompt + e.target) for e in qa_examples(data, s)]
    return out


def _ids(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    if not text:
        return tokenizer("", add_special_tokens=add_special_tokens)["input_ids"] if add_special_tokens else []
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def encode_examples(
    tokenizer,
    examples: list[Example],
    max_length: int | None = None,
    add_eos: bool = False,
) -> dict[str, torch.Tensor]:
    """Tokenize examples into right-padded ``input_ids``, ``attention_mask`` and ``labels``.

    The prompt is tokenized with the tokenizer's special tokens (a BOS where the tokenizer adds one),
    the target without; ``labels`` are the input ids on target tokens and ``-100`` on prompt and pad
    tokens (``add_eos`` appends EOS to the target). Over-long examples keep their *last*
    ``max_length`` tokens (the target survives truncation).
    """
    if not examples:
        raise ValueError("examples=[] is not accepted; accepted values: a non-empty list of Example")
    if max_length is not None:
        check_range("max_length", max_length, 2, integer=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("tokenizer has neither a pad nor an eos token; accepted values: a tokenizer with one of them")
    rows: list[tuple[list[int], list[int]]] = []
    for ex in examples:
        prompt_ids = _ids(tokenizer, ex.prompt, add_special_tokens=True)
        target_ids = _ids(tokenizer, ex.target, add_special_tokens=False)
        if add_eos and tokenizer.eos_token_id is not None:
            target_ids = target_ids + [tokenizer.eos_token_id]
        ids = prompt_ids + target_ids
        labels = [-100] * len(prompt_ids) + target_ids
        if max_length is not None and len(ids) > max_length:
            ids, labels = ids[-max_length:], labels[-max_length:]
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
