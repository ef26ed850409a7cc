#!/usr/bin/env bash
# Builds the upstream control-plane binaries the e2e suite runs against, from their Go modules,
# once per version, into a cache outside the work tree. Warm runs only check the cache.
#
#   KUBE_VERSION  (default v1.36.3)  kube-apiserver, kube-controller-manager, kube-scheduler,
#                                    kubectl and etcd (the etcd version Kubernetes pins)
#   HELM_VERSION  (default v3.22.0)  helm
#   SPAWNER_CACHE (default ~/.cache/spawner)
#
# Prints the binary directory on its last line. With --check it builds nothing and exits 1 when a
# binary is missing. Concurrent runs (npm test in two checkouts) take turns on $CACHE/build.lock.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${SPAWNER_CACHE:-$HOME/.cache/spawner}"
BIN="$CACHE/bin/kube-$KUBE_VERSION-helm-$HELM_VERSION"
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm)

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[build-binaries] error: %s\n' "$*" >&2; exit 1; }

have_all() { for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if have_all; then log "cached in $BIN"; echo "$BIN"; exit 0; fi
[ "${1:-}" = --check ] && { log "not built yet: $BIN"; exit 1; }

mkdir -p "$CACHE"
exec 8>"$CACHE/build.lock"
if ! flock -n 8; then
  log "waiting for another build of the binaries to finish (lock $CACHE/build.lock)"
  flock 8
  if have_all; then log "built meanwhile in $BIN"; echo "$BIN"; exit 0; fi
fi

command -v go >/dev/null || die "Go is not installed (needed to build the Kubernetes binaries); install Go >= 1.26"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${KUBE_VERSION#v1.}"

log "resolving k8s.io/kubernetes@$KUBE_VERSION through $(go env GOPROXY)"
gomod_json=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>&1) \
  || die "cannot download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy: $gomod_json"
upstream_gomod=$(printf '%s' "$gomod_json" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$upstream_gomod" ] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
go_line=$(grep -m1 '^go ' "$upstream_gomod")
godebug_line=$(grep -m1 '^godebug ' "$upstream_gomod" || true)

work="$CACHE/build/kube-$KUBE_VERSION"
mkdir -p "$work" "$BIN.tmp"
# The wrapper module: require k8s.io/kubernetes and point every staging module (which upstream
# replaces with ./staging/...) at its published tag. The list comes from upstream's own go.mod.
{
  echo "module spawner.dev/e2e-binaries"
  echo
  echo "$go_line"
  [ -n "$godebug_line" ] && echo "$godebug_line"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_gomod" \
    | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > "$work/go.mod"
printf 'package main\n\nfunc main() {}\n' > "$work/main.go"

cd "$work"
log "downloading modules (a few hundred MB on a cold machine)"
go mod download k8s.io/kubernetes || true

ld_version() {
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
      "$pkg" "$KUBE_VERSION" "$pkg" "$pkg" "$minor" "$pkg"
  done
}
ldflags="-s -w $(ld_version)"

for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$BIN/$cmd" ] && continue
  log "building $cmd $KUBE_VERSION (cold: several minutes each on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$BIN.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done

if [ ! -x "$BIN/etcd" ]; then
  etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  log "building etcd $etcd_version (the version Kubernetes $KUBE_VERSION pins)"
  go build -trimpath -ldflags "-s -w" -o "$BIN.tmp/etcd" go.etcd.io/etcd/server/v3
fi

if [ ! -x "$BIN/helm" ]; then
  hwork="$CACHE/build/helm-$HELM_VERSION"
  mkdir -p "$hwork"
  printf 'module spawner.dev/e2e-helm\n\n%s\n\nrequire helm.sh/helm/v3 %s\n' "$go_line" "$HELM_VERSION" > "$hwork/go.mod"
  printf 'package main\n\nfunc main() {}\n' > "$hwork/main.go"
  log "building helm $HELM_VERSION"
  hl="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    hl="$hl -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  (cd "$hwork" && go build -trimpath -ldflags "$hl" -o "$BIN.tmp/helm" helm.sh/helm/v3/cmd/helm)
fi

for b in "${WANT[@]}"; do
  if [ -x "$BIN.tmp/$b" ]; then mkdir -p "$BIN"; mv "$BIN.tmp/$b" "$BIN/$b"; fi
done
rmdir "$BIN.tmp" 2>/dev/null || true
have_all || die "some binaries are missing from $BIN"
"$BIN/kube-apiserver" --version >&2
"$BIN/helm" version --short >&2
log "done: $BIN"
echo "$BIN"
