#!/usr/bin/env bash
# Deploys smtp-gateway to production: scripts/deploy.sh production with the same arguments.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --help "* | *" -h "*)
    echo "Usage: $(basename "$0") [COMMAND] [OPTIONS]   (= scripts/deploy.sh production [COMMAND] [OPTIONS])"
    echo
    ;;
esac
exec "$SCRIPTS/deploy.sh" production "$@"
