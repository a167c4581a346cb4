#!/usr/bin/env bash
# Build the test control plane from Go modules (issue 9):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, helm
# and, for the real node (issue 18): kubelet, kube-proxy, coredns (our plugin set, no
# `forward`), pause (the kubernetes module's pause.c, linked statically with gcc)
#
# Binaries go to a cache OUTSIDE the repository:
#   ${LLMCHAT_CACHE:-$HOME/.cache/llm-in-the-chat}/k8s/<stamp>/bin
# where <stamp> names the pinned versions plus a hash of the wrapper go.mod/go.sum files.
#
# Usage:
#   tools/k8s/build.sh                 build what is missing (no-op when everything is there)
#   tools/k8s/build.sh --print-bin-dir print the bin directory for the pinned versions and exit
#   tools/k8s/build.sh --check         exit 0 if every binary is present, 1 otherwise
#   tools/k8s/build.sh --force         rebuild everything
#
# Needs Go >= 1.24 (uses the local toolchain only: GOTOOLCHAIN=local) and the Go
# module proxy. Go's own caches (GOMODCACHE, GOCACHE) are reused between runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok helm coredns pause)
# Bump when the way binaries are built changes (flags, ldflags), to force a new stamp.
BUILD_REVISION=1

stamp() {
	local h
	h="$(cd "$HERE" && cat versions.env go.mod go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum \
		helm/go.mod helm/go.sum coredns/go.mod coredns/go.sum coredns/main.go |
		{ cat; echo "rev=$BUILD_REVISION"; } | sha256sum | cut -c1-10)"
	printf 'k8s-%s_etcd-%s_kwok-%s_helm-%s_%s' "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$HELM_VERSION" "$h"
}

CACHE_ROOT="${LLMCHAT_CACHE:-$HOME/.cache/llm-in-the-chat}"
STAMP_DIR="$CACHE_ROOT/k8s/$(stamp)"
BIN_DIR="$STAMP_DIR/bin"

all_present() {
	local b
	for b in "${BINARIES[@]}"; do
		[[ -x "$BIN_DIR/$b" ]] || return 1
	done
}

FORCE=0
case "${1:-}" in
--print-bin-dir)
	printf '%s\n' "$BIN_DIR"
	exit 0
	;;
--check)
	all_present
	exit $?
	;;
--force) FORCE=1 ;;
"") ;;
-h | --help)
	sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "build.sh: unknown argument: $1 (try --help)" >&2
	exit 2
	;;
esac

log() { printf '[k8s-build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [[ $FORCE == 0 ]] && all_present; then
	log "up to date: $BIN_DIR"
	exit 0
fi

# --- toolchain --------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
	for d in /usr/local/go/bin "$HOME/go/bin" /usr/lib/go/bin; do
		if [[ -x "$d/go" ]]; then
			export PATH="$d:$PATH"
			break
		fi
	done
fi
if ! command -v go >/dev/null 2>&1; then
	echo "build.sh: 'go' not found. Install Go >= 1.24 (https://go.dev/dl/ or /usr/local/go) and re-run." >&2
	exit 3
fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
log "using $(go version)"

mkdir -p "$STAMP_DIR"
exec 9>"$STAMP_DIR/.lock"
if ! flock -n 9; then
	log "another build holds $STAMP_DIR/.lock; waiting (up to 60 min)"
	flock -w 3600 9
	if [[ $FORCE == 0 ]] && all_present; then
		log "up to date (built by the other process): $BIN_DIR"
		exit 0
	fi
fi

mkdir -p "$BIN_DIR"
TMP_BIN="$(mktemp -d "$STAMP_DIR/.tmp-bin.XXXXXX")"
trap 'rm -rf "$TMP_BIN"' EXIT

JOBS="${LLMCHAT_GO_BUILD_JOBS:-2}"
START=$SECONDS

need() { # binary... -> succeed if any of them must be built
	local b
	[[ $FORCE == 1 ]] && return 0
	for b in "$@"; do
		[[ -x "$BIN_DIR/$b" ]] || return 0
	done
	return 1
}

install_bins() { # move built binaries from TMP_BIN into BIN_DIR atomically
	local b
	for b in "$@"; do
		mv -f "$TMP_BIN/$b" "$BIN_DIR/$b"
	done
}

# --- kubernetes ---------------------------------------------------------------
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
if need "${K8S_BINS[@]}"; then
	minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	commit=0000000000000000000000000000000000000000
	date=1970-01-01T00:00:00Z
	ldf="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ldf+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
	done
	log "kubernetes $K8S_VERSION: downloading modules (go mod download)"
	(cd "$HERE" && go mod download)
	log "kubernetes $K8S_VERSION: building ${K8S_BINS[*]} (-p $JOBS; a cold build takes 10-30 min)"
	pkgs=()
	for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	t0=$SECONDS
	(cd "$HERE" && go build -p "$JOBS" -trimpath -ldflags "$ldf" -o "$TMP_BIN/" "${pkgs[@]}")
	install_bins "${K8S_BINS[@]}"
	log "kubernetes: done in $((SECONDS - t0)) s"
fi

# --- etcd ---------------------------------------------------------------------
if need etcd; then
	log "etcd $ETCD_VERSION: building"
	t0=$SECONDS
	(cd "$HERE/etcd" && go mod download && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$TMP_BIN/etcd" go.etcd.io/etcd/server/v3)
	install_bins etcd
	log "etcd: done in $((SECONDS - t0)) s"
fi

# --- kwok ---------------------------------------------------------------------
if need kwok; then
	log "kwok $KWOK_VERSION: building"
	t0=$SECONDS
	(cd "$HERE/kwok" && go mod download && go build -p "$JOBS" -trimpath \
		-ldflags "-s -w" -o "$TMP_BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
	install_bins kwok
	log "kwok: done in $((SECONDS - t0)) s"
fi

# --- helm ---------------------------------------------------------------------
if need helm; then
	log "helm $HELM_VERSION: building (k8s capabilities $K8S_VERSION)"
	minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	ldf+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
	ldf+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
	t0=$SECONDS
	(cd "$HERE/helm" && go mod download && go build -p "$JOBS" -trimpath -ldflags "$ldf" -o "$TMP_BIN/helm" helm.sh/helm/v3/cmd/helm)
	install_bins helm
	log "helm: done in $((SECONDS - t0)) s"
fi

# --- coredns ------------------------------------------------------------------
if need coredns; then
	log "coredns $COREDNS_VERSION: building (tools/k8s/coredns/main.go: no forward plugin)"
	t0=$SECONDS
	(cd "$HERE/coredns" && go mod download && go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$TMP_BIN/coredns" .)
	install_bins coredns
	log "coredns: done in $((SECONDS - t0)) s"
fi

# --- pause ----------------------------------------------------------------------
# The pod sandbox's process: pause.c from the k8s.io/kubernetes module (already downloaded
# above), compiled statically so its image needs nothing else (a FROM-scratch image).
if need pause; then
	command -v gcc >/dev/null || { echo "build.sh: gcc is needed for the pause binary (apt-get install gcc libc6-dev)" >&2; exit 3; }
	src="$(cd "$HERE" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
	log "pause: gcc -static $src"
	gcc -Os -static -Wall -Werror -DVERSION="$K8S_VERSION" -o "$TMP_BIN/pause" "$src"
	strip "$TMP_BIN/pause"
	install_bins pause
fi

all_present
log "all binaries ready in $BIN_DIR ($((SECONDS - START)) s)"
