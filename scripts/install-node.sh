#!/usr/bin/env bash
# Installs the Node.js that every build and test runs on, at the version pinned in .nvmrc, into
# .tools/node-VERSION (git-ignored), and points .tools/node at it. The binary comes from the npm
# package node-linux-<arch> (the official build, shipped through the npm registry), so a machine
# needs only some Node.js with npm to bootstrap it. The Dockerfile's image tag and package.json's
# engines name the same version; scripts/test/node-version.test.ts checks that they agree.
# Idempotent: a second run finds the pinned version and returns at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

usage() {
  cat <<USAGE
Usage: scripts/install-node.sh [--help]

Installs Node.js $(cat "$ROOT/.nvmrc" 2>/dev/null || echo '(see .nvmrc)') from the npm package
node-linux-<arch> into ${TOOLS#"$ROOT/"}/node-VERSION and links ${TOOLS#"$ROOT/"}/node to it.
The Makefile puts ${TOOLS#"$ROOT/"}/node/bin first on PATH for every target.
Needs: npm (any version), tar.
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "install-node.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "install-node.sh: $*" >&2; exit 1; }

version=$(tr -d '[:space:]' <"$ROOT/.nvmrc")
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die ".nvmrc must hold an exact version like 24.22.3, found '$version'"

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) die "no node-linux package for this machine's architecture '$(uname -m)' (x86_64 and aarch64 are supported)" ;;
esac

dir="$TOOLS/node-$version"
if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version)" = "v$version" ]; then
  ln -sfn "node-$version" "$TOOLS/node"
  echo "node: $version present"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed to fetch node-linux-$arch@$version; install any Node.js with npm first"
echo "node: installing $version (npm package node-linux-$arch@$version)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack checks the tarball against the registry's integrity hash.
(cd "$work" && npm pack --silent "node-linux-$arch@$version" >/dev/null) ||
  die "could not fetch node-linux-$arch@$version from the npm registry"
tar -xzf "$work"/node-linux-"$arch"-"$version".tgz -C "$work" package/bin/node package/LICENSE
mkdir -p "$dir/bin"
mv "$work/package/bin/node" "$dir/bin/node"
mv "$work/package/LICENSE" "$dir/LICENSE"
got=$("$dir/bin/node" --version) || die "the downloaded node does not run on this machine"
[ "$got" = "v$version" ] || die "node-linux-$arch@$version contains node $got"
ln -sfn "node-$version" "$TOOLS/node"
echo "node: $version installed in ${dir#"$ROOT/"}"
