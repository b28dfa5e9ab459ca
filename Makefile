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
lint: $(BENCH_STAMP) ## ruff and mypy (over the package, tests and benchmarks, with their peers installed)
	$(VENV)/bin/ruff check shared/flasker/src tests benchmarks reference services
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## Remove caches and test output (keeps .venv and .env)
	rm -rf .pytest_cache .mypy_cache .ruff_cache test-output benchmarks/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The stack's files (Dockerfile, compose, Makefile, lock, services/...) are flasker's templates
# (shared/flasker/src/flasker/scaffold/stack/) rendered for the reference app, the templates
# 'flasker new' renders for a new project: edit those, then run this.
.PHONY: stack
stack: $(STAMP) ## Write the repository's stack files from flasker's templates
	$(PY) -m flasker.scaffold .

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

# A .env written by an older release lacks the secrets added since: each 'change-me' key of
# .env.example missing from it is appended with a fresh secret (nothing else is touched).
.PHONY: env
env: $(ENV_FILE) ## Write .env, or add to it the secrets a newer .env.example names
	@umask 077; while IFS= read -r line; do \
	  case "$$line" in \
	    *=change-me) key="$${line%%=*}"; \
	      if ! grep -q "^$$key=" $(ENV_FILE); then \
	        printf '%s=%s\n' "$$key" "$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" \
	          >> $(ENV_FILE); \
	        echo "Added $$key to $(ENV_FILE) with a freshly generated secret."; \
	      fi ;; \
	  esac; \
	done < .env.example

.PHONY: up
up: env ## Build and start the stack, wait until healthy, print URLs (writes .env)
	$(COMPOSE) --env-file $(ENV_FILE) up --build --detach --wait --wait-timeout 300
	@web=$$($(COMPOSE) --env-file $(ENV_FILE) port web 8000) && \
	flower=$$($(COMPOSE) --env-file $(ENV_FILE) port flower 5555) && \
	auth=$$($(COMPOSE) --env-file $(ENV_FILE) exec -T flower printenv FLOWER_BASIC_AUTH) && \
	printf '\nThe stack is up and healthy.\n  web     http://%s\n  flower  http://%s\n' \
	  "$$web" "$$flower" && \
	printf '          user %s, password %s\n' "$${auth%%:*}" "$${auth#*:}"

# compose.dev.yaml on top of compose.yaml, in the foreground: Ctrl+C stops, 'make down' removes.
# Docker Compose (2.40 and later) can panic, exit status 2, when a container it watches is
# removed before it looked at it, as a rebuild's recreation does (docker/compose#13559): the
# stack is left running, and 'up --watch' is started again (up to 5 times).
.PHONY: dev
dev: env ## Development mode: reloads edits, Werkzeug debugger on 127.0.0.1 (writes .env)
	@panics=0; while :; do \
	  $(COMPOSE) --env-file $(ENV_FILE) --file compose.yaml --file compose.dev.yaml \
	    up --build --watch && exit 0; \
	  status=$$?; \
	  if [ $$status -ne 2 ] || [ $$panics -ge 5 ]; then exit $$status; fi; \
	  panics=$$((panics + 1)); \
	  echo "Docker Compose stopped (exit status 2; docker/compose#13559):" \
	    "starting 'up --watch' again." >&2; \
	done

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

# -- backups: pg_dump of the stack's database, on this host ----------------------------------
BACKUP_DIR ?= backups
FILE ?=
# The services that write to the database: those running are stopped while it is restored.
DB_WRITERS := web worker beat
# The compose project's name ('flasker', or COMPOSE_PROJECT_NAME, or COMPOSE's --project-name).
PROJECT_NAME = $$($(COMPOSE) $(COMPOSE_ENV) config --format json \
	| $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["name"])')
# (Not 'grep -q': quitting before compose is done writing would fail the pipe, pipefail.)
NEED_POSTGRES = $(COMPOSE) $(COMPOSE_ENV) ps --status running --services \
	| grep -x postgres >/dev/null \
	|| { echo "The stack's postgres is not running: start the stack with 'make up'." >&2; exit 1; }
# Run in the postgres container, as its POSTGRES_USER on its POSTGRES_DB, over TCP with the
# password (a socket would ask the container's user to be that role).
PG_AS_OWNER = PGPASSWORD="$$POSTGRES_PASSWORD" exec "$$0" -h 127.0.0.1 -U "$$POSTGRES_USER" \
	-d "$$POSTGRES_DB" "$$@"

.PHONY: backup
backup: ## Dump the stack's database to backups/<project>-<UTC time>.dump (BACKUP_DIR=...)
	@set -euo pipefail; $(NEED_POSTGRES); \
	mkdir -p "$(BACKUP_DIR)"; \
	file="$(BACKUP_DIR)/$(PROJECT_NAME)-$$(date -u +%Y%m%dT%H%M%SZ).dump"; \
	trap 'rm -f "$$file.partial"' EXIT; \
	$(COMPOSE) $(COMPOSE_ENV) exec -T postgres sh -c '$(PG_AS_OWNER)' pg_dump --format=custom \
	  > "$$file.partial"; \
	mv "$$file.partial" "$$file"; \
	echo "Backed up the database to $$file ($$(wc -c < "$$file") bytes)."

.PHONY: restore
restore: ## Restore the database from a dump: make restore FILE=backups/<file>.dump
	@test -n "$(FILE)" || { echo "Name the dump to restore: make restore\
	 FILE=$(BACKUP_DIR)/<project>-<time>.dump (written by 'make backup')." >&2; exit 2; }
	@test -f "$(FILE)" || { echo "No file '$(FILE)': name a dump 'make backup' wrote\
	 (ls $(BACKUP_DIR))." >&2; exit 2; }
	@set -euo pipefail; $(NEED_POSTGRES); \
	running=$$($(COMPOSE) $(COMPOSE_ENV) ps --status running --services $(DB_WRITERS) \
	  | xargs); \
	if [ -n "$$running" ]; then \
	  echo "Stopping $$running while the database is restored."; \
	  $(COMPOSE) $(COMPOSE_ENV) stop $$running; \
	fi; \
	status=0; \
	$(COMPOSE) $(COMPOSE_ENV) exec -T postgres sh -c '$(PG_AS_OWNER)' pg_restore --clean \
	  --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
	  < "$(FILE)" || status=$$?; \
	if [ -n "$$running" ]; then $(COMPOSE) $(COMPOSE_ENV) start $$running; fi; \
	if [ "$$status" -ne 0 ]; then \
	  echo "Restoring $(FILE) failed (pg_restore exited $$status): the database is as it" \
	    "was before." >&2; exit "$$status"; \
	fi; \
	echo "Restored the database from $(FILE).$${running:+ Started again: $$running ('make ps'\
	 shows their health).}"

# The image installs requirements.lock: every package pinned, with its hashes, resolved once for
# Linux (and any OS) and every Python from 3.11 up (--universal: markers where they differ).
# uv is pinned, so that the same inputs give the same lock, and trusts the system's certificates
# (a TLS-inspecting proxy's CA among them), as curl does. 'make lock' moves each pin to the
# newest version allowed; 'make lock UPGRADE=' keeps the pins that still fit (after an edit).
UV_VERSION := 0.13.9
UV_STAMP := $(VENV)/.installed-uv-$(UV_VERSION)
UPGRADE ?= --upgrade

$(UV_STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	touch $@

.PHONY: lock
lock: $(UV_STAMP) ## Refresh requirements.lock (pins and hashes) from requirements.in
	$(VENV)/bin/uv pip compile --quiet --system-certs --universal --python-version 3.11 \
	  --generate-hashes $(UPGRADE) --no-emit-package flasker --custom-compile-command 'make lock' \
	  --output-file requirements.lock requirements.in
	cp requirements.lock shared/flasker/src/flasker/scaffold/stack/requirements.lock

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

# -- Docker Swarm: deploy/swarm.yaml, from the image pushed to a registry ---------------------
# 'make deploy REGISTRY=host:port TAG=<tag>' deploys REGISTRY/<image's name>:TAG (the name is
# FLASKER_IMAGE's, as 'make push' pushes it); IMAGE=host:port/name@sha256:... pins a digest.
# .env's secrets become Docker secrets (written to a private folder for 'docker stack deploy',
# removed at once). The migrations run first, as a one-shot job on the new image (kept, to be
# read, until the next deploy, which removes it and, on this node, its stopped containers:
# Docker 20.10 leaves a removed job's containers behind); then the
# services are updated (web start-first, gated by its healthcheck; see deploy/swarm.yaml),
# and this waits for the update to end: it fails when Swarm rolled one back.
STACK ?= flasker
TAG ?= $(VERSION)
IMAGE ?=
DEPLOY_TIMEOUT ?= 300
SWARM_FILE := deploy/swarm.yaml

.PHONY: deploy
deploy: $(ENV_FILE) ## Deploy on Docker Swarm: make deploy REGISTRY=host:port TAG=<tag> (STACK=...)
	@test -n "$(REGISTRY)$(IMAGE)" || { echo "Name the registry: make deploy\
	 REGISTRY=host:port TAG=<tag> (or IMAGE=host:port/name@sha256:...)" >&2; exit 2; }
	@test "$$(docker info --format '{{.Swarm.ControlAvailable}}')" = true || { echo "This\
	 Docker engine is not a Swarm manager: 'docker swarm init' first." >&2; exit 2; }
	@set -euo pipefail; \
	value() { sed -n "s/^$$1=//p" "$(ENV_FILE)" | tail -n 1; }; \
	image="$(IMAGE)"; \
	if [ -z "$$image" ]; then \
	  image=$(WEB_IMAGE); name=$${image%:*}; image="$(REGISTRY)/$${name##*/}:$(TAG)"; \
	fi; \
	export DEPLOY_IMAGE="$$image" SECRETS_DIR="$$(mktemp -d)"; \
	trap 'rm -rf "$$SECRETS_DIR"' EXIT; \
	export POSTGRES_USER="$${POSTGRES_USER:-$$(value POSTGRES_USER)}"; \
	export POSTGRES_DB="$${POSTGRES_DB:-$$(value POSTGRES_DB)}"; \
	export WEB_PORT="$${WEB_PORT:-$$(value WEB_PORT)}" FLOWER_PORT="$${FLOWER_PORT:-$$(value FLOWER_PORT)}"; \
	redis_url="redis://:$$(value REDIS_PASSWORD)@redis:6379"; \
	( umask 077; cd "$$SECRETS_DIR"; \
	  value FLASKER__APP__SECRET_KEY > secret_key; \
	  value POSTGRES_PASSWORD > postgres_password; \
	  value REDIS_PASSWORD > redis_password; \
	  echo "postgresql+psycopg://$$POSTGRES_USER:$$(value POSTGRES_PASSWORD)@postgres:5432/$$POSTGRES_DB" > db_url; \
	  echo "$$redis_url/0" > broker_url; echo "$$redis_url/1" > result_backend; \
	  echo "$$(value FLOWER_USER):$$(value FLOWER_PASSWORD)" > flower_basic_auth ); \
	if ! docker service inspect "$(STACK)_postgres" >/dev/null 2>&1; then \
	  echo "First deploy of $(STACK): the network, secrets, PostgreSQL and Redis first."; \
	  WEB_REPLICAS=0 WORKER_REPLICAS=0 docker stack deploy --with-registry-auth \
	    --compose-file $(SWARM_FILE) $(STACK); \
	fi; \
	echo "Migrating the database with $$image (one-shot job $(STACK)_migrate)."; \
	docker service rm "$(STACK)_migrate" >/dev/null 2>&1 || true; \
	old=$$(docker ps --all --quiet --filter label=com.docker.swarm.service.name=$(STACK)_migrate); \
	if [ -n "$$old" ]; then docker rm $$old >/dev/null; fi; \
	docker service create --quiet --detach --name "$(STACK)_migrate" --mode replicated-job \
	  --label com.docker.stack.namespace=$(STACK) --network $(STACK)_default \
	  --container-label com.docker.stack.namespace=$(STACK) \
	  --restart-condition on-failure --restart-delay 3s --restart-max-attempts 20 \
	  --secret source=$(STACK)_secret_key,target=secret_key \
	  --secret source=$(STACK)_db_url,target=db_url \
	  --secret source=$(STACK)_broker_url,target=broker_url \
	  --secret source=$(STACK)_result_backend,target=result_backend \
	  --env FLASKER__APP__SECRET_KEY_FILE=/run/secrets/secret_key \
	  --env FLASKER__PROJECT__DB_URL_FILE=/run/secrets/db_url \
	  --env FLASKER__CELERY__BROKER_URL_FILE=/run/secrets/broker_url \
	  --env FLASKER__CELERY__RESULT_BACKEND_FILE=/run/secrets/result_backend \
	  --with-registry-auth "$$image" db upgrade >/dev/null; \
	deadline=$$(( $$(date +%s) + $(DEPLOY_TIMEOUT) )); \
	until docker service ps "$(STACK)_migrate" --format '{{.CurrentState}}' | grep -q '^Complete'; do \
	  if [ "$$(date +%s)" -gt "$$deadline" ] || [ "$$(docker service ps "$(STACK)_migrate" -q \
	      --filter desired-state=shutdown | wc -l)" -ge 20 ]; then \
	    docker service logs --tail 50 "$(STACK)_migrate" >&2 || true; \
	    echo "The migrations did not complete: nothing else was changed." >&2; exit 1; \
	  fi; sleep 2; \
	done; \
	echo "Migrated. Updating the services of $(STACK) to $$image."; \
	docker stack deploy --with-registry-auth --compose-file $(SWARM_FILE) $(STACK); \
	sleep 3; \
	while :; do \
	  busy=; failed=; \
	  for service in $$(docker stack services --quiet $(STACK)); do \
	    state=$$(docker service inspect --format \
	      '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$$service"); \
	    case "$$state" in \
	      *\ updating|*\ rollback_started|*\ paused|*\ rollback_paused) busy="$$busy $${state% *}" ;; \
	      *\ rollback_completed) failed="$$failed $${state% *}" ;; \
	    esac; \
	  done; \
	  pending=$$(docker stack services $(STACK) --format '{{.Name}} {{.Replicas}}' \
	    | awk '$$3 == "" { split($$2, r, "/"); if (r[1] != r[2]) print $$1 }' | xargs); \
	  [ -z "$$busy$$pending" ] && break; \
	  if [ "$$(date +%s)" -gt "$$deadline" ]; then \
	    echo "Still updating after $(DEPLOY_TIMEOUT) s:$$busy $$pending ('docker stack ps $(STACK)')." >&2; \
	    exit 1; \
	  fi; sleep 2; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "Swarm rolled back$$failed: the new tasks failed their healthcheck (docker service ps)." >&2; \
	  exit 1; \
	fi; \
	echo "Deployed $$image as stack $(STACK): every service updated and running."
