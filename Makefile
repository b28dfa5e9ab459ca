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

BENCH_STAMP := $(VENV)/.installed-flasker-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e 'shared/flasker[test,bench]'
	touch $@

.PHONY: bench
bench: $(BENCH_STAMP) ## Run the benchmarks and print their ratios (BENCH_ARGS=--quick)
	$(PY) -m benchmarks $(BENCH_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check shared/flasker/src tests benchmarks reference services
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## Remove caches and test output (keeps .venv and .env)
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-output benchmarks/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# -- the stack: one image, web, worker, beat and flower on PostgreSQL and Redis ---------------
COMPOSE ?= docker compose
ENV_FILE ?= .env
# Without a .env (a fresh clone's 'make build' or 'make down'), compose still needs the
# required variables: the example's placeholders do for whatever starts no app.
COMPOSE_ENV = --env-file $(if $(wildcard $(ENV_FILE)),$(ENV_FILE),.env.example)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' shared/flasker/pyproject.toml)
REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell \
	git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
# The image's OCI labels (compose passes them as build arguments).
export FLASKER_VERSION := $(VERSION)
export FLASKER_REVISION := $(REVISION)
REGISTRY ?=
SERVICE ?=
WEB_IMAGE = $$($(COMPOSE) $(COMPOSE_ENV) config --format json \
	| $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["services"]["web"]["image"])')

# Written once, from .env.example, with a fresh random secret for every 'change-me'.
$(ENV_FILE): | .env.example
	@umask 077; while IFS= read -r line; do \
	  case "$$line" in \
	    *=change-me) printf '%s=%s\n' "$${line%%=*}" \
	      "$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" ;; \
	    *) printf '%s\n' "$$line" ;; \
	  esac; \
	done < .env.example > $@.tmp && mv $@.tmp $@
	@echo "Wrote $@ from .env.example with freshly generated secrets (keep it private)."

.PHONY: up
up: $(ENV_FILE) ## Build and start the stack, wait until healthy, print URLs (writes .env)
	$(COMPOSE) --env-file $(ENV_FILE) up --build --detach --wait --wait-timeout 300
	@web=$$($(COMPOSE) --env-file $(ENV_FILE) port web 8000) && \
	flower=$$($(COMPOSE) --env-file $(ENV_FILE) port flower 5555) && \
	auth=$$($(COMPOSE) --env-file $(ENV_FILE) exec -T flower printenv FLOWER_BASIC_AUTH) && \
	printf '\nThe stack is up and healthy.\n  web     http://%s\n  flower  http://%s\n' \
	  "$$web" "$$flower" && \
	printf '          user %s, password %s\n' "$${auth%%:*}" "$${auth#*:}"

.PHONY: down
down: ## Stop and remove the stack's containers (keeps the data volumes)
	$(COMPOSE) $(COMPOSE_ENV) down

.PHONY: logs
logs: ## Follow the stack's logs (one service: make logs SERVICE=worker)
	$(COMPOSE) $(COMPOSE_ENV) logs --follow --tail=200 $(SERVICE)

.PHONY: ps
ps: ## List the stack's containers and their health
	$(COMPOSE) $(COMPOSE_ENV) ps --all

.PHONY: shell
shell: $(ENV_FILE) ## Open 'flasker shell' in the running web container
	$(COMPOSE) --env-file $(ENV_FILE) exec web flasker shell

.PHONY: migrate
migrate: $(ENV_FILE) ## Apply the database migrations (flasker db upgrade)
	$(COMPOSE) --env-file $(ENV_FILE) run --rm migrate

.PHONY: build
build: ## Build the image (tagged $FLASKER_IMAGE:$FLASKER_TAG, default flasker:dev)
	$(COMPOSE) $(COMPOSE_ENV) build

.PHONY: push
push: build ## Push the image: make push REGISTRY=host:port (tags: version, git revision)
	@test -n "$(REGISTRY)" || { echo "Name the registry: make push REGISTRY=host:port" >&2; exit 2; }
	@set -eu; image=$(WEB_IMAGE); name=$${image%:*}; name=$${name##*/}; \
	for tag in $(VERSION) $(REVISION); do \
	  docker tag "$$image" "$(REGISTRY)/$$name:$$tag"; \
	  docker push "$(REGISTRY)/$$name:$$tag"; \
	done; \
	echo "Pushed $$(docker image inspect --format '{{index .RepoDigests 0}}' \
	  "$(REGISTRY)/$$name:$(VERSION)") as $(REGISTRY)/$$name:$(VERSION) and :$(REVISION)."
