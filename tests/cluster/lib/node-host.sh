# Sourced by tests/cluster/cluster.sh: what a node changes on the machine outside DIR (the one
# node slot, kernel settings, the service route, k8s_* containers, mounts, KUBE-* chains).
# shellcheck shell=bash

# Names the directory of the one node cluster this machine may run at a time (machine-wide,
# whatever cache directory a run uses; --node runs as root).
readonly NODE_OWNER_FILE="/run/gastown-operator-node-cluster"
# Kernel settings kubelet (setupKernelTunables) and kube-proxy change at start; `down` puts back
# the values they had before `up`.
readonly NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)

# claim_node_slot: this DIR becomes the machine's one node cluster, unless another one runs
# (one whose `up` is under way is named by NODE_OWNER_FILE; any running kubelet or kube-proxy
# counts, whoever started it).
claim_node_slot() {
  (
    flock -w 60 9 || die "timed out waiting for $NODE_OWNER_FILE.lock"
    local owner other
    owner="$(cat "$NODE_OWNER_FILE" 2>/dev/null || true)"
    other="$(other_node_process)" || true
    if [[ -z "$other" && -n "$owner" && "$owner" != "$DIR" ]] && node_up_under_way "$owner"; then
      other="\`up --node\` of $owner"
    fi
    if [[ -n "$other" ]]; then
      die "a node cluster is running ($other); only one can run on a machine (kubelet and" \
        "kube-proxy own docker's k8s_* containers, the KUBE-* iptables chains and fixed ports)." \
        "Use that one (its kubeconfig), or take it down (cluster.sh down DIR)"
    fi
    echo "$DIR" >"$NODE_OWNER_FILE"
  ) 9>"$NODE_OWNER_FILE.lock"
}

# Prints "kubelet pid PID, cluster directory OTHER" for a running kubelet or kube-proxy that is
# not this DIR's; fails when there is none.
other_node_process() {
  local proc pid name cmdline kubeconfig
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    name="$(basename "$(pid_exe "$pid")")"
    [[ "$name" == kubelet || "$name" == kube-proxy ]] || continue
    cmdline="$(pid_cmdline "$pid")"
    [[ "$cmdline" == *"$DIR/"* ]] && continue
    kubeconfig="$(sed -nE 's/.*--kubeconfig[ =]([^ ]+).*/\1/p' <<<"$cmdline")"
    printf '%s pid %s, cluster directory %s\n' "$name" "$pid" "$(dirname "${kubeconfig:-unknown/x}")"
    return 0
  done
  return 1
}

# node_up_under_way DIR: an `up --node DIR` (a bash running this script) is still running.
node_up_under_way() {
  local proc
  for proc in /proc/[0-9]*; do
    [[ "$(pid_cmdline "${proc#/proc/}")" == *"cluster.sh up $1 "*"--node"* ]] && return 0
  done
  return 1
}

release_node_slot() {
  [[ "$(cat "$NODE_OWNER_FILE" 2>/dev/null || true)" == "$DIR" ]] && rm -f "$NODE_OWNER_FILE"
  return 0
}

# node_processes_alive DIR: a kubelet or kube-proxy started for DIR still runs (per pid files).
node_processes_alive() {
  local dir="$1" name pid
  for name in kubelet kube-proxy; do
    pid="$(cat "$dir/pids/$name.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    [[ "$(basename "$(pid_exe "$pid")")" == "$name" && "$(pid_cmdline "$pid")" == *"$dir/"* ]] && return 0
  done
  return 1
}

save_sysctls() {
  local key value
  : >"$DIR/sysctl.before.tmp"
  for key in "${NODE_SYSCTLS[@]}"; do
    value="$(sysctl -n "$key" 2>/dev/null)" || continue
    printf '%s=%s\n' "$key" "$value" >>"$DIR/sysctl.before.tmp"
  done
  mv -f "$DIR/sysctl.before.tmp" "$DIR/sysctl.before"
}

restore_sysctls() {
  local key value
  [[ -f "$DIR/sysctl.before" ]] || return 0
  while IFS='=' read -r key value; do
    [[ -n "$key" && "$(sysctl -n "$key" 2>/dev/null || true)" != "$value" ]] || continue
    sysctl -q -w "$key=$value" >/dev/null 2>&1 || log "could not restore $key=$value"
  done <"$DIR/sysctl.before"
  rm -f "$DIR/sysctl.before"
}

# Service IPs exist only as kube-proxy's DNAT rules. Until those are in place (or after a rule
# is gone) a connection to one would follow the default route off this machine; routed to the
# docker bridge instead, it stays here and finds nobody.
add_service_route() {
  if ip route show exact "$SERVICE_CLUSTER_IP_RANGE" 2>/dev/null | grep -q .; then
    log "a route for $SERVICE_CLUSTER_IP_RANGE exists already: $(ip route show exact "$SERVICE_CLUSTER_IP_RANGE")"
    return 0
  fi
  ip route add "$SERVICE_CLUSTER_IP_RANGE" dev docker0 || die "could not route $SERVICE_CLUSTER_IP_RANGE to docker0"
  SERVICE_ROUTE_ADDED=1
  write_cluster_env
}

delete_service_route() {
  ((SERVICE_ROUTE_ADDED)) || return 0
  ip route del "$SERVICE_CLUSTER_IP_RANGE" dev docker0 2>/dev/null || true
  SERVICE_ROUTE_ADDED=0
}

# The k8s_* containers (all of them belong to this machine's one node cluster), the pod log
# directories kubelet made for them (/var/log/pods/NS_POD_UID) and its links to their logs
# (/var/log/containers/POD_NS_CONTAINER-ID.log).
remove_pod_containers() {
  local ids id uid
  docker_running || return 0
  mapfile -t ids < <(docker_cli ps -aq --no-trunc --filter 'name=^k8s_')
  ((${#ids[@]} > 0)) || return 0
  log "removing ${#ids[@]} k8s_* containers"
  for uid in $(docker_cli inspect -f '{{index .Config.Labels "io.kubernetes.pod.uid"}}' "${ids[@]}" 2>/dev/null | sort -u); do
    if [[ "$uid" =~ ^[0-9a-f-]+$ ]]; then
      rm -rf /var/log/pods/*_"$uid"
    fi
  done
  docker_cli rm -f -v "${ids[@]}" >/dev/null || log "could not remove every k8s_* container"
  for id in "${ids[@]}"; do
    if [[ "$id" =~ ^[0-9a-f]+$ ]]; then
      rm -f /var/log/containers/*-"$id".log
    fi
  done
}

# Unmounts what kubelet mounted under DIR/kubelet (Secret and token tmpfs volumes), deepest first.
unmount_kubelet_mounts() {
  local target
  [[ -d "$DIR/kubelet" ]] || return 0
  findmnt -rn -o TARGET | awk -v root="$DIR/kubelet" '$0 == root || index($0, root "/") == 1' |
    sort -r | while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" || log "could not unmount $target"
  done
}

# Deletes every KUBE-* chain (kube-proxy's and kubelet's) and the rules that jump to them, in
# iptables and ip6tables.
delete_kube_chains() {
  python3 - <<'PYEOF'
import shlex, shutil, subprocess

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True)

for cmd in ("iptables", "ip6tables"):
    if not shutil.which(cmd) or not shutil.which(cmd + "-save"):
        continue
    for table in ("nat", "filter", "mangle", "raw"):
        saved = run(cmd + "-save", "-t", table)
        if saved.returncode != 0:
            continue
        chains, jumps = [], []
        for line in saved.stdout.splitlines():
            if line.startswith(":KUBE-"):
                chains.append(line[1:].split()[0])
            elif line.startswith("-A "):
                args = shlex.split(line)
                targets = [args[i + 1] for i in range(len(args) - 1) if args[i] in ("-j", "-g")]
                if not args[1].startswith("KUBE-") and any(t.startswith("KUBE-") for t in targets):
                    jumps.append(args[1:])
        for rule in jumps:
            run(cmd, "-w", "5", "-t", table, "-D", *rule)
        for chain in chains:
            run(cmd, "-w", "5", "-t", table, "-F", chain)
        for chain in chains:
            if run(cmd, "-w", "5", "-t", table, "-X", chain).returncode != 0:
                print(f"cluster.sh: could not delete {cmd} -t {table} chain {chain}")
PYEOF
}

# Undoes what the node changed on the machine, after etcd and kube-apiserver are stopped.
stop_node_host_parts() {
  delete_service_route
  restore_sysctls
  if ((DOCKERD_STARTED)); then
    bash "$DOCKER_SCRIPT" stop "$DIR/run"
  fi
  release_node_slot
}

