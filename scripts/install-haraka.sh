#!/usr/bin/env bash
# Installs Haraka, the benchmark's side-by-side peer (`make bench`), at a pinned version into
# .tools/haraka-VERSION (git-ignored) from the npm registry. Not a dependency of the gateway or
# of the test command: only the benchmark runs it. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Keep in step with HARAKA_VERSION in bench/lib/haraka.ts, which a bench test compares with this line.
HARAKA_VERSION=3.3.4
DIR="$ROOT/.tools/haraka-$HARAKA_VERSION"

case "${1:-}" in
  -h | --help)
    echo "Usage: scripts/install-haraka.sh   installs Haraka $HARAKA_VERSION into ${DIR#"$ROOT/"} (npm)"
    exit 0
    ;;
  "") ;;
  *) echo "install-haraka.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

if [ -x "$DIR/node_modules/.bin/haraka" ] &&
  [ "$(node -p "require('$DIR/node_modules/Haraka/package.json').version")" = "$HARAKA_VERSION" ]; then
  echo "haraka: $HARAKA_VERSION present"
  exit 0
fi
echo "haraka: installing $HARAKA_VERSION into ${DIR#"$ROOT/"}"
mkdir -p "$DIR"
# --ignore-scripts: the only install script is an optional syslog addon the benchmark does not load.
npm install --prefix "$DIR" --no-audit --no-fund --no-save --ignore-scripts "Haraka@$HARAKA_VERSION" >/dev/null ||
  { echo "install-haraka.sh: npm could not install Haraka@$HARAKA_VERSION" >&2; exit 1; }
echo "haraka: $HARAKA_VERSION installed"
