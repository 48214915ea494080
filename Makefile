# closedloop — every target bootstraps its own environment from pyproject.toml and uv.lock.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: help env browser demo test bench lint format lock

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}'

env: ## Install uv if missing, then the locked environment into .venv
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet

browser: ## Debian's Chromium for the console's browser tests, if it is missing (apt-get)
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

demo: env ## Run every stage on a small synthetic telco world and print a summary
	$(RUN) closedloop demo

test: env browser ## Run the test suite
	$(RUN) pytest -n 2 --dist loadfile

bench: env ## Run the benchmarks and print their figures
	$(RUN) python -m bench

lint: env ## ruff: lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: env ## ruff: fix and format
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

lock: ## Re-resolve uv.lock after editing dependencies
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) lock
