# Shared by tools/image/*.sh: logging, the cache, and buildah with its storage in our cache
# (so image builds never touch /var/lib/containers).
CACHE_ROOT="${LLMCHAT_CACHE:-$HOME/.cache/llm-in-the-chat}"
IMAGE_CACHE="$CACHE_ROOT/image"
BUILDAH_ROOT="$CACHE_ROOT/containers/storage"
BUILDAH_RUNROOT="$CACHE_ROOT/containers/run"

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 is missing: install the node tools with 'make node-deps' (Debian: apt-get install buildah mmdebstrap)"
}
bah() {
	buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver overlay "$@"
}
need buildah
