# Sourced by tests/cluster/cluster.sh: the node's processes (kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy) and when the node is ready.
# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by cluster.sh

# What `up --node` needs: the container runtime, the tools kubelet and kube-proxy call, gcc and
# static libc for the pause binary, busybox-static for the test image.
readonly NODE_PACKAGES=(docker.io iptables ipset conntrack socat ebtables ethtool iproute2 mount
  gcc libc6-dev busybox-static)
readonly NODE_NAME="gastown-node"
readonly NODE_READY_TIMEOUT_SECS="${CLUSTER_NODE_READY_TIMEOUT_SECS:-180}"

# Before the API server starts: the machine's one node slot, docker, the bridge's addresses
# (where the API server will listen) and the two local images.
prepare_node() {
  claim_node_slot
  write_cluster_env
  ensure_dockerd
  detect_node_network
  ensure_pause_image
  ensure_test_image
  write_cluster_env
}

# api_get PATH: GET from the API server as admin (JSON on stdout).
api_get() {
  curl -fsS --max-time 5 --cacert "$DIR/certs/ca.crt" -H "Authorization: Bearer $(cat "$DIR/admin.token")" \
    "https://$APISERVER_HOST:$APISERVER_PORT$1"
}

# The node is Ready and untainted (so pods schedule), the `default` ServiceAccount has its token
# Secret (controller-manager), and kube-proxy has programmed the `kubernetes` Service.
node_ready() {
  api_get "/api/v1/nodes/$NODE_NAME" 2>/dev/null | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = any(c.get("type") == "Ready" and c.get("status") == "True"
            for c in node.get("status", {}).get("conditions", []))
sys.exit(0 if ready and not node.get("spec", {}).get("taints") else 1)' 2>/dev/null || return 1
  api_get /api/v1/namespaces/default/serviceaccounts/default 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("secrets") else 1)' 2>/dev/null ||
    return 1
  iptables -w 5 -t nat -S KUBE-SERVICES 2>/dev/null | grep -qF -- "-d $KUBERNETES_SERVICE_IP/32"
}

# kube-controller-manager (ServiceAccount tokens, ReplicaSets, ...) and kube-scheduler.
start_node_controllers() {
  spawn kube-controller-manager "$NODE_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" \
    --service-account-private-key-file "$DIR/certs/sa.key" \
    --root-ca-file "$DIR/certs/ca.crt" \
    --leader-elect=false \
    --port 0 \
    --secure-port 0 \
    --profiling=false
  spawn kube-scheduler "$NODE_BIN_DIR/kube-scheduler" \
    --kubeconfig "$DIR/kubeconfig" \
    --leader-elect=false \
    --port 0 \
    --secure-port 0 \
    --profiling=false
}

start_kubelet() {
  mkdir -p "$DIR/kubelet/pki" "$DIR/kubelet/volume-plugins"
  # Images are never garbage-collected (they cannot be pulled back here), eviction thresholds
  # are low (a busy shared disk must not taint the node), pods get no DNS server; the cgroup
  # driver is docker's (its default, cgroupfs on cgroup v1, when we start dockerd).
  spawn kubelet "$NODE_BIN_DIR/kubelet" \
    --kubeconfig "$DIR/kubeconfig" \
    --container-runtime docker \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --cgroup-driver "$(docker_cli info -f '{{.CgroupDriver}}')" \
    --cgroups-per-qos=false \
    --enforce-node-allocatable= \
    --fail-swap-on=false \
    --root-dir "$DIR/kubelet" \
    --experimental-dockershim-root-directory "$DIR/kubelet/dockershim" \
    --volume-plugin-dir "$DIR/kubelet/volume-plugins" \
    --cert-dir "$DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" \
    --address "$NODE_IP" \
    --read-only-port 0 \
    --anonymous-auth=false \
    --authentication-token-webhook=false \
    --client-ca-file "$DIR/certs/ca.crt" \
    --authorization-mode AlwaysAllow \
    --resolv-conf "" \
    --image-gc-high-threshold 100 \
    --image-gc-low-threshold 99 \
    --eviction-hard "memory.available<1Mi,nodefs.available<1%,imagefs.available<1%" \
    --oom-score-adj 0
}

start_kube_proxy() {
  spawn kube-proxy "$NODE_BIN_DIR/kube-proxy" \
    --kubeconfig "$DIR/kubeconfig" \
    --proxy-mode iptables \
    --hostname-override "$NODE_NAME" \
    --cluster-cidr "$NODE_CIDR" \
    --bind-address "$NODE_IP" \
    --nodeport-addresses "$NODE_IP/32" \
    --healthz-bind-address 127.0.0.1:10256 \
    --metrics-bind-address 127.0.0.1:10249 \
    --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 \
    --conntrack-tcp-timeout-close-wait 0 \
    --oom-score-adj 0
}

# Waits for node_ready; fails at once when one of the node's processes exits.
wait_for_node() {
  local deadline=$((SECONDS + NODE_READY_TIMEOUT_SECS)) name
  until node_ready; do
    for name in "${NODE_BINARIES[@]}"; do
      pid_is "$(cat "$DIR/pids/$name.pid")" "$NODE_BIN_DIR/$name" "$DIR" ||
        die_with_log "$name exited during start" "$DIR/logs/$name.log"
    done
    ((SECONDS < deadline)) ||
      die_with_log "node $NODE_NAME not ready after ${NODE_READY_TIMEOUT_SECS}s" "$DIR/logs/kubelet.log"
    sleep 1
  done
}

start_node() {
  add_service_route
  save_sysctls
  start_node_controllers
  start_kubelet
  start_kube_proxy
  wait_for_node
}

# Takes down what `up --node` added, in an order that leaves nothing behind: no new pods, no
# kubelet to restart containers, containers gone before their mounts, kube-proxy gone before
# its chains.
stop_node() {
  local bin_dir="${NODE_BIN_DIR:-$NODE_CACHE_DIR}" owner
  stop_process kube-scheduler "$bin_dir/kube-scheduler"
  stop_process kube-controller-manager "$bin_dir/kube-controller-manager"
  stop_process kubelet "$bin_dir/kubelet"
  # A failed `up` beside a running node cluster, or a repeated `down` after another node
  # cluster came up, must not touch that one's containers and chains.
  if owner="$(other_node_process)"; then
    log "another node cluster is running ($owner): the k8s_* containers and KUBE-* chains stay"
    unmount_kubelet_mounts
    stop_process kube-proxy "$bin_dir/kube-proxy"
    return 0
  fi
  remove_pod_containers
  unmount_kubelet_mounts
  stop_process kube-proxy "$bin_dir/kube-proxy"
  delete_kube_chains
}

