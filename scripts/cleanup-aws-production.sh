#!/usr/bin/env bash
# Deletes the smtp-gateway production environment: scripts/cleanup.sh production with the same arguments.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --help "* | *" -h "*)
    echo "Usage: $(basename "$0") [OPTIONS]   (= scripts/cleanup.sh production [OPTIONS])"
    echo
    ;;
esac
exec "$SCRIPTS/cleanup.sh" production "$@"
