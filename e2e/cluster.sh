#!/usr/bin/env bash
# A real Kubernetes control plane for the e2e suite, on this machine, without containers:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler (built by
# scripts/build-binaries.sh) and the test node agent (e2e/node-agent, runs pods as local processes).
#
#   bash e2e/cluster.sh up       start (or reuse a healthy running cluster); prints the kubeconfig path last
#   bash e2e/cluster.sh down     stop everything `up` started; remove network namespaces, veths, bridge
#   bash e2e/cluster.sh status   what runs; exit 1 unless all of it is healthy
#   bash e2e/cluster.sh env      `eval "$(bash e2e/cluster.sh env)"` points kubectl at the cluster
#   bash e2e/cluster.sh stop etcd|kube-apiserver    stop one component of a running cluster (chaos tests)
#   bash e2e/cluster.sh start etcd|kube-apiserver   start it again (same flags, data and ports) and wait until it answers
#
# Environment (see e2e/README.md):
#   SPAWNER_E2E_DIR     state dir (default /tmp/spawner-e2e): certs, etcd data, logs/, pods/, pids/
#   SPAWNER_E2E_BRIDGE  host bridge of the pod network (default spawner-br0)
#   SPAWNER_E2E_POD_CIDR / SPAWNER_E2E_HOST_IP  pod subnet and the bridge's address (10.88.0.0/16, 10.88.0.1)
#   SPAWNER_E2E_NODE    node name (default spawner-e2e-node)
#   SPAWNER_E2E_API_PORT, SPAWNER_E2E_ETCD_PORT, SPAWNER_E2E_ETCD_PEER_PORT  fixed ports (default: free ones)
#   SPAWNER_E2E_PREINSTALL_CRDS=0  do not apply chart/crds before the controller manager starts
#   SPAWNER_E2E_AGENT_ARGS  extra flags for the node agent
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${SPAWNER_E2E_DIR:-/tmp/spawner-e2e}"
BRIDGE="${SPAWNER_E2E_BRIDGE:-spawner-br0}"
POD_CIDR="${SPAWNER_E2E_POD_CIDR:-10.88.0.0/16}"
HOST_IP="${SPAWNER_E2E_HOST_IP:-10.88.0.1}"
NODE_NAME="${SPAWNER_E2E_NODE:-spawner-e2e-node}"
# Stopped in this order: the agent first so it can still end its pods cleanly.
COMPONENTS=(node-agent kube-scheduler kube-controller-manager kube-apiserver etcd)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null || true; }
# Running, and not a zombie: components are reparented to PID 1, which may reap them late.
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() { pid_alive "$(pid_of "$1")"; }
any_alive() { local c; for c in "${COMPONENTS[@]}"; do alive "$c" && return 0; done; return 1; }
all_alive() { local c; for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done; return 0; }

load_env() { [ -f "$STATE/cluster.env" ] && . "$STATE/cluster.env"; return 0; }

api_get() { # path -> body; fails when the API server does not answer 2xx
  curl -sf --max-time 3 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://127.0.0.1:$API_PORT$1"
}

free_ports() { # n -> n distinct free TCP ports on this host
  node -e '
    const net = require("net"); const n = Number(process.argv[1]); const servers = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      s.listen(0, "0.0.0.0", () => {
        servers.push(s);
        if (servers.length === n) { console.log(servers.map((x) => x.address().port).join(" ")); servers.forEach((x) => x.close()); }
      });
    }' "$1"
}

# Starts a component in its own session (so a Ctrl-C aimed at the caller does not reach it and
# `down` can signal its whole process group); its pid is also its process-group id.
start() {
  local name=$1; shift
  # 9>&-: the lock on the state dir is ours, not the component's (it would outlive this script).
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/pids/$name.pid"
}

wait_until() { # description timeout-seconds component command... (gives up early if component dies)
  local what=$1 timeout=$2 component=$3; shift 3
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$component"; then
      log "$component exited while waiting for $what"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

check_alive() { # name: fail with the log tail when a component died during start-up
  alive "$1" && return 0
  log "$1 exited during start-up; last lines of $STATE/logs/$1.log:"
  tail -n 30 "$STATE/logs/$1.log" >&2 || true
  return 1
}

stop_component() { # name grace-seconds
  local name=$1 grace=$2 pid deadline
  pid=$(pid_of "$name")
  [ -n "$pid" ] || return 0
  if pid_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$(( $(date +%s) + grace ))
    while pid_alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
    if pid_alive "$pid"; then log "$name did not stop within ${grace}s; killing it"; fi
  fi
  # Whatever is left of the group (children of the component) goes too.
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$STATE/pids/$name.pid"
}

# Removes what the node agent would have removed had it exited cleanly: pod processes, pod network
# namespaces, their veths, the bridge and the pod cgroups. Only names with our prefixes are touched.
sweep_pod_leftovers() {
  local ns pid link cg
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^spawner-pod-' || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  cg=/sys/fs/cgroup/memory/spawner-e2e
  if [ -d "$cg" ]; then
    for pid in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^spv[0-9a-f]*$' || true); do
    ip link del "$link" 2>/dev/null || true
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^spawner-pod-' || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" 2>/dev/null || true; fi
  if [ -d "$cg" ]; then
    find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
    rmdir "$cg" 2>/dev/null || true
  fi
  rm -rf "${TMPDIR:-/tmp}"/spawner-e2e-launcher-* 2>/dev/null || true
}

make_pki() {
  local d=$STATE/pki
  mkdir -p "$d"
  # EC keys: generated in milliseconds, and every component here accepts them.
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.crt" -days 30 -subj "/CN=spawner-e2e-ca" 2>/dev/null
  cert() { # name subject extensions
    openssl req "${ec[@]}" -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
      -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
  }
  cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$HOST_IP,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin "/O=system:masters/CN=spawner-e2e-admin" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # Service-account tokens are signed with RSA, the algorithm every client library verifies.
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local d=$STATE/pki
  cat >"$STATE/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: spawner-e2e
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
  - name: spawner-e2e-admin
    user:
      client-certificate-data: $(base64 -w0 "$d/admin.crt")
      client-key-data: $(base64 -w0 "$d/admin.key")
contexts:
  - name: spawner-e2e
    context: { cluster: spawner-e2e, user: spawner-e2e-admin }
current-context: spawner-e2e
EOF
}

# etcd and the API server are started by `up`, and again by `start <component>` after a test
# stopped one (chaos tests): same flags, same data directory, same ports (from cluster.env).
start_etcd() {
  start etcd "$BIN/etcd" --name=spawner-e2e --data-dir="$STATE/etcd" --unsafe-no-fsync \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="spawner-e2e=http://127.0.0.1:$ETCD_PEER_PORT" --log-level=warn
}

start_apiserver() {
  local pki=$STATE/pki
  # 0.0.0.0: the API server must answer at 127.0.0.1 (host tools) and at the bridge address
  # (processes in pod network namespaces), and it takes a single bind address.
  # --enable-admission-plugins adds to the default set (NamespaceLifecycle, ServiceAccount,
  # ResourceQuota, the webhooks, ...): OwnerReferencesPermissionEnforcement, on by default in
  # OpenShift, makes a writer that sets blockOwnerDeletion prove it may update the owner's finalizers.
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=0.0.0.0 --secure-port="$API_PORT" --advertise-address="$HOST_IP" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=RBAC \
    --enable-admission-plugins=OwnerReferencesPermissionEnforcement \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
    --allow-privileged=true --profiling=false \
    --max-requests-inflight=800 --max-mutating-requests-inflight=400
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, veths and bind mounts for pods)"
  command -v ip >/dev/null && command -v unshare >/dev/null && command -v openssl >/dev/null \
    || die "needs ip (iproute2), unshare (util-linux) and openssl"
  [ -f "$ROOT/dist/e2e/node-agent/main.js" ] || die "dist/e2e/node-agent/main.js is missing; run 'npm run build' first"

  if any_alive; then
    load_env
    # The node agent runs the chart's images as this checkout's dist/: another checkout's cluster
    # would run that checkout's code under this one's tests (a fresh clone once failed so).
    if [ "${CHECKOUT:-}" != "$ROOT" ]; then
      die "the cluster running from $STATE was started by another checkout (${CHECKOUT:-unknown}); stop it there ('bash e2e/cluster.sh down') or set SPAWNER_E2E_DIR"
    fi
    if all_alive && api_get /readyz >/dev/null 2>&1; then
      log "a cluster is already running from $STATE; reusing it"
      echo "$STATE/admin.kubeconfig"
      return 0
    fi
    die "a partly running cluster was found in $STATE; run 'bash e2e/cluster.sh down' first"
  fi

  local t0; t0=$(now_ms)
  local BIN; BIN=$(bash "$ROOT/e2e/scripts/build-binaries.sh" | tail -n 1)
  [ -x "$BIN/kube-apiserver" ] || die "no kube-apiserver in '$BIN'"

  # A crash may have left pods behind; so may another state dir's cluster, which we refuse to break.
  if pgrep -f 'dist/e2e/node-agent/main.js' >/dev/null 2>&1; then
    die "a node agent from another state dir is running (pgrep -af node-agent/main.js); stop that cluster first"
  fi
  sweep_pod_leftovers

  rm -rf "$STATE"
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/pods"
  # `ip netns add` turns /run/netns into a mount point; `down` undoes that only if it was not one.
  [ -d /run/netns ] && touch "$STATE/.run-netns-existed"
  mountpoint -q /run/netns 2>/dev/null && touch "$STATE/.run-netns-was-mounted"
  # A failed start stops whatever it had started (logs stay for a look).
  up_ok=0
  trap 'if [ "$up_ok" != 1 ]; then log "start-up failed; stopping what was started"; cmd_down; fi' EXIT
  make_pki

  local ports; ports=$(free_ports 3)
  read -r p1 p2 p3 <<<"$ports"
  API_PORT="${SPAWNER_E2E_API_PORT:-$p1}"
  ETCD_PORT="${SPAWNER_E2E_ETCD_PORT:-$p2}"
  ETCD_PEER_PORT="${SPAWNER_E2E_ETCD_PEER_PORT:-$p3}"
  cat >"$STATE/cluster.env" <<EOF
CHECKOUT=$ROOT
BIN=$BIN
API_PORT=$API_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
BRIDGE=$BRIDGE
HOST_IP=$HOST_IP
POD_CIDR=$POD_CIDR
NODE_NAME=$NODE_NAME
EOF
  write_kubeconfig
  local kc=$STATE/admin.kubeconfig pki=$STATE/pki

  start_etcd
  start_apiserver

  # etcd can take a moment; the API server retries on its own, so only watch that both stay up.
  if ! wait_until "the API server's /readyz" 60 kube-apiserver api_get /readyz; then
    check_alive etcd || true; check_alive kube-apiserver || true
    die "the API server did not become ready; logs in $STATE/logs"
  fi
  log "API server ready on https://127.0.0.1:$API_PORT after $(( $(now_ms) - t0 )) ms"

  # The garbage collector only learns about new resource types on its 30 s discovery resync, so
  # owner references to our CRD work from the first second only if the CRD exists before it starts.
  if [ "${SPAWNER_E2E_PREINSTALL_CRDS:-1}" = 1 ] && ls "$ROOT"/chart/crds/*.yaml >/dev/null 2>&1; then
    "$BIN/kubectl" --kubeconfig "$kc" apply -f "$ROOT/chart/crds/" >"$STATE/logs/crds.log" 2>&1 \
      || { cat "$STATE/logs/crds.log" >&2; die "applying chart/crds failed"; }
    "$BIN/kubectl" --kubeconfig "$kc" wait --for=condition=Established --timeout=30s crd --all >>"$STATE/logs/crds.log" 2>&1 || true
  fi

  # The default controller QPS (20) is far too low for the 200-pod benchmark; these are test-only.
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --leader-elect=false --secure-port=0 \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller,daemonset-controller,statefulset-controller,job-controller,root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller,clusterrole-aggregation-controller,disruption-controller,pod-garbage-collector-controller,ttl-after-finished-controller \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=false \
    --kube-api-qps=300 --kube-api-burst=600 \
    --concurrent-gc-syncs=50 --concurrent-namespace-syncs=10 --concurrent-deployment-syncs=20 --concurrent-replicaset-syncs=20

  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --leader-elect=false --secure-port=0 --kube-api-qps=300 --kube-api-burst=600

  # shellcheck disable=SC2086 # SPAWNER_E2E_AGENT_ARGS is a list of flags
  start node-agent node "$ROOT/dist/e2e/node-agent/main.js" \
    --kubeconfig="$kc" --state-dir="$STATE" --node-name="$NODE_NAME" \
    --bridge="$BRIDGE" --pod-cidr="$POD_CIDR" --host-ip="$HOST_IP" \
    --api-host="$HOST_IP" --api-port="$API_PORT" \
    --images="${SPAWNER_E2E_IMAGES:-$ROOT/e2e/images.json}" ${SPAWNER_E2E_AGENT_ARGS:-}

  local kubectl=("$BIN/kubectl" --kubeconfig "$kc")
  node_ready() { [ "$("${kubectl[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }
  if ! wait_until "node $NODE_NAME to be Ready" 30 node-agent node_ready; then
    check_alive node-agent || true
    die "the node agent did not register; see $STATE/logs/node-agent.log"
  fi
  if ! wait_until "ServiceAccount default/default" 30 kube-controller-manager "${kubectl[@]}" get serviceaccount default -n default; then
    check_alive kube-controller-manager || true
    die "the controller manager did not create the default ServiceAccount; see $STATE/logs"
  fi
  for c in kube-controller-manager kube-scheduler; do check_alive "$c" || die "$c is not running"; done
  up_ok=1
  log "cluster up in $(( $(now_ms) - t0 )) ms; state in $STATE"
  echo "$STATE/admin.kubeconfig"
}

cmd_down() {
  load_env
  local c
  for c in "${COMPONENTS[@]}"; do
    case $c in
      node-agent) stop_component "$c" 25 ;;
      *) stop_component "$c" 15 ;;
    esac
  done
  sweep_pod_leftovers
  if [ -d "$STATE" ] && [ ! -e "$STATE/.run-netns-was-mounted" ] && mountpoint -q /run/netns 2>/dev/null \
    && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    [ -e "$STATE/.run-netns-existed" ] || rmdir /run/netns 2>/dev/null || true
  fi
  log "stopped; logs kept in $STATE/logs"
}

cmd_status() {
  load_env
  local c ok=0 pid
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if alive "$c"; then printf '%-24s running  pid %s\n' "$c" "$pid"; else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  if [ -n "${API_PORT:-}" ] && api_get /readyz >/dev/null 2>&1; then
    printf '%-24s ready    https://127.0.0.1:%s\n' "api /readyz" "$API_PORT"
  else
    printf '%-24s not ready\n' "api /readyz"; ok=1
  fi
  [ -f "$STATE/agent.json" ] && printf '%-24s %s\n' "agent" "$(cat "$STATE/agent.json")"
  printf '%-24s %s\n' "kubeconfig" "$STATE/admin.kubeconfig"
  return $ok
}

# Chaos tests stop and restart one control-plane component of a running cluster; its log goes on.
cmd_stop_one() { # component
  case "${1:-}" in etcd | kube-apiserver) ;; *) die "stop: etcd or kube-apiserver, not '${1:-}'" ;; esac
  load_env
  alive "$1" || die "$1 is not running"
  stop_component "$1" 15
  log "$1 stopped"
}

cmd_start_one() { # component
  load_env
  [ -n "${BIN:-}" ] || die "no cluster state in $STATE"
  alive "$1" && { log "$1 is already running"; return 0; }
  case "${1:-}" in
    etcd)
      mv -f "$STATE/logs/etcd.log" "$STATE/logs/etcd.log.$(date +%s)" 2>/dev/null || true
      start_etcd
      wait_until "etcd's /health" 30 etcd curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not come back"
      ;;
    kube-apiserver)
      mv -f "$STATE/logs/kube-apiserver.log" "$STATE/logs/kube-apiserver.log.$(date +%s)" 2>/dev/null || true
      start_apiserver
      wait_until "the API server's /readyz" 60 kube-apiserver api_get /readyz || die "the API server did not come back"
      ;;
    *) die "start: etcd or kube-apiserver, not '${1:-}'" ;;
  esac
  log "$1 started"
}

cmd_env() {
  load_env
  [ -f "$STATE/admin.kubeconfig" ] || die "no cluster state in $STATE; run 'bash e2e/cluster.sh up'"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
  echo "export SPAWNER_E2E_DIR=$STATE"
  [ -n "${BIN:-}" ] && echo "export SPAWNER_E2E_BIN=$BIN" && echo "export PATH=$BIN:\$PATH"
  return 0
}

# One `up`/`down` at a time per state dir. Not "$STATE.lock": that is e2e/run.sh's machine-wide
# lock (/tmp/spawner-e2e.lock by default), held by the caller while it runs `up` and `down`.
mkdir -p "$(dirname "$STATE")"
exec 9>"$STATE.cluster.lock"
case "${1:-}" in
  up) flock 9; cmd_up ;;
  down) flock 9; cmd_down ;;
  stop) flock 9; cmd_stop_one "${2:-}" ;;
  start) flock 9; cmd_start_one "${2:-}" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env|stop <component>|start <component>" >&2; exit 2 ;;
esac
