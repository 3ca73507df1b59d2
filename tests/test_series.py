"""utils.series: stable sync and a series run that keeps going (and reports) when a notebook fails."""

from __future__ import annotations

import jupytext
import nbformat
import pytest

from utils.series import run_series, stable_cell_ids, sync


def _write_pair(folder, name: str, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, folder / f"{name}.py", fmt="py:percent")
    jupytext.write(nb, folder / f"{name}.ipynb")


def test_sync_is_byte_identical_when_nothing_changed(tmp_path):
    _write_pair(tmp_path, "01_a", ["x = 1", "print(x)"])
    sync(tmp_path)
    first = (tmp_path / "01_a.ipynb").read_bytes()
    sync(tmp_path)
    assert (tmp_path / "01_a.ipynb").read_bytes() == first
    ids = [c["id"] for c in nbformat.read(tmp_path / "01_a.ipynb", as_version=4).cells]
    assert len(set(ids)) == 2


def test_stable_cell_ids_depend_on_notebook_and_position():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a"), nbformat.v4.new_code_cell("b")])
    stable_cell_ids(nb, "01_a")
    first = [c["id"] for c in nb.cells]
    stable_cell_ids(nb, "01_a")
    assert [c["id"] for c in nb.cells] == first
    stable_cell_ids(nb, "02_b")
    assert [c["id"] for c in nb.cells] != first


def test_run_series_writes_every_notebook_and_reports_the_failing_one(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_pair(src, "01_ok", ["print('hello')"])
    _write_pair(src, "02_fails", ["y = 2", "raise ValueError('the claim does not hold')", "print('never')"])
    _write_pair(src, "03_after", ["print('still runs')"])
    times = run_series(tmp_path / "out", folder=src, timeout=120)
    assert [(name, status.split(":")[0]) for name, _, status in times] == [
        ("01_ok.ipynb", "ok"), ("02_fails.ipynb", "FAILED"), ("03_after.ipynb", "ok")]
    assert "the claim does not hold" in times[1][2] and "\x1b" not in times[1][2]
    failed = nbformat.read(tmp_path / "out" / "02_fails.ipynb", as_version=4)
    assert failed.cells[1].outputs[0]["ename"] == "ValueError" and not failed.cells[2].outputs
    assert not list((tmp_path / "out").glob("*.tmp"))
