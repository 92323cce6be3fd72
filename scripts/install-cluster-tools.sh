#!/usr/bin/env bash
# Builds the binaries of the test cluster (make test-cluster) from the Go module proxy into
# .tools/<component>-<version>/bin, at the versions in scripts/cluster-versions.env. Skips a component
# whose binaries are present, so only the first run pays the ~10 minute build. One `go build` per module,
# so the packages the binaries share compile once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# CLUSTER_TOOLS_DIR builds elsewhere than the work tree's .tools (e.g. to time a cold build).
TOOLS=${CLUSTER_TOOLS_DIR:-$ROOT/.tools}
# shellcheck source=scripts/cluster-versions.env
. "$ROOT/scripts/cluster-versions.env"

K8S_BIN="$TOOLS/k8s-$KUBERNETES_VERSION/bin"
ETCD_BIN="$TOOLS/etcd-$ETCD_VERSION/bin"
COREDNS_BIN="$TOOLS/coredns-$COREDNS_VERSION/bin"
KWOK_BIN="$TOOLS/kwok-$KWOK_VERSION/bin"
# CoreDNS compiled with just these plugins (its plugin.cfg), which keeps the cloud SDKs out of the build.
COREDNS_PLUGINS=(bind errors log cache kubernetes)
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

usage() {
  cat <<USAGE
Usage: scripts/install-cluster-tools.sh [--help | --print-dirs]

Builds with Go (module proxy) the test cluster's binaries:
  k8s.io/kubernetes       $KUBERNETES_VERSION  ${K8S_COMMANDS[*]}  -> ${K8S_BIN#"$ROOT/"}
  go.etcd.io/etcd/server  $ETCD_VERSION  etcd  -> ${ETCD_BIN#"$ROOT/"}
  github.com/coredns      $COREDNS_VERSION  coredns (plugins: ${COREDNS_PLUGINS[*]})  -> ${COREDNS_BIN#"$ROOT/"}
  sigs.k8s.io/kwok        $KWOK_VERSION  kwok  -> ${KWOK_BIN#"$ROOT/"}
--print-dirs prints the bin folders, one a line, and builds nothing.
CLUSTER_TOOLS_DIR (default .tools) is where they go.
USAGE
}

die() { echo "install-cluster-tools.sh: $*" >&2; exit 1; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --print-dirs) printf '%s\n' "$K8S_BIN" "$ETCD_BIN" "$COREDNS_BIN" "$KWOK_BIN"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

command -v go >/dev/null 2>&1 || die "'go' is not installed; the cluster binaries are built from source"
export GOWORK=off GOFLAGS=-mod=mod

all_present() {
  local dir=$1 cmd; shift
  for cmd in "$@"; do [ -x "$dir/$cmd" ] || return 1; done
}

# module_copy MODULE@VERSION DEST: a writable copy of the module (the module cache is read-only),
# without the vendor/ folder and go.work, which point at sources the published module does not have.
module_copy() {
  local json dir
  json=$(cd "$TOOLS" && go mod download -json "$1") || die "could not download $1; is the Go module proxy reachable?"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  [ -d "$dir" ] || die "go mod download $1 gave no folder"
  rm -rf "$2"
  mkdir -p "$2"
  tar -C "$dir" --exclude=./vendor --exclude=./go.work --exclude=./go.work.sum -cf - . | tar -C "$2" -xf -
  chmod -R u+w "$2"
}

# drop_local_replaces GO_MOD: removes `replace X => ../path` lines and blocks (local staging folders).
drop_local_replaces() {
  local mods
  mods=$(awk '/^replace \(/{b=1;next} b&&/^\)/{b=0;next} b&&/=> \.\.?\//{print $1} /^replace [^(].*=> \.\.?\//{print $2}' "$1")
  local m
  for m in $mods; do (cd "$(dirname "$1")" && go mod edit -dropreplace="$m"); done
}

build_kubernetes() {
  if all_present "$K8S_BIN" "${K8S_COMMANDS[@]}"; then
    echo "cluster tools: kubernetes $KUBERNETES_VERSION present"; return
  fi
  echo "cluster tools: building kubernetes $KUBERNETES_VERSION (${K8S_COMMANDS[*]}), ~10 minutes cold"
  local src="$TOOLS/build/kubernetes-$KUBERNETES_VERSION"
  module_copy "k8s.io/kubernetes@$KUBERNETES_VERSION" "$src"
  drop_local_replaces "$src/go.mod"
  # The staging modules are required as v0.0.0 (replaced by ./staging in the repository); the
  # published ones are v0.<minor>.<patch> of the same release.
  local staging="v0.${KUBERNETES_VERSION#v1.}" m
  while read -r m; do
    (cd "$src" && go mod edit -require="$m@$staging")
  done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$src/go.mod")
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local stamp="" pkg
  # Without the stamp the servers report v0.0.0 and kubeVersion checks (helm, the chart) fail.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$K8S_BIN"
  local pkgs=()
  for m in "${K8S_COMMANDS[@]}"; do pkgs+=("./cmd/$m"); done
  (cd "$src" && go mod tidy -e >/dev/null 2>&1 || true
   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w$stamp" -o "$K8S_BIN/" "${pkgs[@]}") ||
    die "could not build kubernetes $KUBERNETES_VERSION (sources in $src)"
  rm -rf "$src"
}

build_etcd() {
  if all_present "$ETCD_BIN" etcd; then echo "cluster tools: etcd $ETCD_VERSION present"; return; fi
  echo "cluster tools: building etcd $ETCD_VERSION"
  local src="$TOOLS/build/etcd-server-$ETCD_VERSION"
  module_copy "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$src"
  drop_local_replaces "$src/go.mod"
  mkdir -p "$ETCD_BIN"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd" .) ||
    die "could not build etcd $ETCD_VERSION (sources in $src)"
  rm -rf "$src"
}

build_coredns() {
  if all_present "$COREDNS_BIN" coredns; then echo "cluster tools: coredns $COREDNS_VERSION present"; return; fi
  echo "cluster tools: building coredns $COREDNS_VERSION (${COREDNS_PLUGINS[*]})"
  local src="$TOOLS/build/coredns-$COREDNS_VERSION" plugin
  module_copy "github.com/coredns/coredns@$COREDNS_VERSION" "$src"
  # plugin.cfg lists NAME:PACKAGE in execution order; keep the upstream order of the plugins we want.
  local cfg=""
  while IFS= read -r line; do
    for plugin in "${COREDNS_PLUGINS[@]}"; do
      [ "${line%%:*}" = "$plugin" ] && cfg+="$line"$'\n'
    done
  done <"$src/plugin.cfg"
  printf '%s' "$cfg" >"$src/plugin.cfg"
  mkdir -p "$COREDNS_BIN"
  (cd "$src" && go run directives_generate.go && go mod tidy >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$COREDNS_BIN/coredns" .) ||
    die "could not build coredns $COREDNS_VERSION (sources in $src)"
  rm -rf "$src"
}

build_kwok() {
  if all_present "$KWOK_BIN" kwok; then echo "cluster tools: kwok $KWOK_VERSION present"; return; fi
  echo "cluster tools: building kwok $KWOK_VERSION"
  mkdir -p "$KWOK_BIN"
  # go install MODULE@VERSION builds from the published go.mod as it is (-mod is not allowed there).
  (cd "$TOOLS" && GOFLAGS='' GOBIN="$KWOK_BIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") ||
    die "could not build kwok $KWOK_VERSION"
}

mkdir -p "$TOOLS/build"
build_etcd
build_kubernetes
build_coredns
build_kwok
echo "cluster tools: ready"
