#!/usr/bin/env bash
# A throw-away one-node Kubernetes for make test-cluster, built here (scripts/install-cluster-tools.sh):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a real kubelet on containerd + runc with
# the bridge CNI plugin, kube-proxy (iptables) and CoreDNS, all on this machine without Docker.
#
# Network rule: the node's address is on a port-less interface this script adds (never loopback, never the
# machine's own interface address), pods and Services get ranges checked against `ip route`, and
# forwarding stays off, so pods reach only the node and each other. `down` stops every process by its
# PID file and removes what `up` made: iptables chains, mounts, CNI state, network namespaces, the
# interfaces. `check-clean` fails when anything is left.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# shellcheck source=scripts/cluster-versions.env
. "$ROOT/scripts/cluster-versions.env"

STATE=${TEST_CLUSTER_STATE:-/tmp/smtp-gateway-test-cluster}
# Ranges from RFC 1918 that the machine does not route (checked by `up`), none of them an overlay's VPC.
NODE_IP=172.31.254.1
POD_CIDR=10.253.0.0/24
POD_GATEWAY=10.253.0.1
SERVICE_CIDR=10.252.0.0/24
DUMMY_IF=sgwtest0
BRIDGE_IF=sgwtestbr0
NODE_NAME=test-node-c
NODE_ZONE=us-east-1c
# The fake second node (kwok, `fake-node add`): scheduled onto, never sent traffic. Its pods' made-up IPs
# come from FAKE_POD_CIDR, which `fake-node add` routes to a blackhole so nothing sent there leaves the machine.
FAKE_NODE_NAME=test-node-d
FAKE_NODE_ZONE=us-east-1d
FAKE_NODE_IP=172.31.254.2
FAKE_POD_CIDR=10.253.1.0/24
APISERVER_PORT=16443
ETCD_PORT=12379
ETCD_PEER_PORT=12380
PAUSE_IMAGE=localhost/pause:test-cluster
BUSYBOX_IMAGE=localhost/busybox:test-cluster
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
K8S_BIN="$TOOLS/k8s-$KUBERNETES_VERSION/bin"
ETCD_BIN="$TOOLS/etcd-$ETCD_VERSION/bin"
COREDNS_BIN="$TOOLS/coredns-$COREDNS_VERSION/bin"
KWOK_BIN="$TOOLS/kwok-$KWOK_VERSION/bin"
KUBECONFIG_FILE="$STATE/admin.kubeconfig"
# `down` keeps the components' logs here (the state folder goes), for a failed run's report.
KEPT_LOGS="$STATE-logs"
CTR_SOCK="$STATE/containerd/containerd.sock"
# Start order; `down` stops them in reverse.
PROCESSES=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns kwok)

usage() {
  cat <<USAGE
Usage: scripts/test-cluster.sh up | down | check-clean | import IMAGE.oci.tar NAME [ALSO_AS] | fake-node add|remove | env | --help

  up           start the cluster (state in $STATE), wait until the node is Ready (at most 120 s)
  down         stop it and remove everything it made; safe to run twice or after a failed up
  check-clean  exit 1 naming whatever is left (processes, interfaces, chains, mounts, namespaces)
  import       load an OCI archive into the node's containerd under NAME (e.g. localhost/smtp-gateway:e2e),
               and under ALSO_AS too when given (the name a deploy script computes)
  fake-node    add: a kwok node $FAKE_NODE_NAME in zone $FAKE_NODE_ZONE (no kubelet: its pods never run and get
               made-up IPs in the blackholed $FAKE_POD_CIDR); remove: its pods, the node and kwok
  env          print the cluster's addresses as shell variables (KUBECONFIG, NODE_IP, ...)
Versions: scripts/cluster-versions.env; binaries: scripts/install-cluster-tools.sh. Needs root.
USAGE
}

die() { echo "test-cluster.sh: $*" >&2; exit 1; }
log() { echo "test-cluster: $*"; }

print_env() {
  cat <<ENV
KUBECONFIG=$KUBECONFIG_FILE
TEST_CLUSTER_STATE=$STATE
NODE_IP=$NODE_IP
NODE_NAME=$NODE_NAME
NODE_ZONE=$NODE_ZONE
FAKE_NODE_NAME=$FAKE_NODE_NAME
FAKE_NODE_ZONE=$FAKE_NODE_ZONE
POD_CIDR=$POD_CIDR
POD_GATEWAY=$POD_GATEWAY
SERVICE_CIDR=$SERVICE_CIDR
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
KUBECTL=$K8S_BIN/kubectl
CONTAINERD_SOCK=$CTR_SOCK
ENV
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every second until it succeeds, at most SECONDS times.
wait_for() {
  local seconds=$1 what=$2 i; shift 2
  for ((i = 0; i < seconds; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$what not ready after ${seconds}s (logs in $KEPT_LOGS once down)"
}

# start NAME COMMAND...: runs COMMAND in the background with its log and PID file in $STATE.
start() {
  local name=$1; shift
  "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name"
}

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_k8s() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

check_prerequisites() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (the kubelet, containerd and iptables need it)"
  local cmd
  for cmd in containerd runc ctr iptables conntrack openssl buildah mmdebstrap ip; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is not installed; run scripts/install-system-packages.sh"
  done
  [ -x /usr/lib/cni/bridge ] || die "the CNI plugins are not installed; run scripts/install-system-packages.sh"
  for cmd in "$ETCD_BIN/etcd" "$COREDNS_BIN/coredns" "$K8S_BIN/kube-apiserver" "$K8S_BIN/kubelet" "$K8S_BIN/kubectl"; do
    [ -x "$cmd" ] || die "$cmd is missing; run scripts/install-cluster-tools.sh"
  done
  [ ! -e "$STATE/pids" ] || [ -z "$(ls -A "$STATE/pids")" ] ||
    die "a cluster is already running from $STATE (run 'scripts/test-cluster.sh down' first)"
  # The node address and the ranges must not be anything the machine reaches already.
  local range
  for range in "$NODE_IP/32" "$FAKE_NODE_IP/32" "$POD_CIDR" "$FAKE_POD_CIDR" "$SERVICE_CIDR"; do
    ! ip -4 route show match "$range" | grep -qv '^default' ||
      die "$range overlaps a route of this machine: $(ip -4 route show match "$range" | grep -v '^default' | head -1)"
    ! ip -4 -o addr show | grep -q "inet ${range%/*}/" || die "$range is an address of this machine already"
  done
  [ "$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)" ] || [ -d /sys/fs/cgroup/memory ] ||
    die "no usable cgroup hierarchy at /sys/fs/cgroup"
}

make_certificates() {
  local pki="$STATE/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=test-cluster-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
  issue() {
    local name=$1 subject=$2 san=${3:-}
    openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
    local ext="$pki/$name.ext"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
    [ -z "$san" ] || echo "subjectAltName=$san" >>"$ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 2 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  }
  issue apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:${SERVICE_CIDR%.0/*}.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # One cluster-admin identity for the components and the tests: this cluster lives for one test run.
  issue admin "/O=system:masters/CN=test-cluster-admin"
  openssl genrsa -out "$pki/service-accounts.key" 2048 2>/dev/null
  openssl rsa -in "$pki/service-accounts.key" -pubout -out "$pki/service-accounts.pub" 2>/dev/null
  cat >"$KUBECONFIG_FILE" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: test-cluster
    cluster:
      server: https://$NODE_IP:$APISERVER_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: admin
    user:
      client-certificate: $pki/admin.crt
      client-key: $pki/admin.key
contexts:
  - name: test-cluster
    context: {cluster: test-cluster, user: admin}
current-context: test-cluster
KUBECONFIG
  chmod 600 "$KUBECONFIG_FILE"
}

add_interfaces() {
  # A pod reaching a Service's pod is routed through the node; `down` puts the setting back.
  cat /proc/sys/net/ipv4/ip_forward >"$STATE/ip_forward.saved"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # A bridge with no ports stands for a dummy interface (this kernel has no dummy module): its address
  # is local to the machine and nothing it carries leaves it.
  ip link add "$DUMMY_IF" type bridge
  ip addr add "$NODE_IP/32" dev "$DUMMY_IF"
  ip link set "$DUMMY_IF" up
}

write_containerd_config() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/state"
  cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE, so a pod may only raise its OOM score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
TOML
  # isGateway puts $POD_GATEWAY on the bridge, so the node (and the test's upstream there) is one hop
  # away. Pods get routes to the node and the Services only, no default route, and no masquerading:
  # they reach nothing beyond this machine.
  cat >"$STATE/cni/net.d/10-test-cluster.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "test-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE_IF",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY" }]],
        "routes": [{ "dst": "$NODE_IP/32" }, { "dst": "$SERVICE_CIDR" }],
        "dataDir": "$STATE/cni/state"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI
}

write_kubelet_config() {
  mkdir -p "$STATE/kubelet"
  echo "nameserver $NODE_IP" >"$STATE/resolv.conf"
  cat >"$STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $STATE/resolv.conf
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
# This machine has cgroup v1, which kubelet 1.35 refuses unless told.
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
serializeImagePulls: false
# The machine's disk is shared: evict only when it is truly full.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 60
YAML
}

# The sandbox and helm-test images, which cannot be pulled here: built once with buildah, cached as OCI archives.
build_support_images() {
  local images="$TOOLS/images"
  mkdir -p "$images"
  bah() { buildah --root "$TOOLS/buildah/root" --runroot "$TOOLS/buildah/run" --storage-driver vfs "$@"; }
  local pause_archive
  pause_archive="$images/pause-$(sha256sum "$ROOT/e2e/pause/pause.go" | cut -c1-12).oci.tar"
  if [ ! -f "$pause_archive" ]; then
    log "building $PAUSE_IMAGE"
    local work ctr
    work=$(mktemp -d)
    (cd "$work" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause "$ROOT/e2e/pause/pause.go") ||
      die "could not build the pause program"
    ctr=$(bah from scratch)
    bah add "$ctr" "$work/pause" /pause >/dev/null
    bah config --entrypoint '["/pause"]' "$ctr"
    bah commit --quiet --rm "$ctr" "$PAUSE_IMAGE" >/dev/null
    bah push --quiet "$PAUSE_IMAGE" "oci-archive:$pause_archive.part:$PAUSE_IMAGE"
    mv "$pause_archive.part" "$pause_archive"
    rm -rf "$work"
  fi
  # busybox from Debian's busybox-static (trixie): the chart's helm test needs sh and nc.
  local busybox_archive="$images/busybox-static-trixie.oci.tar"
  if [ ! -f "$busybox_archive" ]; then
    log "building $BUSYBOX_IMAGE"
    local work ctr
    work=$(mktemp -d)
    mmdebstrap --quiet --variant=extract --include=busybox-static trixie "$work/rootfs" "$DEBIAN_MIRROR" ||
      die "mmdebstrap could not fetch busybox-static from $DEBIAN_MIRROR"
    # trixie is merged-/usr: the package has /usr/bin/busybox only, and the extract variant makes no /bin link.
    # The applet links are made here rather than with `buildah run`, whose re-exec through a sealed memfd
    # failed once under load (EBUSY); the static binary runs on the host to list its applets.
    local applet
    for applet in $("$work/rootfs/usr/bin/busybox" --list); do
      [ -e "$work/rootfs/usr/bin/$applet" ] || ln -s busybox "$work/rootfs/usr/bin/$applet"
    done
    [ -e "$work/rootfs/bin" ] || ln -s usr/bin "$work/rootfs/bin"
    ctr=$(bah from scratch)
    bah add "$ctr" "$work/rootfs" / >/dev/null
    bah config --env PATH=/usr/bin:/bin --cmd sh "$ctr"
    bah commit --quiet --rm "$ctr" "$BUSYBOX_IMAGE" >/dev/null
    bah push --quiet "$BUSYBOX_IMAGE" "oci-archive:$busybox_archive.part:$BUSYBOX_IMAGE"
    mv "$busybox_archive.part" "$busybox_archive"
    rm -rf "$work"
  fi
  SUPPORT_ARCHIVES=("$pause_archive:$PAUSE_IMAGE" "$busybox_archive:$BUSYBOX_IMAGE")
}

# import_image ARCHIVE NAME: loads an OCI archive into the k8s.io namespace, where it must be named NAME:
# the CRI plugin resolves a short name (smtp-gateway:e2e) to docker.io/library/..., which pods never find.
import_image() {
  local archive=$1 name=$2 also=${3:-} named
  [ -f "$archive" ] || die "no image archive at $archive"
  named=$(tar -xOf "$archive" index.json | sed -n 's/.*"org.opencontainers.image.ref.name":"\([^"]*\)".*/\1/p')
  [ "$named" = "$name" ] || die "$archive names its image '$named', expected '$name' (push it as oci-archive:FILE:$name)"
  ctr_k8s images import --all-platforms "$archive" >/dev/null || die "containerd could not import $archive"
  [ "$(ctr_k8s images ls -q "name==$name")" = "$name" ] || die "$archive did not become image $name in containerd"
  [ -n "$also" ] || return 0
  ctr_k8s images tag --force "$name" "$also" >/dev/null || die "containerd could not name $name also $also"
}

up() {
  check_prerequisites
  # A failed start removes what it made, as `down` would.
  trap 'if [ $? -ne 0 ]; then log "up failed; logs in $KEPT_LOGS"; down; fi' EXIT
  rm -rf "$STATE"
  mkdir -p "$STATE/logs" "$STATE/pids"
  build_support_images
  make_certificates
  add_interfaces
  local pki="$STATE/pki"

  log "etcd $ETCD_VERSION"
  start etcd "$ETCD_BIN/etcd" --name test-cluster --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "test-cluster=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824

  log "kube-apiserver $KUBERNETES_VERSION on https://$NODE_IP:$APISERVER_PORT"
  start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-accounts.pub" --service-account-signing-key-file "$pki/service-accounts.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-30999 \
    --authorization-mode RBAC --allow-privileged=false --profiling=false
  wait_for 60 kube-apiserver kubectl get --raw /readyz

  log "kube-controller-manager, kube-scheduler"
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$pki/service-accounts.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false --service-cluster-ip-range "$SERVICE_CIDR"
  start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false

  log "containerd $(containerd --version | awk '{print $3}'), runc, CNI bridge $BRIDGE_IF on $POD_CIDR"
  write_containerd_config
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for 30 containerd ctr --address "$CTR_SOCK" version
  local entry
  for entry in "${SUPPORT_ARCHIVES[@]}"; do import_image "${entry%%:*}" "${entry#*:}"; done

  log "kubelet $NODE_NAME ($NODE_ZONE) on $NODE_IP"
  write_kubelet_config
  start kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$KUBECONFIG_FILE" \
    --root-dir "$STATE/kubelet/root" --cert-dir "$STATE/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --node-labels "topology.kubernetes.io/zone=$NODE_ZONE,topology.kubernetes.io/region=us-east-1"

  log "kube-proxy (iptables)"
  start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$KUBECONFIG_FILE" --proxy-mode iptables \
    --hostname-override "$NODE_NAME" --bind-address "$NODE_IP" --cluster-cidr "$POD_CIDR" \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
    --conntrack-max-per-core 0 --masquerade-all

  log "CoreDNS $COREDNS_VERSION on $NODE_IP:53"
  cat >"$STATE/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $KUBECONFIG_FILE
        pods insecure
    }
    cache 5
}
COREFILE
  start coredns "$COREDNS_BIN/coredns" -conf "$STATE/Corefile"

  wait_for 120 "node $NODE_NAME" node_ready
  trap - EXIT
  log "up: export KUBECONFIG=$KUBECONFIG_FILE"
}

node_ready() {
  [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

stop_process() {
  local name=$1 file="$STATE/pids/$1" pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Pods' containers and shims run outside the kubelet's process tree: stop them through containerd first.
stop_pods() {
  [ -S "$CTR_SOCK" ] || return 0
  local task
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
  sleep 1
  for task in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks delete -f "$task" >/dev/null 2>&1 || true; done
}

# containerd-shim processes that belong to this cluster (their -address names its socket).
shim_pids() {
  local pid
  for pid in $(pgrep -x containerd-shim-runc-v2 2>/dev/null || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$CTR_SOCK"; then echo "$pid"; fi
  done
}

down() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  local i name pid
  # kube-proxy first would let the kubelet recreate nothing; stop the control loops, then the pods.
  for name in kwok coredns kube-proxy kube-scheduler kube-controller-manager kubelet; do stop_process "$name"; done
  stop_pods
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 10; i++)); do [ -z "$(shim_pids)" ] && break; sleep 0.5; done
  for name in containerd kube-apiserver etcd; do stop_process "$name"; done
  # The chains kube-proxy made, then the ones the CNI plugins made (CNI-*).
  if [ -x "$K8S_BIN/kube-proxy" ]; then "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  delete_cluster_chains
  unmount_under "$STATE"
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do ip netns delete "$ns" 2>/dev/null || true; done
  ip link show "$BRIDGE_IF" >/dev/null 2>&1 && ip link delete "$BRIDGE_IF"
  ip link show "$DUMMY_IF" >/dev/null 2>&1 && ip link delete "$DUMMY_IF"
  remove_fake_pod_route
  if [ -f "$STATE/ip_forward.saved" ]; then cat "$STATE/ip_forward.saved" >/proc/sys/net/ipv4/ip_forward; fi
  if [ -d "$STATE/logs" ]; then rm -rf "$KEPT_LOGS" && cp -r "$STATE/logs" "$KEPT_LOGS"; fi
  rm -rf "$STATE"
  log "down"
}

# The chains of kube-proxy, the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and the
# CNI plugins (CNI-*) that `kube-proxy --cleanup` leaves: the jumps to them first, then the chains.
delete_cluster_chains() {
  local tool table chain rule
  for tool in iptables ip6tables; do
    for table in nat filter mangle; do
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        while read -r rule; do
          # shellcheck disable=SC2086 # the rule is iptables' own word list
          "$tool" -t "$table" $rule 2>/dev/null || true
        done < <("$tool" -t "$table" -S | grep -E -- "-j $chain( |\$)" | sed 's/^-A/-D/')
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

unmount_under() {
  local dir=$1 point
  # Deepest first.
  while read -r point; do
    umount -l "$point" 2>/dev/null || true
  done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 || $2 ~ "^(/var)?/run/netns/cni-" {print $2}' /proc/self/mounts | sort -r)
}

# kwok's stages (none are built in): nodes become and stay Ready (heartbeat with lease), pods become Ready
# with a made-up IP and go when deleted. The Stage files ship in the kwok module at the pinned version.
kwok_stages() {
  local json dir
  json=$(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION") ||
    die "could not download sigs.k8s.io/kwok@$KWOK_VERSION for its stages"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  local stage
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease pod/fast/pod-ready pod/fast/pod-delete; do
    [ -f "$dir/kustomize/stage/$stage.yaml" ] || die "kwok $KWOK_VERSION has no stage $stage.yaml in $dir/kustomize/stage"
    echo "---"
    cat "$dir/kustomize/stage/$stage.yaml"
  done
}

remove_fake_pod_route() {
  if [ -n "$(ip -4 route show "$FAKE_POD_CIDR" 2>/dev/null)" ]; then ip -4 route delete "$FAKE_POD_CIDR"; fi
}

fake_node_add() {
  [ -f "$STATE/pids/kube-apiserver" ] || die "no cluster is running from $STATE (run 'scripts/test-cluster.sh up' first)"
  [ ! -f "$STATE/pids/kwok" ] || die "the fake node is there already (run 'scripts/test-cluster.sh fake-node remove' first)"
  [ -x "$KWOK_BIN/kwok" ] || die "$KWOK_BIN/kwok is missing; run scripts/install-cluster-tools.sh"
  mkdir -p "$STATE/kwok"
  kwok_stages >"$STATE/kwok/stages.yaml"
  # Its address is local (nothing listens there) and its pods' range goes nowhere.
  ip addr add "$FAKE_NODE_IP/32" dev "$DUMMY_IF"
  ip -4 route add blackhole "$FAKE_POD_CIDR"
  log "kwok $KWOK_VERSION: fake node $FAKE_NODE_NAME ($FAKE_NODE_ZONE) on $FAKE_NODE_IP, pod IPs from $FAKE_POD_CIDR (blackholed)"
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" --config "$STATE/kwok/stages.yaml" \
    --manage-single-node "$FAKE_NODE_NAME" --cidr "$FAKE_POD_CIDR" --node-ip "$FAKE_NODE_IP"
  kubectl apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $FAKE_NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $FAKE_NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: $FAKE_NODE_ZONE
    topology.kubernetes.io/region: us-east-1
    type: kwok
NODE
  wait_for 60 "fake node $FAKE_NODE_NAME" fake_node_ready
}

fake_node_ready() {
  [ "$(kubectl get node "$FAKE_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# fake_node_remove: its pods (kwok finalizes them), the node, kwok, the address and the route.
fake_node_remove() {
  if [ -f "$STATE/pids/kwok" ] && kubectl get node "$FAKE_NODE_NAME" >/dev/null 2>&1; then
    kubectl cordon "$FAKE_NODE_NAME" >/dev/null
    kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$FAKE_NODE_NAME" --wait=true --timeout=60s >/dev/null ||
      kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$FAKE_NODE_NAME" --force --grace-period=0 >/dev/null
  fi
  kubectl delete node "$FAKE_NODE_NAME" --ignore-not-found --wait=true --timeout=60s >/dev/null
  stop_process kwok
  ip addr del "$FAKE_NODE_IP/32" dev "$DUMMY_IF" 2>/dev/null || true
  remove_fake_pod_route
  log "fake node $FAKE_NODE_NAME removed"
}

check_clean() {
  local left=() name pid
  for name in "${PROCESSES[@]}"; do
    [ ! -f "$STATE/pids/$name" ] || left+=("PID file of $name")
  done
  for pid in $(pgrep -x 'etcd|kube-apiserver|kube-controller|kube-scheduler|kubelet|kube-proxy|coredns|kwok' 2>/dev/null || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "$TOOLS|$STATE"; then left+=("process $pid ($(cat "/proc/$pid/comm"))"); fi
  done
  for pid in $(shim_pids); do left+=("containerd shim $pid"); done
  for name in "$DUMMY_IF" "$BRIDGE_IF"; do
    ! ip link show "$name" >/dev/null 2>&1 || left+=("interface $name")
  done
  local chains
  chains=$({ iptables-save; ip6tables-save; } 2>/dev/null | grep -oE '^:(KUBE|CNI)-[A-Za-z0-9-]+' | tr -d : | sort -u | tr '\n' ' ' || true)
  [ -z "$chains" ] || left+=("iptables chains $chains")
  ! grep -qF " $STATE" /proc/self/mounts || left+=("mounts under $STATE")
  ! ip netns list 2>/dev/null | grep -q '^cni-' || left+=("network namespaces $(ip netns list | awk '/^cni-/ {print $1}' | tr '\n' ' ')")
  [ -z "$(ip -4 route show "$FAKE_POD_CIDR" 2>/dev/null)" ] || left+=("route $(ip -4 route show "$FAKE_POD_CIDR")")
  [ ! -e "$STATE" ] || left+=("state folder $STATE")
  if [ ${#left[@]} -gt 0 ]; then
    printf 'test-cluster: left behind: %s\n' "${left[@]}" >&2
    exit 1
  fi
  log "clean: no process, interface, chain, mount, namespace or state left"
}

case "${1:-}" in
  -h | --help) usage ;;
  up) up ;;
  down) down ;;
  check-clean) check_clean ;;
  import) [ $# -eq 3 ] || [ $# -eq 4 ] || die "import needs IMAGE.oci.tar and NAME [ALSO_AS]"; import_image "$2" "$3" "${4:-}" ;;
  fake-node)
    case "${2:-}" in
      add) fake_node_add ;;
      remove) fake_node_remove ;;
      *) die "fake-node needs add or remove, got '${2:-}'" ;;
    esac
    ;;
  env) print_env ;;
  *) die "unknown command '${1:-}' (try --help)" ;;
esac
