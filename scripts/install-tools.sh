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

HELM_VERSION=v4.3.2
HELM_UNITTEST_VERSION=v1.0.1
ACTIONLINT_VERSION=v1.7.12
# eksctl v0.230.0 (2026-08-13) is the newest release the Go module proxy serves; it knows Kubernetes up
# to 1.35, which the cluster files run.
EKSCTL_VERSION=v0.230.0
KUBECONFORM_VERSION=v0.6.7
# The chart is validated against the Kubernetes schemas of its kubeVersion floor (Chart.yaml ">=1.28")
# and of the version the EKS clusters run (eksctl/*.yaml metadata.version), each at the newest patch the
# k8s.io/kubernetes module has; the ServiceMonitor and PrometheusRule CRDs come from the prometheus-operator module.
K8S_FLOOR_SCHEMA_VERSION=v1.28.15
K8S_CLUSTER_SCHEMA_VERSION=v1.35.4
PROMETHEUS_OPERATOR_VERSION=v0.85.0
SCHEMAS="$TOOLS/schemas"
# Versioned paths: several work trees may share one tools folder at different pins.
EKSCTL_SCHEMA="$SCHEMAS/eksctl-$EKSCTL_VERSION-clusterconfig.schema.json"
EKSCTL_KUBERNETES_VERSIONS="$SCHEMAS/eksctl-$EKSCTL_VERSION-kubernetes-versions.json"
k8s_schemas_dir() { echo "$SCHEMAS/kubernetes-$1-strict"; }

usage() {
  cat <<USAGE
Usage: scripts/install-tools.sh [--versions | --help]

Installs into $TOOLS:
  helm           $HELM_VERSION   (go install helm.sh/helm/v4/cmd/helm)
  helm-unittest  $HELM_UNITTEST_VERSION   (as the helm plugin 'unittest')
  actionlint     $ACTIONLINT_VERSION  (go install github.com/rhysd/actionlint/cmd/actionlint)
  eksctl schema  $EKSCTL_VERSION  (pkg/apis/eksctl.io/v1alpha5/assets/schema.json from the eksctl
                 Go module, to ${EKSCTL_SCHEMA#"$ROOT/"}, and the Kubernetes
                 versions its types.go knows, to ${EKSCTL_KUBERNETES_VERSIONS#"$ROOT/"})
  kubeconform    $KUBECONFORM_VERSION   (go install github.com/yannh/kubeconform/cmd/kubeconform)
  k8s schemas    $K8S_FLOOR_SCHEMA_VERSION (the chart's kubeVersion floor) and $K8S_CLUSTER_SCHEMA_VERSION (the EKS clusters):
                 strict per-kind JSON schemas from k8s.io/kubernetes api/openapi-spec plus the
                 ServiceMonitor and PrometheusRule CRDs of prometheus-operator $PROMETHEUS_OPERATOR_VERSION, to
                 ${SCHEMAS#"$ROOT/"}/kubernetes-VERSION-strict
Needs: go (with the Go module proxy reachable), git.
--versions prints the pinned versions as KEY=VALUE lines (the tests read them) and installs nothing.
Put the tools on PATH with:  export PATH="$BIN:\$PATH" HELM_PLUGINS="$TOOLS/helm-plugins"
(the Makefile does this for every target).
USAGE
}

print_versions() {
  local key
  for key in HELM_VERSION HELM_UNITTEST_VERSION ACTIONLINT_VERSION EKSCTL_VERSION KUBECONFORM_VERSION \
    K8S_FLOOR_SCHEMA_VERSION K8S_CLUSTER_SCHEMA_VERSION PROMETHEUS_OPERATOR_VERSION; do
    echo "$key=${!key}"
  done
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --versions) print_versions; exit 0 ;;
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

# helm's own Makefile stamps its version at link time; a bare `go install` would
# report "v4.3". Helm 4 reads the Kubernetes version it assumes (client-go's, +1
# major) from the binary's build info, so `helm template` and `helm lint` accept
# the chart's kubeVersion ">=1.28.0-0" without link flags for it.
install_helm() {
  local flags=(
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
    "-X helm.sh/helm/v4/internal/version.metadata="
  )
  go_install helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" "${flags[*]}"
}

# helm-unittest is a helm plugin: a folder with plugin.yaml under HELM_PLUGINS, written in
# helm 4's own plugin format (apiVersion v1, a cli/v1 subprocess) rather than the deprecated
# legacy one with a bare `command`. The command is found from the plugin's own folder, so a tools folder
# shared by several work trees does not depend on the one that wrote it.
install_helm_unittest() {
  # The checksum database has no entry for helm-unittest v1.0.1 (its lookup
  # answers 404), so that one module is verified by its pinned version only.
  GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/helm-unittest/helm-unittest" \
    go_install helm-unittest github.com/helm-unittest/helm-unittest/cmd/helm-unittest "$HELM_UNITTEST_VERSION"
  local dir="$TOOLS/helm-plugins/unittest"
  mkdir -p "$dir"
  cat >"$dir/plugin.yaml" <<PLUGIN
apiVersion: v1
type: cli/v1
name: "unittest"
version: "${HELM_UNITTEST_VERSION#v}"
runtime: subprocess
config:
  usage: "unittest [flags] CHART [...]"
  shortHelp: "unit test for helm charts"
  longHelp: "helm-unittest, built from source by scripts/install-tools.sh"
  ignoreFlags: false
runtimeConfig:
  platformCommand:
    - command: "\${HELM_PLUGIN_DIR}/../../bin/helm-unittest"
PLUGIN
}

install_actionlint() {
  go_install actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
}

# go_module_dir MODULE@VERSION: downloads a module through the proxy (cached) and prints its folder.
go_module_dir() {
  local json
  # Outside any Go module, so the download does not touch a go.mod.
  json=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$1") ||
    die "could not download $1; is the Go module proxy reachable?"
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json"
}

# eksctl's JSON schema for ClusterConfig ships inside its Go module, so the proxy serves it at a pinned
# version without building eksctl (which this machine could not run anyway: it needs AWS). Its schema
# leaves metadata.version a free string, so the Kubernetes versions eksctl knows (the Version1_NN
# constants of types.go, and its DefaultVersion) are written beside it for the cluster files' tests.
install_eksctl_schema() {
  if installed "eksctl-schema-$EKSCTL_VERSION" "$EKSCTL_VERSION" && [ -f "$EKSCTL_SCHEMA" ] && [ -f "$EKSCTL_KUBERNETES_VERSIONS" ]; then
    echo "tools: eksctl schema $EKSCTL_VERSION present"
    return
  fi
  echo "tools: fetching eksctl schema $EKSCTL_VERSION"
  local dir
  dir=$(go_module_dir "github.com/weaveworks/eksctl@$EKSCTL_VERSION")
  local schema="$dir/pkg/apis/eksctl.io/v1alpha5/assets/schema.json"
  local types="$dir/pkg/apis/eksctl.io/v1alpha5/types.go"
  [ -f "$schema" ] || die "eksctl $EKSCTL_VERSION has no schema at $schema"
  [ -f "$types" ] || die "eksctl $EKSCTL_VERSION has no $types"
  local known default
  known=$(sed -n -E 's/^[[:space:]]*Version1_[0-9]+[[:space:]]*=[[:space:]]*"([0-9.]+)".*/"\1"/p' "$types" | paste -sd, -)
  default=$(sed -n -E 's/^[[:space:]]*DefaultVersion[[:space:]]*=[[:space:]]*Version([0-9]+)_([0-9]+).*/"\1.\2"/p' "$types")
  if [ -z "$known" ] || [ -z "$default" ]; then
    die "could not read the Kubernetes versions from eksctl $EKSCTL_VERSION's $types"
  fi
  mkdir -p "$SCHEMAS"
  cp "$schema" "$EKSCTL_SCHEMA"
  chmod 644 "$EKSCTL_SCHEMA"
  printf '{"eksctl":"%s","known":[%s],"default":%s}\n' "$EKSCTL_VERSION" "$known" "$default" >"$EKSCTL_KUBERNETES_VERSIONS"
  stamp "eksctl-schema-$EKSCTL_VERSION" "$EKSCTL_VERSION"
}

install_kubeconform() {
  go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
}

# install_k8s_schemas VERSION: strict per-kind schemas for kubeconform, converted by
# scripts/k8s-json-schemas.mjs (needs node_modules).
install_k8s_schemas() {
  local version=$1 out
  out=$(k8s_schemas_dir "$version")
  local want="$version+$PROMETHEUS_OPERATOR_VERSION"
  if installed "k8s-schemas-$version" "$want" && [ -f "$out/deployment-apps-v1.json" ]; then
    echo "tools: kubernetes $version schemas present"
    return
  fi
  require node "run scripts/install-node.sh (make deps) first; node converts the OpenAPI spec to JSON schemas"
  [ -d "$ROOT/node_modules/yaml" ] || die "node_modules/yaml is missing; run 'make deps' first"
  echo "tools: fetching kubernetes $version and prometheus-operator $PROMETHEUS_OPERATOR_VERSION schemas"
  local k8s po
  k8s=$(go_module_dir "k8s.io/kubernetes@$version")
  po=$(go_module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  local swagger="$k8s/api/openapi-spec/swagger.json"
  [ -f "$swagger" ] || die "k8s.io/kubernetes@$version has no $swagger"
  # The two prometheus-operator kinds the chart renders: ServiceMonitor and PrometheusRule.
  local crds=() kind
  for kind in servicemonitors prometheusrules; do
    crds+=("$po/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml")
    [ -f "${crds[-1]}" ] || die "prometheus-operator@$PROMETHEUS_OPERATOR_VERSION has no ${crds[-1]}"
  done
  rm -rf "$out"
  node "$ROOT/scripts/k8s-json-schemas.mjs" "$out" "$swagger" "${crds[@]}" ||
    die "could not convert the kubernetes $version schemas"
  stamp "k8s-schemas-$version" "$want"
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
  install_k8s_schemas "$K8S_FLOOR_SCHEMA_VERSION"
  install_k8s_schemas "$K8S_CLUSTER_SCHEMA_VERSION"
  echo "tools: ready in $BIN"
}

main
