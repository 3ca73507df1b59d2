"""The real MUSE benchmark (``muse-bench/MUSE-News``, ``muse-bench/MUSE-Books``) as a :class:`MuseData`.

The hub datasets have one config per evaluation, each with named splits (checked against the dataset
cards; older revisions call the retain splits ``retain2``/``retain2_qa``, which is accepted too):

=========  ==============================================  ==========================
config     splits                                          columns
=========  ==============================================  ==========================
raw        forget, retain1, retain2, holdout               text
verbmem    forget                                          prompt, gt
knowmem    forget_qa, retain_qa, forget_qa_icl,            question, answer
           retain_qa_icl
privleak   forget, retain, holdout                         text
=========  ==============================================  ==========================

Files live under ``<config>/<split>-00000-of-00001.parquet`` in the dataset repository; a local folder
in that layout (parquet or json files) can be given instead of the hub (``local_dir``), which is how the
tests run offline. Mapping: ``raw['retain']`` is MUSE's ``retain1`` (the retain set unlearning may use)
and ``raw['retain2']`` the rest; ``knowmem``/``icl``/``privleak`` keep MUSE's meaning.

Without a network (or with ``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) a corpus that is not already
in the ``datasets`` cache fails within seconds with a message that names the offline default.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from .data import MuseData
from .validation import UQError, check_choice

MUSE_REPOS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
CONFIGS = ("raw", "verbmem", "knowmem", "privleak")
#: MuseData field/split -> (config, candidate split names in order of preference)
SPLIT_MAP = {
    ("raw", "forget"): ("raw", ("forget",)),
    ("raw", "retain"): ("raw", ("retain1", "retain")),
    ("raw", "retain2"): ("raw", ("retain2",)),
    ("raw", "holdout"): ("raw", ("holdout",)),
    ("knowmem", "forget"): ("knowmem", ("forget_qa",)),
    ("knowmem", "retain"): ("knowmem", ("retain_qa", "retain2_qa")),
    ("icl", "forget"): ("knowmem", ("forget_qa_icl",)),
    ("icl", "retain"): ("knowmem", ("retain_qa_icl", "retain2_qa_icl")),
    ("privleak", "forget"): ("privleak", ("forget",)),
    ("privleak", "retain"): ("privleak", ("retain", "retain2")),
    ("privleak", "holdout"): ("privleak", ("holdout",)),
}
REQUIRED = {("raw", "forget"), ("raw", "retain"), ("raw", "holdout"), ("knowmem", "forget"),
            ("knowmem", "retain"), ("privleak", "forget"), ("privleak", "holdout")}
_SPLIT_FILE = re.compile(r"^(?P<split>[A-Za-z0-9_]+?)(-\d{5}-of-\d{5})?\.(?P<ext>parquet|jsonl?|json)$")


def _offline() -> bool:
    flags = (os.environ.get(v, "").strip().upper() for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return any(f in {"1", "ON", "YES", "TRUE"} for f in flags)


def _fail_message(repo: str, why: str) -> str:
    name = next((k for k, v in MUSE_REPOS.items() if v == repo), "news")
    return (
        f"cannot load the MUSE corpus {repo!r}: {why}. Download it once with network access "
        f"(`python -c \"from utils.muse import load_muse; load_muse({name!r})\"`), pass local_dir= a folder in "
        "the hub layout, or use the offline default UQ_DATA=mini"
    )


def local_split_files(folder: str | Path, config: str) -> dict[str, list[str]]:
    """Split name -> data files of ``config`` in a local folder in the hub layout (parquet/json)."""
    folder = Path(folder) / config
    files: dict[str, list[str]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            match = _SPLIT_FILE.match(path.name)
            if match and path.is_file():
                files.setdefault(match["split"], []).append(str(path))
    return files


def _load_local_config(folder: Path, config: str, cache_dir: str | None) -> dict[str, list[dict]]:
    """Rows of every split of ``config`` from local files, through ``datasets``."""
    from datasets import load_dataset

    files = local_split_files(folder, config)
    if not files:
        return {}
    out = {}
    for split, paths in files.items():
        builder = "parquet" if paths[0].endswith(".parquet") else "json"
        ds = load_dataset(builder, data_files={split: paths}, split=split, cache_dir=cache_dir)
        out[split] = ds.to_list()
    return out


def _load_hub_config(repo: str, config: str, cache_dir: str | None, revision: str | None) -> dict[str, list[dict]]:
    """Rows of every split of ``config`` from the hub (or the ``datasets`` cache when offline)."""
    from datasets import load_dataset

    dsd = load_dataset(repo, config, cache_dir=cache_dir, revision=revision)
    return {split: dsd[split].to_list() for split in dsd}


def _pick(rows: dict[str, dict[str, list[dict]]], field: str, split: str) -> list[dict] | None:
    config, names = SPLIT_MAP[(field, split)]
    for name in names:
        if name in rows.get(config, {}):
            return rows[config][name]
    return None


def _texts(items: list[dict], where: str) -> list[str]:
    if items and "text" not in items[0]:
        raise UQError(f"{where} has columns {sorted(items[0])}; accepted values: a 'text' column")
    return [d["text"] for d in items]


def _columns(items: list[dict], columns: tuple[str, ...], where: str) -> list[dict]:
    if items and not set(columns) <= set(items[0]):
        raise UQError(f"{where} has columns {sorted(items[0])}; accepted values: columns {list(columns)}")
    return [{c: d[c] for c in columns} for d in items]


def rows_to_muse_data(name: str, rows: dict[str, dict[str, list[dict]]], source: str) -> MuseData:
    """Assemble a :class:`MuseData` from ``{config: {split: rows}}`` in MUSE's layout."""
    missing = [f"{SPLIT_MAP[k][0]}/{'|'.join(SPLIT_MAP[k][1])}" for k in sorted(REQUIRED) if _pick(rows, *k) is None]
    if missing:
        found = {c: sorted(s) for c, s in rows.items()}
        raise UQError(f"MUSE corpus {source!r} lacks the splits {missing}; found {found}")
    raw = {split: _texts(_pick(rows, "raw", split), f"raw/{split}") for (f, split) in SPLIT_MAP
           if f == "raw" and _pick(rows, "raw", split) is not None}
    qa_cols = ("question", "answer")
    knowmem = {s: _columns(_pick(rows, "knowmem", s), qa_cols, f"knowmem/{s}") for s in ("forget", "retain")}
    icl = {s: _columns(_pick(rows, "icl", s) or [], qa_cols, f"knowmem/{s}_icl") for s in ("forget", "retain")}
    privleak = {s: _texts(_pick(rows, "privleak", s) or [], f"privleak/{s}") for s in ("forget", "retain", "holdout")}
    verbmem = _columns(rows.get("verbmem", {}).get("forget", []), ("prompt", "gt"), "verbmem/forget")
    meta = {"name": f"muse-{name}", "source": source, "splits": {c: sorted(s) for c, s in rows.items()}}
    return MuseData(name=name, raw=raw, verbmem=verbmem, knowmem=knowmem, privleak=privleak, icl=icl, meta=meta)


def load_muse(
    name: str,
    *,
    local_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
) -> MuseData:
    """Load MUSE-News (``'news'``) or MUSE-Books (``'books'``) as a :class:`MuseData`.

    From ``local_dir`` (a folder in the hub layout: ``<config>/<split>-*.parquet`` or ``.json``) when
    given, else from the hub through ``datasets`` (cached by it). Fails fast and clearly offline.
    """
    check_choice("data", name, tuple(MUSE_REPOS))
    repo = MUSE_REPOS[name]
    cache = str(cache_dir) if cache_dir is not None else None
    if local_dir is not None:
        folder = Path(local_dir).expanduser()
        if not folder.is_dir():
            raise UQError(f"local_dir={str(local_dir)!r} is not a folder; accepted values: a folder in the layout <config>/<split>-*.parquet")
        rows = {c: _load_local_config(folder, c, cache) for c in CONFIGS}
        return rows_to_muse_data(name, {c: r for c, r in rows.items() if r}, str(folder))

    from .models import hub_reachable

    reachable = _offline() or hub_reachable()  # (no probe when offline mode is already on)
    reason = ("HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set and it is not in the datasets cache" if _offline()
              else "the hub cannot be reached (no network) and it is not in the datasets cache")
    rows = {}
    with _offline_mode(_offline() or not reachable):
        for config in CONFIGS:
            try:
                rows[config] = _load_hub_config(repo, config, cache, revision)
            except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError...
                if _offline() or not reachable:
                    raise UQError(_fail_message(repo, reason)) from err
                detail = str(err).splitlines()[0] if str(err) else ""
                raise UQError(_fail_message(repo, f"loading config {config!r} failed ({type(err).__name__}: {detail})")) from err
    return rows_to_muse_data(name, rows, repo)


@contextmanager
def _offline_mode(on: bool):
    """Temporarily switch ``datasets``/``huggingface_hub`` to offline mode (cache only, no retries)."""
    if not on:
        yield
        return
    import datasets.config as dcfg
    import huggingface_hub.constants as hcfg

    saved = (dcfg.HF_HUB_OFFLINE, getattr(dcfg, "HF_DATASETS_OFFLINE", None), hcfg.HF_HUB_OFFLINE)
    dcfg.HF_HUB_OFFLINE = hcfg.HF_HUB_OFFLINE = True
    if saved[1] is not None:
        dcfg.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        dcfg.HF_HUB_OFFLINE, hcfg.HF_HUB_OFFLINE = saved[0], saved[2]
        if saved[1] is not None:
            dcfg.HF_DATASETS_OFFLINE = saved[1]
