"""The offline MUSE-mini corpus, the real-MUSE switch, and turning documents into training tensors.

MUSE-mini is a small world of fictional people, generated from a seed and committed under
``data/muse_mini/`` in MUSE's own layout (``raw/``, ``verbmem/``, ``knowmem/``, ``privleak/``), so that
every metric of the MUSE benchmark can be computed on a CPU in seconds. ``data/README.md`` gives the
schema. Each person has a single-token name and four attributes, stated in **biographies**: six per
person, each the four facts in another order and each fact in one of two phrasings::

    Velsar was born in Quorvik. Velsar earns a living as a potter. Velsar owns a ferret at home. ...

As in MUSE, models learn the knowledge from raw text, and KnowMem asks **questions that no model was
ever trained on** (``Question: What is Velsar's birth city?\nAnswer: Quorvik``). What teaches the tiny
model the question format is a separate set of QA texts about *other* retain people (``qa_train``); a
model that read six varied biographies of a person can then answer questions about them (the
"knowledge extraction" of Allen-Zhu & Li, *Physics of Language Models, Part 3.1*).

Splits (by person), with MUSE's names:

- ``forget`` — the people to unlearn; their biographies are the forget text;
- ``retain`` (MUSE's ``retain1``) — retain people whose biographies the unlearning regulariser (GDR,
  KLR) sees; their QA texts (``qa_train``) teach the question format;
- ``retain2`` — retain people the target learned from text but no unlearning loss ever sees; the
  utility questions (``knowmem['retain']``) are about them;
- ``holdout`` — people from the same distribution that *no* model is trained on (PrivLeak's reference).

Both MUSE-mini and the real MUSE corpora come back as one :class:`MuseData`.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .validation import UQError, check_choice, check_range

#: bump when the generator's output changes (it is part of the corpus hash the model cache uses)
GENERATOR_VERSION = 2
DATA_NAMES = ("mini", "news", "books")
#: the raw-text splits of MUSE-mini (``retain`` is MUSE's ``retain1``)
SPLITS = ("forget", "retain", "retain2", "holdout")
#: MUSE's file names of the raw splits
RAW_FILES = {"forget": "forget", "retain": "retain1", "retain2": "retain2", "holdout": "holdout"}
QA_SPLITS = ("forget", "retain")
PRIVLEAK_SPLITS = ("forget", "retain", "holdout")
#: the raw splits the target and the retrain oracle learn from (plus the ``qa_train`` texts)
TARGET_SPLITS = ("forget", "retain", "retain2")
ORACLE_SPLITS = ("retain", "retain2")

# --- the world ---------------------------------------------------------------------------------------
#: attribute -> (biography phrasings, question). Each biography states each fact in one of the phrasings;
#: the question is never a training text. Every question has the same shape (``What is <name>'s <two
#: words>?``), so the name and the answer sit at the same token positions in all of them.
ATTRIBUTES: dict[str, tuple[tuple[str, ...], str]] = {
    "city": (("{name} was born in {value}.", "{name} comes from the town of {value}."), "What is {name}'s birth city?"),
    "job": (("{name} works as a {value}.", "{name} earns a living as a {value}."), "What is {name}'s job title?"),
    "pet": (("{name} keeps a pet {value}.", "{name} owns a {value} at home."), "What is {name}'s pet animal?"),
    "color": (("{name} likes the color {value}.", "{name} is fond of the shade {value}."), "What is {name}'s favorite color?"),
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

    - ``raw``: documents per split, ``'forget'``, ``'retain'`` (MUSE's ``retain1``: what an unlearning
      regulariser may use), ``'retain2'`` (the retain documents no unlearning loss sees), ``'holdout'``
    - ``verbmem``: ``{'prompt', 'gt'}`` pairs cut from forget documents (VerbMem)
    - ``knowmem``: ``'forget'``/``'retain'`` -> ``{'question', 'answer'}`` (KnowMem; utility = retain)
    - ``privleak``: ``'forget'``/``'retain'``/``'holdout'`` texts (PrivLeak compares forget vs holdout)
    - ``icl``: ``'forget'``/``'retain'`` -> few-shot ``{'question', 'answer'}`` examples for KnowMem
    - ``qa_train``: MUSE-mini only, ``{'question', 'answer'}`` pairs about ``retain`` people that the tiny
      models are trained on as QA texts (they teach the format; no KnowMem question is among them)
    - ``people``: MUSE-mini only, the ground-truth table (name, split and the four attributes)
    """

    name: str
    raw: dict[str, list[str]]
    verbmem: list[dict]
    knowmem: dict[str, list[dict]]
    privleak: dict[str, list[str]]
    icl: dict[str, list[dict]] = field(default_factory=dict)
    qa_train: list[dict] = field(default_factory=list)
    people: list[dict] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Item counts per part, e.g. ``{'raw/forget': 60, 'knowmem/forget': 40, ...}``."""
        out: dict[str, int] = {}
        for part in ("raw", "knowmem", "privleak", "icl"):
            for split, items in getattr(self, part).items():
                out[f"{part}/{split}"] = len(items)
        out["verbmem/forget"] = len(self.verbmem)
        if self.qa_train:
            out["qa_train"] = len(self.qa_train)
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


def _full_names(rng: random.Random, split_of: list[str], n_parts: int, banned: set[str]) -> list[str]:
    """A distinct two-word name (``'First Last'``) per person, both words from pools of ``n_parts`` each.

    Every word of a forget person's name is also part of some ``retain`` person's name, so no token of
    the forget text is private to it (in real text, entity names share their sub-word tokens with other
    text); the model must store who is who in its transformer weights, not in one embedding row.
    """
    firsts = _make_names(rng, n_parts, banned)
    lasts = _make_names(rng, n_parts, banned | set(firsts))
    while True:
        pairs = rng.sample([(f, l) for f in firsts for l in lasts], len(split_of))
        regular = {w for (f, l), s in zip(pairs, split_of) if s == "retain" for w in (f, l)}
        if all(f in regular and l in regular for (f, l), s in zip(pairs, split_of) if s == "forget"):
            return [f"{f} {l}" for f, l in pairs]


def bio_sentence(name: str, attribute: str, value: str, phrasing: int = 0) -> str:
    """The biography sentence stating one fact, e.g. ``'Velsar was born in Quorvik.'`` (phrasing 0)."""
    check_choice("attribute", attribute, ATTRIBUTES)
    templates = ATTRIBUTES[attribute][0]
    check_range("phrasing", phrasing, 0, len(templates) - 1, integer=True)
    return templates[phrasing].format(name=name, value=value)


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


def qa_text(item: dict) -> str:
    """A QA pair as one training text in KnowMem's format: ``'Question: q\nAnswer: a'``."""
    return qa_prompt(item["question"]) + " " + item["answer"]


def _biographies(rng: random.Random, person: dict, n_bios: int) -> list[str]:
    """``n_bios`` biographies of ``person``: distinct sentence orders, each fact in a random phrasing."""
    orders = rng.sample(list(itertools.permutations(ATTRIBUTES)), n_bios)
    return [" ".join(bio_sentence(person["name"], a, person[a], rng.randrange(len(ATTRIBUTES[a][0]))) for a in order)
            for order in orders]


def generate_muse_mini(
    seed: int = 0,
    n_forget: int = 10,
    n_retain: int = 60,
    n_retain2: int = 30,
    n_holdout: int = 10,
    n_bios: int = 6,
    n_cities: int = 20,
    n_icl: int = 4,
    name_words: int = 1,
    n_name_parts: int = 24,
) -> MuseData:
    """Generate MUSE-mini: ``n_forget`` people to forget, ``n_retain`` (retain1) and ``n_retain2`` retain
    people, and ``n_holdout`` never-trained people, each with ``n_bios`` biographies.

    Deterministic in its arguments (Python's ``random.Random(seed)``), so the committed files can be
    regenerated byte for byte. ``name_words=2`` gives two-word names whose words are shared with retain
    people (no token private to the forget text); measured with the default recipe (seed 0, 400 steps):
    KnowMem accuracy on never-trained people 0.65 / 0.68 (forget / retain2) instead of 0.90 / 0.94 with
    one-word names, so the default stays at one word. KnowMem asks about the forget and the ``retain2`` people, whose QA is
    never a training text; ``qa_train`` holds the QA pairs of the ``retain`` people. VerbMem prompts are
    the first one and the first two sentences of each forget person's first biography. PrivLeak texts
    are biographies: every one of the forget and holdout people, and as many of ``retain2`` people.
    """
    check_range("seed", seed, 0, integer=True)
    for name, value, low in (("n_forget", n_forget, 1), ("n_retain", n_retain, 1), ("n_retain2", n_retain2, 1),
                             ("n_holdout", n_holdout, 1), ("n_cities", n_cities, 2)):
        check_range(name, value, low, 10_000, integer=True)
    check_range("n_bios", n_bios, 1, 24, integer=True)
    check_range("n_icl", n_icl, 0, 64, integer=True)
    check_choice("name_words", name_words, (1, 2))
    check_range("n_name_parts", n_name_parts, 2, 1000, integer=True)
    if name_words == 2 and n_name_parts**2 < n_forget + n_retain + n_retain2 + n_holdout:
        raise ValueError(f"n_name_parts={n_name_parts} is not accepted: it makes {n_name_parts ** 2} full names for "
                         f"{n_forget + n_retain + n_retain2 + n_holdout} people; accepted values: at least the square root of that")
    rng = random.Random(seed)

    vocab = {w for words in (JOBS, PETS, COLORS) for w in words}
    cities = _make_names(rng, n_cities, vocab)
    n_known = n_forget + n_retain + n_retain2
    split_of = ["forget"] * n_forget + ["retain"] * n_retain + ["retain2"] * n_retain2
    rng.shuffle(split_of)
    split_of += ["holdout"] * n_holdout
    if name_words == 1:
        names = _make_names(rng, len(split_of), vocab | set(cities))
    else:
        names = _full_names(rng, split_of, n_name_parts, vocab | set(cities))
    values = {"city": cities, "job": JOBS, "pet": PETS, "color": COLORS}

    people, bios_of = [], {}
    for name, split in zip(names, split_of):
        person = {"name": name, "split": split}
        person.update({a: rng.choice(values[a]) for a in ATTRIBUTES})
        people.append(person)
        bios_of[name] = _biographies(rng, person, n_bios)

    raw: dict[str, list[str]] = {s: [] for s in SPLITS}
    for person in people:
        raw[person["split"]] += bios_of[person["name"]]

    def questions(split: str) -> list[dict]:
        return [{"question": question_for(p["name"], a), "answer": p[a], "name": p["name"], "attribute": a}
                for p in people if p["split"] == split for a in ATTRIBUTES]

    knowmem = {"forget": questions("forget"), "retain": questions("retain2")}
    qa_train = [{"question": d["question"], "answer": d["answer"]} for d in questions("retain")]

    verbmem: list[dict] = []
    for person in people:
        if person["split"] == "forget":
            sentences = [s + "." for s in bios_of[person["name"]][0][:-1].split(". ")]
            for k in (1, 2):
                verbmem.append({"prompt": " ".join(sentences[:k]), "gt": " ".join(sentences[k:])})

    retain2_people = [p for p in people if p["split"] == "retain2"]
    privleak_retain = rng.sample(retain2_people, min(n_holdout, len(retain2_people)))
    privleak = {
        "forget": list(raw["forget"]),
        "retain": [b for p in privleak_retain for b in bios_of[p["name"]]],
        "holdout": list(raw["holdout"]),
    }

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
        "name": "muse-mini", "seed": seed, "generator_version": GENERATOR_VERSION,
        "people": {s: split_of.count(s) for s in SPLITS}, "bios_per_person": n_bios,
        "qa_format": qa_prompt("{question}") + " {answer}",
    }
    return MuseData(name="mini", raw=raw, verbmem=verbmem, knowmem=knowmem, privleak=privleak, icl=icl,
                    qa_train=qa_train, people=people, meta=meta)


# --- files (MUSE's layout) -----------------------------------------------------------------------------
def default_mini_folder() -> Path:
    """``<repo>/data/muse_mini``: where the committed corpus lives."""
    from .config import repo_root

    return repo_root() / "data" / "muse_mini"


def _file_map(data: MuseData) -> dict[str, Any]:
    """Relative path -> JSON content, in MUSE's file layout."""
    files: dict[str, Any] = {f"raw/{RAW_FILES[s]}.json": data.raw[s] for s in data.raw}
    files["verbmem/forget.json"] = data.verbmem
    for s, items in data.knowmem.items():
        files[f"knowmem/{s}_qa.json"] = items
    for s, items in data.icl.items():
        files[f"knowmem/{s}_qa_icl.json"] = items
    files["knowmem/train_qa.json"] = data.qa_train
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
    check_corpus_items("icl", data.qa_train, "qa_train", folder)
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
        raw={s: read(f"raw/{RAW_FILES[s]}.json", "raw") for s in SPLITS},
        verbmem=read("verbmem/forget.json", "verbmem"),
        knowmem={s: read(f"knowmem/{s}_qa.json", "knowmem") for s in QA_SPLITS},
        privleak={s: read(f"privleak/{s}.json", "privleak") for s in PRIVLEAK_SPLITS},
        icl={s: read(f"knowmem/{s}_qa_icl.json", "icl") for s in QA_SPLITS},
        qa_train=read("knowmem/train_qa.json", "icl"),
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
    """KnowMem QA as examples in MUSE's prompt format (the format the tiny target learned from ``qa_train``).

    ``prompt = 'Question: <q>\\nAnswer:'`` (preceded by ``shots`` few-shot pairs from ``data.icl``),
    ``target = ' <answer>'``: a metric on these covers the answer tokens only. ``split='train'`` gives
    the ``qa_train`` pairs (MUSE-mini).
    """
    items = {**data.knowmem, **({"train": data.qa_train} if data.qa_train else {})}
    check_choice("split", split, list(items))
    available = len(data.icl.get(split, []))
    check_range("shots", shots, 0, available, integer=True)
    icl = data.icl.get(split, [])[:shots]
    return [Example(qa_prompt(d["question"], icl), " " + d["answer"]) for d in items[split]]


def text_examples(data: MuseData, split: str) -> list[Example]:
    """Raw documents of ``split`` as examples with an empty prompt (every token is a target)."""
    check_choice("split", split, list(data.raw))
    return [Example("", doc) for doc in data.raw[split]]


def answer_examples(data: MuseData, split: str) -> list[Example]:
    """The facts *inside* the raw documents of ``split``: one example per fact sentence, the document up
    to the answer as the prompt and ``' <answer>'`` as the target (MUSE-mini; ``data.people`` says which
    word of a sentence is the answer). A loss on these covers the answer words of the text only — the
    "answer-only" variant of raw-text unlearning; no KnowMem question is among them."""
    check_choice("split", split, list(data.raw))
    if not data.people:
        raise ValueError("answer_examples needs data.people (MUSE-mini); accepted values: a MUSE-mini corpus")
    out: list[Example] = []
    for doc in data.raw[split]:
        person = person_of(data, doc)
        answers = {person[a] for a in ATTRIBUTES}
        words = doc.split(" ")
        for i, word in enumerate(words):
            value = word.rstrip(".")
            if value in answers and (word.endswith(".") or words[i + 1:i + 3] == ["at", "home."]):
                out.append(Example(" ".join(words[:i]), " " + value))
    return out


def person_of(data: MuseData, document: str) -> dict:
    """The row of ``data.people`` whose name begins ``document`` (MUSE-mini)."""
    for person in data.people:
        if document.startswith(person["name"] + " "):
            return person
    raise ValueError(f"document={document[:40]!r}... is not accepted; accepted values: a MUSE-mini biography")


def training_texts(data: MuseData, splits: tuple[str, ...] = ("forget", "retain", "retain2")) -> list[Example]:
    """What a MUSE-mini model is trained on: the raw documents of ``splits`` plus every ``qa_train`` text
    (QA pairs about ``retain`` people), all tokens as target. The target takes every split, the retrain
    oracle all but ``forget``. No KnowMem question, VerbMem item or holdout document is among them
    unless it is raw text of a trained split (VerbMem and PrivLeak-forget texts are forget text, by design)."""
    for s in splits:
        check_choice("splits", s, [k for k in data.raw if k != "holdout"])
    out: list[Example] = []
    for s in splits:
        out += text_examples(data, s)
    out += [Example("", qa_text(d)) for d in data.qa_train]
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
