#!/usr/bin/env bash
# Deletes the smtp-gateway staging environment: scripts/cleanup.sh staging with the same arguments.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --help "* | *" -h "*)
    echo "Usage: $(basename "$0") [COMMAND] [OPTIONS]   (= scripts/cleanup.sh staging [COMMAND] [OPTIONS])"
    echo
    ;;
esac
exec "$SCRIPTS/cleanup.sh" staging "$@"
