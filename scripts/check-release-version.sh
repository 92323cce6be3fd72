#!/usr/bin/env bash
# Checks that a release tag names the version the release carries: the tag (v1.2.3) must equal
# package.json's version (the gateway and its image) and Chart.yaml's version and appVersion (the
# chart, which `make synth` writes from package.json; a stale committed chart would differ). Without a
# tag (a release started by hand) it checks that the three agree. Run by .github/workflows/release.yaml
# before anything is built.
set -euo pipefail

PROG=check-release-version.sh
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART_YAML=charts/smtp-gateway/Chart.yaml

case "${1:-}" in
  -h | --help)
    cat <<USAGE
Usage: scripts/$PROG [TAG]

TAG (e.g. v0.1.0) must be 'v' followed by package.json's version, which must equal $CHART_YAML's
version and appVersion. Without TAG only the last two checks run. Exit 1 names each mismatch with
both values.
USAGE
    exit 0
    ;;
esac
[ $# -le 1 ] || { echo "$PROG: expected at most one argument, the tag (try --help)" >&2; exit 2; }
tag=${1:-}

# field FILE SED_EXPRESSION: the first value the expression prints, without surrounding quotes.
field() {
  local value
  value=$(sed -n -E "$2" "$ROOT/$1" | head -n 1)
  value=${value#\"}
  echo "${value%\"}"
}

package_version=$(field package.json 's/^  "version": "([^"]*)",?$/\1/p')
chart_version=$(field "$CHART_YAML" 's/^version:[[:space:]]*(.*)$/\1/p')
app_version=$(field "$CHART_YAML" 's/^appVersion:[[:space:]]*(.*)$/\1/p')

problems=()
[ -n "$package_version" ] || problems+=("package.json has no version")
[ "$chart_version" = "$package_version" ] ||
  problems+=("$CHART_YAML version is '$chart_version' but package.json version is '$package_version' (run make synth and commit the chart)")
[ "$app_version" = "$package_version" ] ||
  problems+=("$CHART_YAML appVersion is '$app_version' but package.json version is '$package_version' (run make synth and commit the chart)")
if [ -n "$tag" ] && [ "$tag" != "v$package_version" ]; then
  problems+=("tag is '$tag' but package.json version is '$package_version' (expected tag 'v$package_version')")
fi

if [ ${#problems[@]} -gt 0 ]; then
  printf '%s: %s\n' "$PROG" "${problems[@]}" >&2
  exit 1
fi
echo "release version ${package_version}${tag:+ (tag $tag)}: package.json, Chart.yaml version and appVersion agree"
