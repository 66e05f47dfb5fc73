# kfloop: two environments (see README), each built from its lock file only when missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SVENV := .venv-serving
PIP_FLAGS := --quiet --disable-pip-version-check
export KFLOOP_PIPELINE_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: help env run test test-pipeline test-serving lint format data compile bench lock-pipeline lock-serving clean

help:
	@echo "make run   - create envs if missing, run the whole local loop on the taxi data"
	@echo "make test  - create envs if missing, run every test suite in both envs"

$(VENV)/.stamp: requirements/pipeline.lock pyproject.toml
	@echo ">> pipeline env ($(VENV)) from requirements/pipeline.lock"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/pipeline.lock
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	@touch $@

$(SVENV)/.stamp: requirements/serving.lock pyproject.toml
	@echo ">> serving env ($(SVENV)) from requirements/serving.lock"
	@test -x $(SVENV)/bin/python || $(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/pip install $(PIP_FLAGS) -r requirements/serving.lock
	$(SVENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	@touch $@

env: $(VENV)/.stamp $(SVENV)/.stamp

data: $(VENV)/.stamp
	@$(VENV)/bin/kfloop data fetch

run: env data
	$(VENV)/bin/kfloop run

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.stamp
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: env data lint test-pipeline test-serving

test-pipeline: $(VENV)/.stamp data
	$(VENV)/bin/python -m pytest -m "not serving" tests

test-serving: $(SVENV)/.stamp
	$(SVENV)/bin/python -m pytest -m serving tests/serving

compile: $(VENV)/.stamp
	$(VENV)/bin/kfloop compile --output-dir build/pipelines

bench: env data
	$(VENV)/bin/python benchmarks/validate.py
	$(VENV)/bin/python benchmarks/train.py
	$(SVENV)/bin/python benchmarks/serving.py

# Re-resolve a lock from its .in file (needs the package registry; commit the result).
lock-pipeline:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install $(PIP_FLAGS) -r requirements/pipeline.in
	{ echo "# Locked pipeline environment: every package pinned. Regenerate with 'make lock-pipeline'."; \
	  build/lock-venv/bin/pip freeze --exclude-editable; } > requirements/pipeline.lock

lock-serving:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install $(PIP_FLAGS) -r requirements/serving.in
	{ echo "# Locked serving environment: every package pinned. Regenerate with 'make lock-serving'."; \
	  build/lock-venv/bin/pip freeze --exclude-editable; } > requirements/serving.lock

clean:
	rm -rf build runs local_outputs .pytest_cache
