# `make demo` and `make test` each set up .venv on a fresh machine, then run.
# Idempotent: the install steps are skipped while their stamp is newer than pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-base
	$(PIP) -e '.[all]'
	touch $@

demo: $(VENV)/.stamp-base
	$(BIN)/tunelens demo

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

test: lint
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.stamp-dev
	$(BIN)/python bench/metrics.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
