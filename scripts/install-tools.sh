#!/usr/bin/env bash
# Installs the project's pinned command-line tools into .tools/ (git-ignored),
# built from source through the Go module proxy so every machine gets the same
# versions. Idempotent: a tool already at its pinned version is skipped, so a
# second run takes seconds. Add a tool as one `install_*` function below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/stamps"

HELM_VERSION=v3.22.0
HELM_UNITTEST_VERSION=v1.0.1
ACTIONLINT_VERSION=v1.7.12
EKSCTL_VERSION=v0.215.0
EKSCTL_SCHEMA="$TOOLS/schemas/eksctl-clusterconfig.schema.json"
KUBECONFORM_VERSION=v0.6.7
# Kubernetes schemas come from the k8s.io/kubernetes module's OpenAPI spec at the
# cluster's minor version; the ServiceMonitor CRD from the prometheus-operator module.
K8S_SCHEMA_VERSION=v1.28.15
PROMETHEUS_OPERATOR_VERSION=v0.75.2
K8S_SCHEMAS="$TOOLS/schemas/kubernetes-${K8S_SCHEMA_VERSION}-strict"

usage() {
  cat <<USAGE
Usage: scripts/install-tools.sh [--help]

Installs into $TOOLS:
  helm           $HELM_VERSION   (go install helm.sh/helm/v3/cmd/helm)
  helm-unittest  $HELM_UNITTEST_VERSION   (as the helm plugin 'unittest')
  actionlint     $ACTIONLINT_VERSION  (go install github.com/rhysd/actionlint/cmd/actionlint)
  eksctl schema  $EKSCTL_VERSION  (pkg/apis/eksctl.io/v1alpha5/assets/schema.json from the eksctl
                 Go module, to ${EKSCTL_SCHEMA#"$ROOT/"})
  kubeconform    $KUBECONFORM_VERSION   (go install github.com/yannh/kubeconform/cmd/kubeconform)
  k8s schemas    $K8S_SCHEMA_VERSION  strict per-kind JSON schemas from k8s.io/kubernetes api/openapi-spec
                 plus the ServiceMonitor CRD of prometheus-operator $PROMETHEUS_OPERATOR_VERSION,
                 to ${K8S_SCHEMAS#"$ROOT/"}
Needs: go (with the Go module proxy reachable), git.
Put the tools on PATH with:  export PATH="$BIN:\$PATH" HELM_PLUGINS="$TOOLS/helm-plugins"
(the Makefile does this for every target).
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "install-tools.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "install-tools.sh: $*" >&2; exit 1; }

require() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"
}

# installed NAME VERSION: true when NAME was installed at VERSION by this script.
installed() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }

# go_install NAME MODULE_PATH VERSION [LDFLAGS]: builds a Go command into $BIN.
go_install() {
  local name=$1 module=$2 version=$3 ldflags=${4:-}
  # The stamp covers the link flags too, so changing them rebuilds the tool.
  local build="$version${ldflags:+ $ldflags}"
  if installed "$name" "$build" && [ -x "$BIN/$name" ]; then
    echo "tools: $name $version present"
    return
  fi
  echo "tools: building $name $version"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install ${ldflags:+-ldflags "$ldflags"} "$module@$version" ||
    die "could not build $name ($module@$version); is the Go module proxy reachable?"
  stamp "$name" "$build"
}

# helm's own Makefile stamps its version and the Kubernetes version of its
# client-go (+1 major, as it does) at link time; a bare `go install` would leave
# helm assuming Kubernetes v1.20, so `helm template` and `helm lint` would refuse
# the chart's kubeVersion ">=1.28.0-0". The values match helm v3.22.0's release.
HELM_KUBE_MAJOR=1
HELM_KUBE_MINOR=37
install_helm() {
  local flags=(
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    "-X helm.sh/helm/v3/internal/version.metadata="
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_KUBE_MAJOR"
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_KUBE_MAJOR"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR"
  )
  go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "${flags[*]}"
}

# helm-unittest is a helm plugin: a folder with plugin.yaml under HELM_PLUGINS.
install_helm_unittest() {
  # The checksum database has no entry for helm-unittest v1.0.1 (its lookup
  # answers 404), so that one module is verified by its pinned version only.
  GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/helm-unittest/helm-unittest" \
    go_install helm-unittest github.com/helm-unittest/helm-unittest/cmd/helm-unittest "$HELM_UNITTEST_VERSION"
  local dir="$TOOLS/helm-plugins/unittest"
  mkdir -p "$dir"
  cat >"$dir/plugin.yaml" <<PLUGIN
name: "unittest"
version: "${HELM_UNITTEST_VERSION#v}"
usage: "unit test for helm charts"
description: "helm-unittest, built from source by scripts/install-tools.sh"
ignoreFlags: false
command: "$BIN/helm-unittest"
PLUGIN
}

install_actionlint() {
  go_install actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
}

# eksctl's JSON schema for ClusterConfig ships inside its Go module, so the proxy serves it at a pinned
# version without building eksctl (which this machine could not run anyway: it needs AWS).
install_eksctl_schema() {
  if installed eksctl-schema "$EKSCTL_VERSION" && [ -f "$EKSCTL_SCHEMA" ]; then
    echo "tools: eksctl schema $EKSCTL_VERSION present"
    return
  fi
  echo "tools: fetching eksctl schema $EKSCTL_VERSION"
  local json dir
  # Outside any Go module, so the download does not touch a go.mod.
  json=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "github.com/weaveworks/eksctl@$EKSCTL_VERSION") ||
    die "could not download github.com/weaveworks/eksctl@$EKSCTL_VERSION; is the Go module proxy reachable?"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  local schema="$dir/pkg/apis/eksctl.io/v1alpha5/assets/schema.json"
  [ -f "$schema" ] || die "eksctl $EKSCTL_VERSION has no schema at $schema"
  mkdir -p "$(dirname "$EKSCTL_SCHEMA")"
  cp "$schema" "$EKSCTL_SCHEMA"
  chmod 644 "$EKSCTL_SCHEMA"
  stamp eksctl-schema "$EKSCTL_VERSION"
}

install_kubeconform() {
  go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
}

# go_module_dir MODULE@VERSION: downloads a module through the proxy (cached) and prints its folder.
go_module_dir() {
  local json
  # Outside any Go module, so the download does not touch a go.mod.
  json=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$1") ||
    die "could not download $1; is the Go module proxy reachable?"
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json"
}

# Strict per-kind schemas for kubeconform, converted by scripts/k8s-json-schemas.mjs (needs node_modules).
install_k8s_schemas() {
  local want="$K8S_SCHEMA_VERSION+$PROMETHEUS_OPERATOR_VERSION"
  if installed k8s-schemas "$want" && [ -f "$K8S_SCHEMAS/deployment-apps-v1.json" ]; then
    echo "tools: kubernetes schemas $want present"
    return
  fi
  require node "run scripts/install-node.sh (make deps) first; node converts the OpenAPI spec to JSON schemas"
  [ -d "$ROOT/node_modules/yaml" ] || die "node_modules/yaml is missing; run 'make deps' first"
  echo "tools: fetching kubernetes $K8S_SCHEMA_VERSION and prometheus-operator $PROMETHEUS_OPERATOR_VERSION schemas"
  local k8s po
  k8s=$(go_module_dir "k8s.io/kubernetes@$K8S_SCHEMA_VERSION")
  po=$(go_module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  local swagger="$k8s/api/openapi-spec/swagger.json"
  local crd="$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  [ -f "$swagger" ] || die "k8s.io/kubernetes@$K8S_SCHEMA_VERSION has no $swagger"
  [ -f "$crd" ] || die "prometheus-operator@$PROMETHEUS_OPERATOR_VERSION has no $crd"
  rm -rf "$K8S_SCHEMAS"
  node "$ROOT/scripts/k8s-json-schemas.mjs" "$K8S_SCHEMAS" "$swagger" "$crd" ||
    die "could not convert the kubernetes schemas"
  stamp k8s-schemas "$want"
}

main() {
  require go "install Go (https://go.dev/doc/install); the tools are built from source"
  require git "install git; go install needs it for module metadata"
  mkdir -p "$BIN"
  install_helm
  install_helm_unittest
  install_actionlint
  install_eksctl_schema
  install_kubeconform
  install_k8s_schemas
  echo "tools: ready in $BIN"
}

main
