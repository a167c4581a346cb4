#!/usr/bin/env bash
# `make image`: build the project's image from the Dockerfile with buildah (no Docker, no
# registry), plus the Redis image of the real-node tests, and save both as docker-archive
# tarballs that `ctr images import` (and `docker load`) take.
#
# Usage: bash tools/image/build.sh [--force]
#   prints one line per image: <name> <archive>
#
#   - the base comes from tools/image/base.sh (mmdebstrap, cached) unless BASE_IMAGE names one
#   - llama-cpp-python: the wheel tools/llama/install.sh built for the local .venv (same locked
#     sdist, same flags) is handed to the build in tools/image/wheels/ (LLMCHAT_IMAGE_BUILD_LLAMA=1:
#     not, so the build compiles it from the locked sdist, as `docker build` does)
#   - RUN steps run with --isolation chroot; pip/uv inside see the host's CA bundle (mounted
#     read-only), so a TLS-intercepting proxy's CA works as it does on the host
#   - archives are cached in $LLMCHAT_CACHE/image/, keyed on every input of the build: a warm
#     run with nothing changed takes about a second
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
APP="llm-in-the-chat:$VERSION"
REDIS="llm-in-the-chat-redis:bookworm"
CA=/etc/ssl/certs/ca-certificates.crt
T0=$SECONDS

BASE="${BASE_IMAGE:-$(bash "$HERE/base.sh" | tail -n 1)}"

# the llama-cpp-python wheel of the local build, with what it was built from
# (LLMCHAT_IMAGE_BUILD_LLAMA=1: none, so the image compiles it as `docker build` does)
rm -f "$HERE"/wheels/*.whl "$HERE/wheels/FLAGS" "$HERE/wheels/SDIST_SHA256"
if [[ "${LLMCHAT_IMAGE_BUILD_LLAMA:-0}" != 1 ]]; then
	WHEEL="$(bash "$ROOT/tools/llama/install.sh" --wheel "$ROOT/.venv" | tail -n 1)"
	cp "$WHEEL" "$(dirname "$WHEEL")/FLAGS" "$(dirname "$WHEEL")/SDIST_SHA256" "$HERE/wheels/"
fi

# every input of the image build (the context as .dockerignore leaves it, roughly)
inputs_key() {
	(
		cd "$ROOT"
		echo "$BASE"
		find Dockerfile .dockerignore pyproject.toml uv.lock README.md llmchat llmchat-tools chat-service \
			model-worker judge operator tools/uv tools/image tools/llama/cmake-args \
			tools/llama/build-wheel.sh tools/llama/lock-info.sh -type f \
			! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
			sort -z | xargs -0 sha256sum
	) | sha256sum | cut -c1-12
}

build() { # name archive context-file extra-args...
	local name="$1" archive="$2" file="$3"
	shift 3
	if ((!FORCE)) && [[ -s "$archive" ]]; then
		log "$name: up to date ($archive)"
		echo "$name $archive"
		return
	fi
	log "$name: buildah bud -f $file (base $BASE)"
	BUILT=1
	local t0=$SECONDS
	# --layers: a change to the sources rebuilds only the last steps
	bah bud --quiet --layers --isolation chroot --pull=never \
		--build-arg "BASE_IMAGE=$BASE" -v "$CA:$CA:ro" \
		-f "$file" -t "$name" "$@" "$ROOT" >/dev/null
	rm -f "${archive%-*}"-*.tar
	bah push --quiet "$name" "docker-archive:$archive.tmp:$name"
	mv "$archive.tmp" "$archive"
	log "$name: built in $((SECONDS - t0)) s, $(du -h "$archive" | cut -f1) ($archive)"
	echo "$name $archive"
}

BUILT=0
mkdir -p "$IMAGE_CACHE"
exec 8>"$IMAGE_CACHE/.build.lock"
flock 8
KEY="$(inputs_key)"
build "$APP" "$IMAGE_CACHE/llm-in-the-chat-$VERSION-$KEY.tar" Dockerfile
REDIS_KEY="$(cat "$HERE/redis.Containerfile" <(echo "$BASE") | sha256sum | cut -c1-12)"
build "$REDIS" "$IMAGE_CACHE/llm-in-the-chat-redis-$REDIS_KEY.tar" tools/image/redis.Containerfile
# buildah keeps every earlier build's images (about 1.4 GB each). The build stage is tagged (so
# its layers, the cache of the next build, are in use), then every untagged image that nothing
# tagged builds on is removed.
if ((BUILT)); then
	bah bud --quiet --layers --isolation chroot --pull=never --build-arg "BASE_IMAGE=$BASE" \
		-v "$CA:$CA:ro" --target build -t llm-in-the-chat-build:cache -f Dockerfile "$ROOT" >/dev/null
	for _ in 1 2 3; do # a parent goes once its children are gone
		while read -r id; do
			bah rmi "$id" >/dev/null 2>&1 || true
		done < <(bah images --all --quiet --filter dangling=true)
	done
fi
log "images ready in $((SECONDS - T0)) s"
