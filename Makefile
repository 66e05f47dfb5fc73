# kfloop: two environments (see README), each built from its lock file only when missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SVENV := .venv-serving
PIP_FLAGS := --quiet --disable-pip-version-check
export KFLOOP_PIPELINE_PYTHON := $(CURDIR)/$(VENV)/bin/python

# Root runs apt-get directly; a non-root CI runner through passwordless sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help env tools run test test-pipeline test-serving lint format data compile bench bench-peers-env e2e lock-pipeline lock-serving lock-bench-peers clean

help:
	@echo "make run   - create envs if missing, run the whole local loop on the taxi data"
	@echo "make test  - create envs if missing, run every test suite in both envs"
	@echo "make e2e   - on a real cluster (KFP_HOST set): the whole loop end to end; see README"

# Each env = its runtime lock (what its image installs) + its dev lock (test/lint tools, never in an image).
$(VENV)/.stamp: requirements/pipeline.lock requirements/pipeline-dev.lock pyproject.toml
	@echo ">> pipeline env ($(VENV)) from requirements/pipeline.lock + pipeline-dev.lock"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/pipeline.lock -r requirements/pipeline-dev.lock
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	@touch $@

$(SVENV)/.stamp: requirements/serving.lock requirements/serving-dev.lock pyproject.toml
	@echo ">> serving env ($(SVENV)) from requirements/serving.lock + serving-dev.lock"
	@test -x $(SVENV)/bin/python || $(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/pip install $(PIP_FLAGS) -r requirements/serving.lock -r requirements/serving-dev.lock
	$(SVENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	@touch $@

env: $(VENV)/.stamp $(SVENV)/.stamp

# kubectl (its built-in kustomize renders manifests/ in the tests); promtool (Debian package prometheus:
# checks and unit-tests the alert rules) and prometheus-pushgateway (the metrics push is tested against
# it); hadolint and kubernetes-validate come with the pipeline dev lock.
tools:
	@command -v kubectl >/dev/null || { echo ">> installing kubectl (Debian package kubernetes-client)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq kubernetes-client; }
	@command -v promtool >/dev/null || { echo ">> installing promtool (Debian package prometheus)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq prometheus; }
	@command -v prometheus-pushgateway >/dev/null || { echo ">> installing prometheus-pushgateway"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq prometheus-pushgateway; }

data: $(VENV)/.stamp
	@$(VENV)/bin/kfloop data fetch

run: env data
	$(VENV)/bin/kfloop run --spec examples/taxi/spec.yaml --data data/chicago_taxi.csv --cutoff 2015-01-01 --windows 2015-01-01,2015-07-01,2016-01-01,2017-01-01

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.stamp
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: env tools data lint test-pipeline test-serving

test-pipeline: $(VENV)/.stamp tools data
	$(VENV)/bin/python -m pytest -m "not serving" -n 2 --dist loadfile tests

test-serving: $(SVENV)/.stamp
	$(SVENV)/bin/python -m pytest -m serving tests/serving

compile: $(VENV)/.stamp
	$(VENV)/bin/kfloop compile --output-dir build/pipelines

# The serving benchmark's peers (MLServer, BentoML), each in its own env from its own lock under
# benchmarks/peers/ (never in requirements/*.lock, the images' locks); benchmarks/serving.py skips a peer
# whose env is missing, saying so.
BENCH_PEERS := mlserver bentoml
.venv-bench-%/.stamp: benchmarks/peers/requirements-%.lock
	@echo ">> $* peer env (.venv-bench-$*) from $<"
	@test -x .venv-bench-$*/bin/python || $(PYTHON) -m venv .venv-bench-$*
	.venv-bench-$*/bin/pip install $(PIP_FLAGS) -r $<
	@touch $@

bench-peers-env: $(foreach p,$(BENCH_PEERS),.venv-bench-$(p)/.stamp)

bench: env data bench-peers-env
	$(VENV)/bin/python benchmarks/validate.py
	$(VENV)/bin/python benchmarks/train.py
	$(SVENV)/bin/python benchmarks/serving.py

# On a real Kubeflow + KServe cluster (see README "On a cluster"): builds and pushes nothing; the images
# must already be pushed (kfloop compile --print-images names them). Skipped without KFP_HOST.
e2e: $(VENV)/.stamp tools
	@if [ -z "$$KFP_HOST" ]; then echo "make e2e: skipped (set KFP_HOST and the KFLOOP_E2E_* variables, see README)"; \
	else $(VENV)/bin/python -m tests.e2e.loop $(E2E_ARGS); fi

# Re-resolve a lock from its .in file (needs the package registry; commit the result). The runtime lock
# (what the images install) first, then the dev lock: the dev tools and whatever only they pull in.
define lock
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install $(PIP_FLAGS) -r requirements/$(1).in
	{ echo "# Locked $(1) environment: every package pinned. Regenerate with 'make lock-$(1)'."; \
	  build/lock-venv/bin/pip freeze --exclude-editable; } > requirements/$(1).lock
	build/lock-venv/bin/pip install $(PIP_FLAGS) -r requirements/$(1).lock -r requirements/$(1)-dev.in
	{ echo "# Dev/test tools of the $(1) env, on top of requirements/$(1).lock (never in an image)."; \
	  echo "# Regenerate with 'make lock-$(1)'."; \
	  build/lock-venv/bin/pip freeze --exclude-editable | grep -vxF -f requirements/$(1).lock; } \
	  > requirements/$(1)-dev.lock
endef

lock-pipeline:
	$(call lock,pipeline)

lock-serving:
	$(call lock,serving)

# Re-resolve the peers' locks from their .in files (needs the package registry; commit the result).
lock-bench-peers:
	@for p in $(BENCH_PEERS); do \
	  rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv && \
	  build/lock-venv/bin/pip install $(PIP_FLAGS) -r benchmarks/peers/requirements-$$p.in && \
	  { echo "# Locked $$p peer env of the serving benchmark (benchmarks/serving.py), never an image's lock."; \
	    echo "# Every package pinned. Regenerate with 'make lock-bench-peers'."; \
	    build/lock-venv/bin/pip freeze --exclude-editable; } > benchmarks/peers/requirements-$$p.lock \
	  || exit 1; \
	done

clean:
	rm -rf build runs local_outputs .pytest_cache
