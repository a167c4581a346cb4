#!/usr/bin/env bash
# Regenerate the wrapper go.mod/go.sum files from versions.env.
#
# Run this only when you change a pinned version; the generated go.mod and go.sum
# files are committed. Everything goes through the Go module proxy.
#
#   tools/k8s/go.mod        k8s.io/kubernetes + every staging module replaced by v0.X.Y
#   tools/k8s/etcd/go.mod   go.etcd.io/etcd/server/v3
#   tools/k8s/kwok/go.mod   sigs.k8s.io/kwok
#   tools/k8s/helm/go.mod   helm.sh/helm/v3
#   tools/k8s/coredns/go.mod github.com/coredns/coredns (main.go, ours, picks the plugins)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '[update-gomod] %s\n' "$*" >&2; }

# --- kubernetes -------------------------------------------------------------
log "k8s.io/kubernetes $K8S_VERSION: reading its go.mod from the module proxy"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && go mod init tmp >/dev/null 2>&1 && go mod download -json "k8s.io/kubernetes@$K8S_VERSION") >"$tmp/kk.json"
kk_gomod="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["GoMod"])' "$tmp/kk.json")"
staging_version="v0.${K8S_VERSION#v1.}"
mapfile -t staging < <(go mod edit -json "$kk_gomod" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("Require") or []:
    if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0":
        print(r["Path"])
')
log "${#staging[@]} staging modules -> $staging_version"

cd "$HERE"
rm -f go.mod go.sum
go mod init llmchat_tools.local/tools/k8s >/dev/null 2>&1
go mod edit -go=1.24.0 -require="k8s.io/kubernetes@$K8S_VERSION"
for m in "${staging[@]}"; do
	go mod edit "-replace=$m=$m@$staging_version"
done
for t in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
	go mod edit "-tool=k8s.io/kubernetes/cmd/$t"
done
go mod tidy
log "tools/k8s/go.mod written"

gen_simple() { # dir module-path require@version tool-package
	local dir="$1" mod="$2" req="$3" tool="$4"
	log "$dir: $req"
	cd "$HERE/$dir"
	rm -f go.mod go.sum
	go mod init "$mod" >/dev/null 2>&1
	go mod edit -go=1.24.0 -require="$req" -tool="$tool"
	go mod tidy
	# Never carry a toolchain line: GOTOOLCHAIN=local must decide.
	go mod edit -toolchain=none
}

mkdir -p "$HERE/etcd" "$HERE/kwok" "$HERE/helm"
gen_simple etcd llmchat_tools.local/tools/k8s/etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3
gen_simple kwok llmchat_tools.local/tools/k8s/kwok "sigs.k8s.io/kwok@$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
gen_simple helm llmchat_tools.local/tools/k8s/helm "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm
# coredns: our own main.go (the plugin set) in the module; only go.mod/go.sum are regenerated
log "coredns: github.com/coredns/coredns@$COREDNS_VERSION"
cd "$HERE/coredns"
rm -f go.mod go.sum
go mod init llmchat_tools.local/tools/k8s/coredns >/dev/null 2>&1
go mod edit -go=1.24.0 -require="github.com/coredns/coredns@$COREDNS_VERSION"
go mod tidy
go mod edit -toolchain=none
log "done"
