# sweeplab's entry points. `make train` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_DEB_DIR := /usr/share/datasets/fashion-mnist
# Waits for another apt/dpkg run to let go of its lock instead of failing at once; a machine whose
# package lists were never fetched gets them (apt-get update) and is asked again.
APT_INSTALL := apt-get -o DPkg::Lock::Timeout=300 install -y -qq

.PHONY: install data sweep train test test-tools test-fast bench lint ui docs clean

install: $(STAMP)

# torch first and pinned: anything that asks for "torch" afterwards finds 2.13.0 satisfied
# instead of pulling a newer CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# Fashion-MNIST: Debian's package where apt can install it, else the SHA-256-verified download.
data: $(STAMP)
	@if [ -z "$$SWEEPLAB_DATA_DIR" ] && [ ! -f $(FASHION_DEB_DIR)/train-images-idx3-ubyte.gz ] \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian package dataset-fashion-mnist ..."; \
	  $(APT_INSTALL) dataset-fashion-mnist >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null 2>&1 && $(APT_INSTALL) dataset-fashion-mnist >/dev/null 2>&1; } \
	    || echo "apt-get could not install dataset-fashion-mnist; falling back to the download"; \
	fi
	$(PY) -m sweeplab.data.fashion_mnist

# The main job: tune the Fashion-MNIST MLP (64 trials, ASHA) and register the best model.
sweep: data
	$(VENV)/bin/sweeplab sweep experiment=fashion_mnist_sweep $(ARGS)

train: data
	$(VENV)/bin/sweeplab train experiment=course_fashion_mnist $(ARGS)

# docker-compose validates docker/compose.yaml in the tests (no Docker engine needed); Debian's
# Chromium is the browser Playwright drives in the UI tests (it cannot download browsers of its own);
# zsh loads the generated completion script in its test.
test-tools:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "installing chromium (the UI tests' browser) ..." \
	  && { $(APT_INSTALL) chromium >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && $(APT_INSTALL) chromium >/dev/null 2>&1; }; }; } \
	  || echo "chromium not installed"
	@command -v zsh >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "installing zsh (the shell-completion tests) ..." \
	  && { $(APT_INSTALL) zsh >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && $(APT_INSTALL) zsh >/dev/null 2>&1; }; }; } \
	  || echo "zsh not installed"
	@command -v docker-compose >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "installing docker-compose (to validate docker/compose.yaml) ..." \
	  && { $(APT_INSTALL) docker-compose >/dev/null 2>&1 \
	       || { apt-get update -qq >/dev/null 2>&1 && $(APT_INSTALL) docker-compose >/dev/null 2>&1; }; }; } \
	  || echo "docker-compose not installed"

# Two pytest workers (pytest-xdist): much of a test's time is spent waiting on real processes
# (servers starting, an outage lasting, Ray's nodes), which the other worker fills. A module's
# tests stay on one worker (--dist loadfile), in order, and its module-scoped servers start once.
# The test hosts' tests time how fast a dead host is noticed and kill a host mid-trial: they run
# after the others, alone, so that another worker's load does not move those moments.
TEST_WORKERS ?= 2
PYTEST_XDIST = -n $(TEST_WORKERS) --dist loadfile
ALONE = tests/test_hosts.py tests/sweep/test_sweep_cluster.py
test: data test-tools
	$(PY) -m pytest $(PYTEST_XDIST) $(addprefix --ignore=,$(ALONE)) $(PYTEST_ARGS)
	$(PY) -m pytest $(ALONE) $(PYTEST_ARGS) || { rc=$$?; [ $$rc = 5 ] && [ -n "$(PYTEST_ARGS)" ] || exit $$rc; }

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_XDIST) -m "not slow and not service" $(PYTEST_ARGS)

bench: data
	$(PY) -m bench $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

ui: $(STAMP)
	$(VENV)/bin/sweeplab ui

# The documentation site (MkDocs, Material theme) into .venv/site; --strict: a broken link or reference
# fails. The CLI and configuration reference pages are generated from the code (docs/hooks/reference.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(VENV)/site

# The team's stack in containers (docker/compose.yaml): PostgreSQL, MinIO, the tracking server with
# auth, a Ray head and workers, the nightly scheduler. Needs docker/.env (from docker/.env.example).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_STACK = $(COMPOSE) -p sweeplab -f docker/compose.yaml
.PHONY: up down
up:
	@[ -f docker/.env ] || { echo "docker/.env is missing: cp docker/.env.example docker/.env and fill in its secrets"; exit 2; }
	$(COMPOSE_STACK) up -d --build

down:
	$(COMPOSE_STACK) down

# Everything the project writes here: the venv, caches, build output, the embedded MLflow store
# and its artifacts, sweeps, benchmark output. Asks nothing; data sets (data/, ~/.cache/sweeplab) stay.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info \
	  mlflow.db mlartifacts mlruns sweeps .bench outputs .test-artifacts
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
