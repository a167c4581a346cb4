#!/usr/bin/env bash
# Build llama-cpp-python's wheel from the sdist that uv.lock pins (version and sha256, checked
# by pip's hash-checking mode) with the CPU flags in tools/llama/cmake-args. One place for both:
# tools/llama/install.sh (the local .venv) and the image (Dockerfile) call it.
#
# Usage: bash tools/llama/build-wheel.sh OUTDIR [PYTHON]
#   OUTDIR   gets llama_cpp_python-<version>-*.whl, FLAGS (the CMAKE_ARGS used), SDIST_SHA256
#            and build.log
#   PYTHON   an interpreter with pip (default: python3)
# Prints the wheel's path on the last line. Never uses pip's wheel cache (--no-cache-dir): a
# cached -march=native build would come back whatever CMAKE_ARGS say.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:?usage: build-wheel.sh OUTDIR [PYTHON]}"
PY="${2:-python3}"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

read -r VERSION SDIST_SHA256 < <(bash "$HERE/lock-info.sh" "$ROOT/uv.lock")
FLAGS="$(tr -s ' \n' ' ' <"$HERE/cmake-args" | sed 's/ $//')"

mkdir -p "$OUT"
tmp="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf 'llama-cpp-python==%s --hash=sha256:%s\n' "$VERSION" "$SDIST_SHA256" >"$tmp/req.txt"
echo "[llama-wheel] building llama-cpp-python $VERSION from its locked sdist ($JOBS jobs)" >&2
echo "[llama-wheel] CMAKE_ARGS=$FLAGS" >&2
if ! CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" FORCE_CMAKE=1 \
	"$PY" -m pip --disable-pip-version-check wheel --no-cache-dir --no-deps \
	--no-binary llama-cpp-python --require-hashes -r "$tmp/req.txt" --wheel-dir "$tmp" \
	>"$tmp/build.log" 2>&1; then
	tail -n 40 "$tmp/build.log" >&2
	echo "[llama-wheel] ERROR: building llama-cpp-python failed (log above)" >&2
	exit 1
fi
wheel="$(cd "$tmp" && ls llama_cpp_python-"$VERSION"-*.whl)"
mv "$tmp/$wheel" "$OUT/$wheel"
mv "$tmp/build.log" "$OUT/build.log"
printf '%s\n' "$FLAGS" >"$OUT/FLAGS"
printf '%s\n' "$SDIST_SHA256" >"$OUT/SDIST_SHA256"
echo "$OUT/$wheel"
