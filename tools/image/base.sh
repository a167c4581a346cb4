#!/usr/bin/env bash
# The image's base when no registry is reachable: Debian bookworm (minbase) with python3, its
# venv module, CA certificates, tini and libgomp1, made by mmdebstrap from the machine's own
# apt sources, committed into buildah's storage as localhost/llm-in-the-chat-base:<key>.
#
# Usage: bash tools/image/base.sh      prints the image name on the last line
#
# The root file system tarball is cached in $LLMCHAT_CACHE/image/ (default
# ~/.cache/llm-in-the-chat/image/), keyed on its inputs (this script, the package list, the
# apt sources): a warm run only checks that the image is in buildah's storage.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

SUITE=bookworm
PACKAGES=(python3 python3-venv ca-certificates tini libgomp1)

# the machine's own apt sources for the suite (no mirror name is written anywhere)
mapfile -t SOURCES < <(grep -l -s -E "\\b$SUITE\\b" /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	/etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if ((${#SOURCES[@]} == 0)); then
	die "no apt source for $SUITE in /etc/apt/sources.list{,.d/} (mmdebstrap needs one)"
fi
KEY="$({ cat "${BASH_SOURCE[0]}"; echo "$SUITE ${PACKAGES[*]}"; cat "${SOURCES[@]}"; } | sha256sum | cut -c1-12)"
NAME="localhost/llm-in-the-chat-base:$KEY"
TAR="$IMAGE_CACHE/base-$SUITE-$KEY.tar"

if bah inspect --type image "$NAME" >/dev/null 2>&1; then
	log "base image $NAME is there"
	echo "$NAME"
	exit 0
fi
need mmdebstrap
mkdir -p "$IMAGE_CACHE"
exec 8>"$IMAGE_CACHE/.base.lock"
flock 8
if [[ ! -s "$TAR" ]]; then
	log "mmdebstrap $SUITE (minbase + ${PACKAGES[*]}) from ${SOURCES[*]} (about 2 min)"
	t0=$SECONDS
	tmp="$TAR.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
		--include="$(IFS=,; echo "${PACKAGES[*]}")" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
		"$SUITE" "$tmp" "${SOURCES[@]}"
	mv "$tmp" "$TAR"
	trap - EXIT
	log "base root file system: $(du -h "$TAR" | cut -f1) in $((SECONDS - t0)) s"
fi
ctr="$(bah from --quiet scratch)"
trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
bah add --quiet "$ctr" "$TAR" /
bah config --os linux --arch amd64 --cmd /bin/bash \
	--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--label "io.llmchat.base.key=$KEY" "$ctr"
bah commit --quiet --rm "$ctr" "$NAME" >/dev/null
trap - EXIT
log "base image $NAME committed"
echo "$NAME"
