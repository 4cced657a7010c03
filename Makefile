# psyche-sse — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests drive for real: the browser tests' Chromium, the nginx the
# reverse-proxy tests put in front of the server, and the Redis and PostgreSQL (Debian 12's
# is version 15) servers the worker and store tests start. Each as "package:the file it installs".
SYSTEM_PACKAGES := chromium:/usr/bin/chromium nginx:/usr/sbin/nginx \
	redis-server:/usr/bin/redis-server postgresql:/usr/lib/postgresql

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F ':.*## ' '{printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

system-packages: ## install the Debian packages the tests need (Chromium, nginx, Redis, PostgreSQL), when missing
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
		test -x "$${p#*:}" || missing="$$missing $${p%%:*}"; done; \
	test -z "$$missing" || { \
		echo "installing$$missing (Debian packages)"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }

run: install ## serve on http://127.0.0.1:8000 with the offline model
	$(BIN)/psyche-sse serve

# pytest-xdist: three workers for two cores, as much of the suite waits on paced streams,
# heartbeats and deadlines rather than computing.
XDIST := -n 3

test: install system-packages ## install everything and run the whole test suite
	$(BIN)/python -m pytest $(XDIST)

test-fast: install ## run the suite without the browser tests and those marked slow
	$(BIN)/python -m pytest $(XDIST) -m "not browser and not slow"

docs: install system-packages ## retake the screenshots in docs/ (the browser tests, writing there)
	PSYCHE_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest -m browser -k "round_live or three_rounds or system_scheme or phone_in_the_dark"

lint: install ## ruff (lint and format check) and mypy
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench tools
	$(BIN)/ruff format src tests bench tools

bench: install ## run the benchmarks and print the figures
	$(BIN)/python -m bench

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info

.PHONY: help install system-packages run test test-fast docs lint format bench clean
