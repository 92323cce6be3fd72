#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers: swaks (SMTP client),
# Postfix's smtp-sink/smtp-source, promtool, shellcheck, yamllint and busybox; and what the test
# cluster (make test-cluster) runs on: containerd, runc, the CNI plugins, iptables, conntrack, and
# buildah and mmdebstrap, which build the image and its base.
# Idempotent: does nothing when every command is already on PATH.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/install-system-packages.sh [--help]

Installs with apt-get (as root, or through sudo) the Debian packages whose
commands the tests need: swaks, smtp-sink, smtp-source, promtool, shellcheck,
yamllint, busybox, containerd, runc, the CNI plugins (/usr/lib/cni), iptables,
conntrack, buildah, mmdebstrap. Commands already present are not reinstalled.
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "install-system-packages.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# command -> Debian package
declare -A PACKAGE_OF=(
  [swaks]=swaks
  [smtp-sink]=postfix
  [smtp-source]=postfix
  [promtool]=prometheus
  [shellcheck]=shellcheck
  [yamllint]=yamllint
  # The chart's `helm test` script runs on busybox; its test runs it on the same shell and nc.
  [busybox]=busybox
  # The test cluster's node and image build (make test-cluster). A path stands for a command
  # that is not on PATH.
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables
  [conntrack]=conntrack
  [buildah]=buildah
  [mmdebstrap]=mmdebstrap
)

missing=()
for cmd in "${!PACKAGE_OF[@]}"; do
  # smtp-sink and smtp-source live in /usr/sbin, which a non-root PATH may lack.
  if [[ $cmd == /* ]]; then
    [ -x "$cmd" ] || missing+=("${PACKAGE_OF[$cmd]}")
  elif ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${PACKAGE_OF[$cmd]}")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-system-packages.sh: need root or sudo to install: ${packages[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi

echo "system packages: installing ${packages[*]}"
# Postfix asks how to configure itself; the tests only use its smtp-sink/smtp-source tools.
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo_cmd[@]}" debconf-set-selections
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "system packages: installed ${packages[*]}"
