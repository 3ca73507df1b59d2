# The two commands of the README:
#   make demo   executes the whole notebook series on the offline default (tiny model, MUSE-mini)
#   make test   unit tests + every notebook under nbval
# Both create .venv and install the project first when needed (exact versions: requirements/lock.txt).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
BUILD  ?= build
export PYTHONHASHSEED = 0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS = 1
export TQDM_MININTERVAL ?= 5

.PHONY: install demo test unit notebooks bench lab sync lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/lock.txt -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: install
	$(PY) -m utils.series --out $(BUILD)/notebooks

# Every numbered notebook, in order (nbval executes each; the check cell at the end asserts its claims).
NBVAL_NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

test: install
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=1200 $(NBVAL_NOTEBOOKS)

unit: install
	$(PY) -m pytest -q tests

notebooks: install
	$(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=1200 $(NBVAL_NOTEBOOKS)

bench: install
	$(PY) -m benchmarks --write-readme

lab: install
	$(PY) -m pip install --quiet jupyterlab
	$(VENV)/bin/jupyter lab notebooks

# .py (percent) files are the source: regenerate each .ipynb from its .py
sync: install
	$(PY) -m utils.series --sync

# refresh the exact pins from the current environment
lock: install
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu//' > requirements/lock.txt

clean:
	rm -rf $(BUILD) .cache
