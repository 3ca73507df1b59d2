"""Run or sync the notebook series.

``python -m utils.series --out build/notebooks``  executes every notebook in order (offline default
unless ``UQ_*`` variables say otherwise) and writes the executed copies to ``--out``.

``python -m utils.series --sync``  regenerates each ``.ipynb`` from its ``.py`` percent source
(the source of truth), after rewriting the Colab badge and set-up cell from :mod:`utils._project`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from ._project import colab_badge, colab_setup_source
from .config import repo_root

COLAB_SETUP_TAG = "colab-setup"
BADGE_PREFIX = "[![Open In Colab]"


def notebook_sources(folder: Path | None = None) -> list[Path]:
    """The ``.py`` sources of the numbered notebooks, in order."""
    folder = folder or repo_root() / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.py"))


def expected_cells(py_path: Path):
    """Read a ``.py`` notebook and return it with its badge and Colab cell rewritten from ``_project``."""
    import jupytext

    nb = jupytext.read(py_path)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith(BADGE_PREFIX):
            first, _, rest = cell.source.lstrip().partition("\n")
            cell.source = colab_badge(py_path.with_suffix(".ipynb").name) + ("\n" + rest if rest else "")
        if COLAB_SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            cell.source = colab_setup_source()
    return nb


def stable_cell_ids(nb, stem: str) -> None:
    """Give every cell an id derived from the notebook name and the cell's position, so that
    re-syncing an unchanged ``.py`` rewrites a byte-identical ``.ipynb`` (no random-id diff noise)."""
    import hashlib

    for index, cell in enumerate(nb.cells):
        cell["id"] = hashlib.sha1(f"{stem}:{index}".encode()).hexdigest()[:8]


def sync(folder: Path | None = None) -> list[Path]:
    """Rewrite every ``.py`` (badge/Colab cell) and its paired ``.ipynb``; return the notebooks written."""
    import jupytext

    written = []
    for py in notebook_sources(folder):
        nb = expected_cells(py)
        jupytext.write(nb, py, fmt="py:percent")
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        stable_cell_ids(nb, py.stem)
        jupytext.write(nb, py.with_suffix(".ipynb"))
        written.append(py.with_suffix(".ipynb"))
    return written


def run_series(out: Path, only: list[str] | None = None, timeout: int = 1800, folder: Path | None = None) -> list[tuple[str, float, str]]:
    """Execute each notebook in order with nbclient and write the executed copies to ``out``.

    A notebook that fails is still written (up to the failing cell, whose error is in its output) and the
    series goes on; returns ``(name, seconds, "ok" | "FAILED: <error>")`` per notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out.mkdir(parents=True, exist_ok=True)
    times = []
    for py in notebook_sources(folder):
        ipynb = py.with_suffix(".ipynb")
        if only and not any(key in ipynb.name for key in only):
            continue
        nb = nbformat.read(ipynb, as_version=4)
        print(f"running {ipynb.name} ...", flush=True)
        t0 = time.perf_counter()
        status = "ok"
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}}).execute()
        except CellExecutionError as err:
            last = (str(err).strip().splitlines() or ["?"])[-1]
            status = "FAILED: " + re.sub(r"\x1b\[[0-9;]*m", "", last)[:300]  # without terminal colours
        dt = time.perf_counter() - t0
        target = out / ipynb.name
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(target)
        times.append((ipynb.name, dt, status))
        print(f"  {status} in {dt:.0f} s -> {target}", flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=repo_root() / "build" / "notebooks", help="folder for executed notebooks")
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    parser.add_argument("--sync", action="store_true", help="regenerate every .ipynb from its .py source and exit")
    args = parser.parse_args(argv)
    if args.sync:
        for p in sync():
            print(f"synced {p}")
        return 0
    times = run_series(args.out.resolve(), args.only)
    print("\nExecuted notebooks (open them in Jupyter):")
    for name, dt, status in times:
        print(f"  {args.out / name}   {dt:6.0f} s   {status}")
    print(f"  total {sum(t for _, t, _ in times):.0f} s")
    failed = [name for name, _, status in times if status != "ok"]
    if failed:
        print(f"FAILED: {', '.join(failed)} (the executed copies show the failing cell)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
