#!/usr/bin/env bash
# Deploys smtp-gateway to staging: scripts/deploy.sh staging with the same arguments.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case " $* " in
  *" --help "* | *" -h "*)
    echo "Usage: $(basename "$0") [COMMAND] [OPTIONS]   (= scripts/deploy.sh staging [COMMAND] [OPTIONS])"
    echo
    ;;
esac
exec "$SCRIPTS/deploy.sh" staging "$@"
