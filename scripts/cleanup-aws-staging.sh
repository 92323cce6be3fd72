#!/usr/bin/env bash
# Deletes the smtp-gateway staging environment: scripts/cleanup.sh staging with the same arguments.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --help "* | *" -h "*)
    echo "Usage: $(basename "$0") [OPTIONS]   (= scripts/cleanup.sh staging [OPTIONS])"
    echo
    ;;
esac
exec "$SCRIPTS/cleanup.sh" staging "$@"
