# Two commands do everything on a fresh machine:  make paper   and   make test
# Both create .venv (if missing) and install into it first: `make paper` the runtime packages, `make test` the
# test extras too, at the versions and hashes pinned in requirements/{runtime,dev}.lock (`make lock` remakes them).
# UNLOCKED=1 resolves from pyproject.toml's ranges instead.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= default
DATA ?= synthetic
OUT ?= .
RETRAIN ?=
SEEDS ?= 1
JOBS ?=
RUNS ?= $(HOME)/.cache/afvae/runs
DEVICE ?= cpu
PYTEST_ARGS ?=
# make test spreads the test files over TEST_JOBS processes (pytest-xdist; auto: one per core), longest first
TEST_JOBS ?= auto
XDIST = -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder
UNLOCKED ?=
UPGRADE ?=
MODE := $(if $(UNLOCKED),unlocked,locked)
STAMPS := $(foreach k,runtime dev,$(foreach m,locked unlocked,$(VENV)/.$(k)-$(m))) $(VENV)/.installed
UV_VERSION := 0.13.9
UV := $(VENV)/tools/bin/uv
# The platform the project runs on: Linux x86_64, CPython 3.11 (the locks hold every file's hash for it).
# A constraint file set in pip's configuration (a site's cap on torch, say) binds the lock too, so that it stays
# installable there; it is copied into the venv so that the lock's comments name no local path.
SITE_CONSTRAINTS := $(VENV)/pip-config-constraints.txt
LOCK_FLAGS = --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet \
	--custom-compile-command "make lock" -c $(SITE_CONSTRAINTS) $(if $(UPGRADE),--upgrade)

define LOCK_PLATFORM_CHECK
import platform, sys
here = f"CPython {platform.python_version()} on {platform.system()} {platform.machine()}"
if sys.version_info[:2] != (3, 11) or (platform.system(), platform.machine()) != ("Linux", "x86_64"):
    sys.exit(f"requirements/*.lock are for CPython 3.11 on Linux x86_64, not {here}: use PYTHON=python3.11 (and a new VENV) or make setup UNLOCKED=1")
endef
export LOCK_PLATFORM_CHECK

.PHONY: paper test test-fast bench setup setup-dev lock weights

setup: $(VENV)/.runtime-$(MODE)
setup-dev: $(VENV)/.dev-$(MODE)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# dev.lock pins the runtime packages at runtime.lock's versions (tests/test_packaging.py), so it stamps both.
$(VENV)/.%-locked: requirements/%.lock pyproject.toml | $(PY)
	@$(PY) -c "$$LOCK_PLATFORM_CHECK"
	$(PY) -m pip install -q --require-hashes -r $<
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(STAMPS) && touch $@ $(VENV)/.runtime-locked

$(VENV)/.%-unlocked: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.$(if $(filter dev,$*),[dev])'
	@rm -f $(STAMPS) && touch $@ $(VENV)/.runtime-unlocked

lock: | $(PY)
	@test -x $(UV) || $(PY) -m pip install -q --target $(VENV)/tools uv==$(UV_VERSION)
	@$(PY) -m pip config list | sed -n "s/^[^.]*\.constraint='\(.*\)'$$/\1/p" | xargs -r cat > $(SITE_CONSTRAINTS)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.lock
	$(UV) pip compile pyproject.toml --extra dev -c requirements/runtime.lock $(LOCK_FLAGS) -o requirements/dev.lock

paper: setup
	$(PY) -m afvae.pipeline --scale $(SCALE) --data $(DATA) --out $(OUT) --seeds $(SEEDS) $(if $(RETRAIN),--retrain) $(if $(JOBS),--jobs $(JOBS))

# The shipped reference models (weights/): train the long preset (resumable, in RUNS, outside the clone), export.
weights: setup
	$(PY) -m afvae.zoo train --runs $(RUNS) --device $(DEVICE)
	$(PY) -m afvae.zoo export --runs $(RUNS)

test: setup-dev
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup-dev
	$(PY) -m pytest -m "not slow and not notebooks" $(XDIST) $(PYTEST_ARGS)

bench: setup
	for b in $$($(PY) -c "from afvae.bench import available; print(*available())"); do $(PY) -m afvae.bench $$b; done
