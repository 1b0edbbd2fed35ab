# Two commands do everything on a fresh machine:  make paper   and   make test
# Both create .venv (if missing) and install the project into it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= default
DATA ?= synthetic
OUT ?= .
PYTEST_ARGS ?=

.PHONY: paper test test-fast bench setup clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

paper: setup
	$(PY) -m afvae.pipeline --scale $(SCALE) --data $(DATA) --out $(OUT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not notebooks" $(PYTEST_ARGS)

bench: setup
	for b in $$($(PY) -c "from afvae.bench import available; print(*available())"); do $(PY) -m afvae.bench $$b; done
