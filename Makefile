# flasker: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-flasker
PYTEST_ARGS ?=

$(STAMP): shared/flasker/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'shared/flasker[test]'
	touch $@

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.PHONY: venv
venv: $(STAMP) ## Create .venv with flasker and its test extras

.PHONY: test
test: $(STAMP) ## Run the test suite (PostgreSQL and Redis from testcontainers)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks and print their ratios
	$(PY) -m benchmarks

.PHONY: lint
lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check shared/flasker/src tests benchmarks
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## Remove caches and test output (keeps .venv and .env)
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-output benchmarks/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
