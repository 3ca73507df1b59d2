"""Notebook conventions: jupytext pairs never drift, Colab cells come from one place, every notebook has
a parameters cell, a final check cell that asserts, and no committed outputs."""

import json

import jupytext
import pytest

from utils._project import REPO_URL, colab_setup_source
from utils.series import COLAB_SETUP_TAG, expected_cells, notebook_sources

SOURCES = notebook_sources()


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_pair_exists_and_matches(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync`"
    assert _cells(jupytext.read(ipynb)) == _cells(jupytext.read(py)), f"{ipynb.name} and {py.name} drifted: run `make sync`"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_colab_badge_and_setup_come_from_project(py):
    nb = jupytext.read(py)
    assert _cells(nb) == _cells(expected_cells(py)), f"{py.name}: badge/Colab cell differ from utils/_project.py: run `make sync`"
    setup = [c for c in nb.cells if COLAB_SETUP_TAG in c.metadata.get("tags", [])]
    assert len(setup) == 1 and setup[0].source.strip() == colab_setup_source().strip()
    assert REPO_URL in nb.cells[0].source or any(REPO_URL.split("github.com/")[1] in c.source for c in nb.cells[:2])


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_parameters_cell_reads_the_environment(py):
    nb = jupytext.read(py)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{py.name}: exactly one cell tagged 'parameters'"
    for var in ("UQ_SEED", "UQ_MODEL", "UQ_DATA", "UQ_DEVICE"):
        assert var in params[0].source, f"{py.name}: the parameters cell does not read {var}"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_lesson_structure_and_final_check(py):
    nb = jupytext.read(py)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("Learning objectives", "Summary", "Exercises", "<details>"):
        assert heading in text, f"{py.name}: no '{heading}'"
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "assert" in last_code.source, f"{py.name}: the last code cell must assert the headline claims"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_committed_ipynb_has_no_outputs(py):
    nb = json.loads(py.with_suffix(".ipynb").read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
