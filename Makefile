# The two commands that matter: `make run` (a local demo) and `make test` (everything CI runs).
# `make help` lists the rest.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# `make run FORMAT=avro`: the demo in Avro, with a schema registry (json by default).
FORMAT ?= json

.DEFAULT_GOAL := help
.PHONY: help install kafka registry prometheus image-tools image run test test-image check lint typecheck unit integration e2e soak bench bench-quick quix-peer clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

kafka: $(STAMP) ## fetch Apache Kafka's jars from Maven Central (cached in ~/.cache)
	$(PY) -m processor.devkit.broker fetch

registry: $(STAMP) ## fetch Apicurio Registry, a schema registry with Confluent's API (cached in ~/.cache)
	$(PY) -m processor.devkit.registry fetch

prometheus: ## prometheus and promtool (Debian's package) for the dashboard, alert and metrics tests
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends prometheus; }

image-tools: ## buildah and debootstrap (Debian's packages): build and run the image without Docker
	@command -v buildah >/dev/null && command -v debootstrap >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
	    buildah debootstrap debian-archive-keyring; }

image: $(STAMP) image-tools ## build deploy/Dockerfile with buildah on a local Debian base (root; base cached in ~/.cache)
	$(PY) -m processor.devkit.image build

run: $(STAMP) kafka $(if $(filter avro,$(FORMAT)),registry) ## local demo: broker, Clearbit-compatible server, sample events, processor run, then processor conversions (FORMAT=avro: enrichment in Avro)
	$(PY) -m processor.devkit.demo --format $(FORMAT)

lint: $(STAMP) ## ruff, and the import contracts of pyproject.toml (lint-imports)
	$(BIN)/ruff check processor tests
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP) ## mypy --strict on the package
	$(BIN)/mypy

unit: $(STAMP) ## unit tests only (no broker)
	$(PY) -m pytest tests/unit

integration: $(STAMP) kafka registry prometheus ## integration tests (real broker and schema registry)
	$(PY) -m pytest tests/integration

e2e: $(STAMP) kafka ## whole-process tests: kills, restarts, chaos
	$(PY) -m pytest tests/e2e

test: $(STAMP) kafka registry prometheus lint typecheck ## lint, types and the whole test suite but the image's
	$(PY) -m pytest -m "not image" tests

test-image: $(STAMP) kafka image-tools ## build the image for real and run it on a real broker (CI runs it after make test)
	$(PY) -m pytest -m image tests/deploy

soak: $(STAMP) kafka ## the chaos scenarios five times bigger (not part of `make test`)
	CHAOS_SCALE=5 $(PY) -m pytest --timeout 3600 tests/e2e/test_chaos.py tests/e2e/test_sender_chaos.py

bench: $(STAMP) kafka registry quix-peer ## the benchmark: prints a table, writes bench-results.json
	$(PY) -m processor.devkit.bench

# Quix Streams for the benchmark's peer only: it pins an older confluent-kafka than ours.
QUIX_VENV := .venv-quix
$(QUIX_VENV)/.installed:
	$(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QUIX_VENV)/bin/python -m pip install --quiet 'quixstreams==3.28.1'
	touch $@

quix-peer: $(QUIX_VENV)/.installed ## a venv with Quix Streams, for the benchmark's Quix peer

bench-quick: $(STAMP) kafka registry ## the benchmark with small sizes
	$(PY) -m processor.devkit.bench --quick

clean: ## remove the venv and caches (not the Kafka jar cache)
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
