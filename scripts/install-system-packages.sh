#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers: swaks (SMTP client) with the Perl modules
# for its STARTTLS and AUTH, Postfix's smtp-sink/smtp-source, promtool, shellcheck, yamllint and busybox;
# and what the test cluster (make test-cluster) runs on and builds its images with.
# Checks what each tool can do, not only that its command exists: Debian installs swaks without TLS and
# SASL when recommends are skipped, and the tests then fail far from the cause. Idempotent: a machine
# that passes every check installs nothing.
set -euo pipefail

PROG=install-system-packages.sh

usage() {
  cat <<'USAGE'
Usage: scripts/install-system-packages.sh [--check] [--help]

Installs with apt-get (as root, or through sudo) the Debian packages whose commands
and capabilities the tests need, then checks every capability:
  swaks                 swaks, with STARTTLS (libnet-ssleay-perl, libio-socket-ssl-perl)
                        and AUTH: PLAIN, LOGIN, CRAM-MD5, DIGEST-MD5 (libauthen-sasl-perl)
  smtp-sink, smtp-source  postfix
  promtool              prometheus (check metrics, check rules, test rules)
  shellcheck, yamllint  shellcheck, yamllint
  busybox               busybox, with the sh and nc applets the chart's helm test uses
  the test cluster      containerd, runc, containernetworking-plugins (/usr/lib/cni), iptables,
                        conntrack; buildah and mmdebstrap for the images (make test-cluster)
A machine that passes every check installs nothing.

  --check   only check; exit 1 naming each missing capability and the package that brings it
USAGE
}

mode=install
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --check) mode=check ;;
  "") ;;
  *) echo "$PROG: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# smtp-sink and smtp-source live in /usr/sbin, which a non-root PATH may lack.
has_command() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

# swaks_supports NAME: swaks --support lists "=== NAME supported" for what its Perl modules allow
# (and "*** NAME not available: requires Module" otherwise).
# (Output captured first: grep -q closing the pipe early would fail the pipeline under pipefail.)
swaks_supports() {
  local support
  support=$(swaks --support 2>&1 || true)
  grep -qx "=== $1 supported" <<<"$support"
}

busybox_has() {
  local applets
  applets=$(busybox --list 2>/dev/null || true)
  grep -qx "$1" <<<"$applets"
}

promtool_can() { promtool "$@" --help >/dev/null 2>&1; }

# Each check: a description, the Debian packages that bring it, and the test of it (a shell command).
CHECKS=(
  "swaks command|swaks|has_command swaks"
  "swaks STARTTLS (swaks --support: TLS)|swaks libnet-ssleay-perl libio-socket-ssl-perl|has_command swaks && swaks_supports TLS"
  "swaks AUTH PLAIN/LOGIN (swaks --support: Basic AUTH)|swaks|has_command swaks && swaks_supports 'Basic AUTH'"
  "swaks AUTH DIGEST-MD5 (swaks --support: AUTH DIGEST-MD5)|swaks libauthen-sasl-perl|has_command swaks && swaks_supports 'AUTH DIGEST-MD5'"
  "smtp-sink command|postfix|has_command smtp-sink"
  "smtp-source command|postfix|has_command smtp-source"
  "promtool check metrics|prometheus|has_command promtool && promtool_can check metrics"
  "promtool check rules|prometheus|has_command promtool && promtool_can check rules"
  "promtool test rules|prometheus|has_command promtool && promtool_can test rules"
  "shellcheck command|shellcheck|has_command shellcheck && shellcheck --version >/dev/null"
  "yamllint command|yamllint|has_command yamllint && yamllint --version >/dev/null"
  "busybox sh applet|busybox|has_command busybox && busybox_has sh"
  "busybox nc applet|busybox|has_command busybox && busybox_has nc"
  "containerd (the test cluster's runtime)|containerd|has_command containerd && has_command ctr"
  "runc|runc|has_command runc"
  "CNI bridge, host-local, portmap and loopback plugins|containernetworking-plugins|[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/portmap ] && [ -x /usr/lib/cni/loopback ]"
  "iptables and ip6tables (kube-proxy, CNI)|iptables|has_command iptables && has_command ip6tables"
  "conntrack|conntrack|has_command conntrack"
  "buildah (builds gateway/Dockerfile)|buildah|has_command buildah"
  "mmdebstrap (the Debian base of the images)|mmdebstrap|has_command mmdebstrap"
)

# check_all: prints one line per failed check ("what: install PACKAGES") and fails if there was one.
check_all() {
  local entry what packages test failed=0
  for entry in "${CHECKS[@]}"; do
    IFS='|' read -r what packages test <<<"$entry"
    if ! eval "$test"; then
      echo "  missing: $what (Debian packages: $packages)"
      failed=1
    fi
  done
  return "$failed"
}

# missing_packages: the packages of every failed check, one per line, sorted and unique.
missing_packages() {
  local entry what packages test list
  for entry in "${CHECKS[@]}"; do
    IFS='|' read -r what packages test <<<"$entry"
    read -ra list <<<"$packages"
    eval "$test" || printf '%s\n' "${list[@]}"
  done | sort -u
}

if [ "$mode" = check ]; then
  if problems=$(check_all); then
    echo "system packages: every capability the tests need is present"
    exit 0
  fi
  echo "$PROG: this machine lacks what the tests need:" >&2
  echo "$problems" >&2
  echo "run scripts/install-system-packages.sh (make tools) as root or with sudo to install them" >&2
  exit 1
fi

mapfile -t packages < <(missing_packages)
if [ ${#packages[@]} -eq 0 ]; then
  echo "system packages: all present, every capability checked"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "$PROG: need root or sudo to install: ${packages[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi

echo "system packages: installing ${packages[*]}"
# Postfix asks how to configure itself; the tests only use its smtp-sink/smtp-source tools.
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo_cmd[@]}" debconf-set-selections
"${sudo_cmd[@]}" apt-get update -qq
# Recommends stay off (they would pull in a mail server's worth); what the tests need is listed above.
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if ! problems=$(check_all); then
  echo "$PROG: installed ${packages[*]}, but the tests' needs are still not met:" >&2
  echo "$problems" >&2
  exit 1
fi
echo "system packages: installed ${packages[*]}; every capability checked"
