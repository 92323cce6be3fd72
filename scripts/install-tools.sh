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

usage() {
  cat <<USAGE
Usage: scripts/install-tools.sh [--help]

Installs into $TOOLS:
  helm           $HELM_VERSION   (go install helm.sh/helm/v3/cmd/helm)
  helm-unittest  $HELM_UNITTEST_VERSION   (as the helm plugin 'unittest')
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

# go_install NAME MODULE_PATH VERSION: builds a Go command into $BIN.
go_install() {
  local name=$1 module=$2 version=$3
  if installed "$name" "$version" && [ -x "$BIN/$name" ]; then
    echo "tools: $name $version present"
    return
  fi
  echo "tools: building $name $version"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$module@$version" ||
    die "could not build $name ($module@$version); is the Go module proxy reachable?"
  stamp "$name" "$version"
}

install_helm() {
  go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
}

# helm-unittest is a helm plugin: a folder with plugin.yaml under HELM_PLUGINS.
install_helm_unittest() {
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

main() {
  require go "install Go (https://go.dev/doc/install); the tools are built from source"
  require git "install git; go install needs it for module metadata"
  mkdir -p "$BIN"
  install_helm
  install_helm_unittest
  echo "tools: ready in $BIN"
}

main
