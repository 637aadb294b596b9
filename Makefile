# Two commands: `make demo` (set up, then run the Digits pipeline) and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean-results

# The pinned dependencies, then this clone as an editable package (`import subspaces` anywhere,
# the subspaces-* commands on the venv's PATH).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) experiment_configs/digits/reproduce.py

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/train_overhead.py
	$(PY) bench/eval_grid.py
