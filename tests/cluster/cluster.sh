#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver + etcd, no nodes unless --node) for tests and
# local runs.
#
#   cluster.sh up DIR [--node] [--watch-pid PID] [--remove-dir]
#                                  start etcd + kube-apiserver; state, logs, kubeconfigs in DIR
#                                  (--node: also a node where pods run; needs root)
#   cluster.sh down DIR            stop what `up DIR` started (safe to repeat)
#   cluster.sh restart-apiserver DIR
#                                  stop and start kube-apiserver on the same port, etcd data kept
#   cluster.sh env DIR             print `export KUBECONFIG=DIR/kubeconfig`
#   cluster.sh build [--node]      only obtain (build and cache) kube-apiserver [and the node's]
#
# Binaries come from $KUBEBUILDER_ASSETS (kube-apiserver, etcd) when it is set. Otherwise
# kube-apiserver v1.20.2 is built once from Debian's `kubernetes` source package and cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/, and etcd comes from Debian's etcd-server
# package (unpacked, so no service is started). Each build step (lib/build-steps.sh) says why
# it is needed.
#
# --node adds kube-controller-manager, kube-scheduler, a kubelet (dockershim, Debian's docker.io
# as the runtime, started as root when no docker daemon runs and stopped by `down` only then)
# and kube-proxy (iptables), built from the same source tree and Go build cache as
# kube-apiserver (the first `--node` on a machine builds them: 2-7 minutes
# once kube-apiserver is built, whose compiled packages they share). The node is
# named gastown-node; its IP is the docker0 bridge's, where the API server listens (not on
# 0.0.0.0) and which the serving certificate names, with 10.0.0.1 (the `kubernetes` Service).
# Images cannot be pulled here: the pod sandbox is a static `pause` in a FROM-scratch image
# (gastown-test/pause), and DIR/cluster.env names NODE_TEST_IMAGE, a FROM-scratch image of
# Debian's busybox-static for tests (use `imagePullPolicy: Never`). Pods get no DNS server (no
# query leaves the machine); they reach the API server by $KUBERNETES_SERVICE_HOST. One node
# cluster runs per machine (kubelet and kube-proxy own docker's k8s_* containers, the KUBE-*
# iptables chains and fixed ports). `down` stops the node's processes, removes its k8s_*
# containers, unmounts the kubelet's mounts under DIR/kubelet, deletes the KUBE-* chains and
# restores the kernel settings that kubelet and kube-proxy change.
#
# --watch-pid PID starts a detached watcher that runs `down DIR` when PID exits, so a test
# process that dies never leaks a cluster; with --remove-dir the watcher also deletes DIR.
#
# Users (static tokens, RBAC is enforced): admin (system:masters) in DIR/kubeconfig, and in
# DIR/users/<name>.kubeconfig + DIR/users/<name>.token: alice (gastown-claimers), bob
# (developers), mallory (no groups), gastown-operator
# (system:serviceaccount:gastown-system:gastown-operator).

set -euo pipefail
shopt -s inherit_errexit

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT_PATH
# One topic per file; common.sh first (the others' settings use its paths).
# shellcheck source=tests/cluster/lib/common.sh
source "$(dirname "$SCRIPT_PATH")/lib/common.sh"
# shellcheck source=tests/cluster/lib/binaries.sh
source "$(dirname "$SCRIPT_PATH")/lib/binaries.sh"
# shellcheck source=tests/cluster/lib/build-steps.sh
source "$(dirname "$SCRIPT_PATH")/lib/build-steps.sh"
# shellcheck source=tests/cluster/lib/processes.sh
source "$(dirname "$SCRIPT_PATH")/lib/processes.sh"
# shellcheck source=tests/cluster/lib/apiserver.sh
source "$(dirname "$SCRIPT_PATH")/lib/apiserver.sh"
# shellcheck source=tests/cluster/lib/pki.sh
source "$(dirname "$SCRIPT_PATH")/lib/pki.sh"
# shellcheck source=tests/cluster/lib/state.sh
source "$(dirname "$SCRIPT_PATH")/lib/state.sh"
# shellcheck source=tests/cluster/lib/node-images.sh
source "$(dirname "$SCRIPT_PATH")/lib/node-images.sh"
# shellcheck source=tests/cluster/lib/node-host.sh
source "$(dirname "$SCRIPT_PATH")/lib/node-host.sh"
# shellcheck source=tests/cluster/lib/node.sh
source "$(dirname "$SCRIPT_PATH")/lib/node.sh"

usage() {
  sed -n '2,13p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# set_dir PATH [create]: DIR becomes the absolute, symlink-free PATH.
set_dir() {
  [[ -n "${1:-}" ]] || usage
  if [[ "${2:-}" == create ]]; then
    mkdir -p "$1"
  fi
  DIR="$(realpath -m "$1")"
  [[ "$DIR" != "/" ]] || die "refusing to use / as the cluster directory"
}

cluster_running() {
  load_cluster_env || return 1
  local pid
  ((NODE_MODE)) && node_processes_alive "$DIR" && return 0
  pid="$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$APISERVER_BIN" "$DIR" && return 0
  pid="$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$ETCD_BIN" "$DIR"
}

# parse_up_options OPTION...: UP_WATCH_PID, UP_REMOVE_DIR and UP_NODE from `up DIR`'s options.
parse_up_options() {
  UP_WATCH_PID="" UP_REMOVE_DIR=0 UP_NODE=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --watch-pid)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--watch-pid needs a pid"
        UP_WATCH_PID="$2"
        shift 2
        ;;
      --remove-dir)
        UP_REMOVE_DIR=1
        shift
        ;;
      --node)
        UP_NODE=1
        shift
        ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
}

# The binaries and packages `up` needs: APISERVER_BIN, ETCD_BIN (and NODE_BIN_DIR with --node).
obtain_binaries() {
  ensure_runtime_tools
  ((UP_NODE == 0)) || ensure_packages "${NODE_PACKAGES[@]}"
  APISERVER_BIN="$(ensure_apiserver)"
  ETCD_BIN="$(ensure_etcd)"
  log "using $APISERVER_BIN and $ETCD_BIN"
  if ((UP_NODE)); then
    NODE_BIN_DIR="$(ensure_node_binaries)"
    log "using ${NODE_BINARIES[*]} from $NODE_BIN_DIR"
  fi
}

# A fresh cluster each time: previous state (if any) is discarded.
reset_cluster_state() {
  rm -rf "$DIR/etcd" "$DIR/certs" "$DIR/users" "$DIR/pids" "$DIR/logs" "$DIR/run" "$DIR/kubelet" \
    "$DIR/kubeconfig" "$DIR/tokens.csv" "$DIR/admin.token" "$DIR/cluster.env" "$DIR/sysctl.before"
  mkdir -p "$DIR/pids" "$DIR/logs"
  CLUSTER_ID="$(date +%s)-$$-$RANDOM"
  UP_COMPLETE=0
  NODE_MODE="$UP_NODE"
  DOCKERD_STARTED=0
  SERVICE_ROUTE_ADDED=0
  APISERVER_HOST=127.0.0.1
  ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_PORT=""
}

cmd_up() {
  local started=$SECONDS
  set_dir "${1:-}" create
  shift
  parse_up_options "$@"
  if cluster_running; then
    die "a cluster from $DIR is already running; run: $SCRIPT_PATH down $DIR"
  fi
  if ((UP_NODE)); then
    [[ "$(id -u)" == 0 ]] || die "--node needs root (dockerd, kubelet and kube-proxy run as root): sudo $SCRIPT_PATH up $DIR --node"
    # A node cluster that was not taken down (its processes are gone) may have left mounts.
    if [[ -f "$DIR/cluster.env" ]]; then
      cmd_down "$DIR"
    fi
  fi
  obtain_binaries
  reset_cluster_state
  trap cleanup_failed_up EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  ((NODE_MODE == 0)) || prepare_node
  generate_certs
  write_tokens
  start_etcd_on_free_ports
  start_apiserver_on_free_port
  write_cluster_env
  write_kubeconfigs
  log "kube-apiserver $K8S_VERSION ready at https://$APISERVER_HOST:$APISERVER_PORT in $((SECONDS - started))s"
  if ((NODE_MODE)); then
    start_node
    log "node $NODE_NAME ($NODE_IP) ready in $((SECONDS - started))s; test image: $NODE_TEST_IMAGE"
  fi
  if [[ -n "$UP_WATCH_PID" ]]; then
    start_watcher "$UP_WATCH_PID" "$UP_REMOVE_DIR"
  fi
  UP_COMPLETE=1
  trap - EXIT INT TERM
  log "admin kubeconfig: $DIR/kubeconfig; users: $DIR/users/"
}

# A failed `up` leaves nothing running.
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup_failed_up() {
  local rc=$?
  if [[ "${UP_COMPLETE:-0}" != 1 ]]; then
    trap - EXIT
    if ((NODE_MODE)); then
      (stop_node) || true
    fi
    stop_process kube-apiserver "$APISERVER_BIN" || true
    stop_process etcd "$ETCD_BIN" || true
    if ((NODE_MODE)); then
      (stop_node_host_parts) || true
    fi
  fi
  exit "$rc"
}

cmd_down() {
  local watcher_pid
  set_dir "${1:-}"
  if [[ ! -d "$DIR" ]] || ! load_cluster_env; then
    log "nothing to stop in $DIR"
    return 0
  fi
  if ((NODE_MODE)); then
    stop_node
  fi
  stop_process kube-apiserver "$APISERVER_BIN"
  stop_process etcd "$ETCD_BIN"
  if ((NODE_MODE)); then
    stop_node_host_parts
  fi
  # The watcher is a bash running this script: stop it unless we are it.
  watcher_pid="$(cat "$DIR/pids/watcher.pid" 2>/dev/null || true)"
  if [[ -n "$watcher_pid" && "$watcher_pid" != "$$" ]] &&
    [[ "$(pid_cmdline "$watcher_pid")" == *"__watch $DIR "* ]]; then
    kill -TERM "$watcher_pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pids/watcher.pid"
  log "cluster in $DIR is down"
}

cmd_restart_apiserver() {
  set_dir "${1:-}"
  load_cluster_env || die "no cluster in $DIR (cluster.env missing)"
  [[ -n "$APISERVER_PORT" ]] || die "cluster.env in $DIR has no APISERVER_PORT"
  stop_process kube-apiserver "$APISERVER_BIN"
  local i
  # The port lingers briefly after exit; the apiserver itself retries binding for a while too.
  for ((i = 0; i < 50; i++)); do
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2])))' \
      "$APISERVER_HOST" "$APISERVER_PORT" 2>/dev/null && break
    sleep 0.2
  done
  start_apiserver
  write_cluster_env
  log "kube-apiserver restarted on $APISERVER_HOST:$APISERVER_PORT"
}

start_watcher() {
  local watch_pid="$1" remove_dir="$2"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid -f bash -c 'echo $$ >"$0" && exec "$@"' "$DIR/pids/watcher.pid" \
    bash "$SCRIPT_PATH" __watch "$DIR" "$watch_pid" "$CLUSTER_ID" "$remove_dir" \
    </dev/null >>"$DIR/logs/watcher.log" 2>&1
  log "watcher: cluster goes down when pid $watch_pid exits"
}

proc_start_time() {
  awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true
}

# __watch DIR PID CLUSTER_ID REMOVE_DIR: runs `down DIR` once PID is gone, unless the cluster
# was already taken down or replaced by a newer `up` in the same DIR.
cmd_watch() {
  local dir="$1" watch_pid="$2" cluster_id="$3" remove_dir="$4" start_time
  DIR="$dir"
  start_time="$(proc_start_time "$watch_pid")"
  while [[ -n "$start_time" && "$(proc_start_time "$watch_pid")" == "$start_time" ]]; do
    load_cluster_env || exit 0
    [[ "$CLUSTER_ID" == "$cluster_id" ]] || exit 0
    sleep 1
  done
  load_cluster_env || exit 0
  [[ "$CLUSTER_ID" == "$cluster_id" ]] || exit 0
  log "pid $watch_pid exited; taking the cluster in $DIR down"
  cmd_down "$DIR"
  if [[ "$remove_dir" == 1 && -f "$DIR/cluster.env" && "$DIR" != "/" ]]; then
    rm -rf "$DIR"
  fi
}

# build [--node]: only obtain (build and cache) the binaries.
cmd_build() {
  case "${1:-}" in
    "") ;;
    --node) ;;
    *) die "unknown option for build: $1" ;;
  esac
  ensure_runtime_tools
  ensure_apiserver >/dev/null
  ensure_etcd >/dev/null
  log "kube-apiserver and etcd are available"
  if [[ "${1:-}" == --node ]]; then
    ensure_node_binaries >/dev/null
    log "the node binaries (${NODE_BINARIES[*]}) are available in $NODE_CACHE_DIR"
  fi
}

main() {
  local command="${1:-}"
  [[ -n "$command" ]] || usage
  shift
  case "$command" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    env)
      set_dir "${1:-}"
      echo "export KUBECONFIG=$DIR/kubeconfig"
      ;;
    build) cmd_build "$@" ;;
    __watch) cmd_watch "$@" ;;
    __step)
      case "${1:-}" in
        step_download_source | step_unpack_source | step_generated_files | step_replace_reflect2 | \
          step_patch_openapi_validation | step_patch_oom_score | step_go_build) "$@" ;;
        *) die "unknown build step: ${1:-}" ;;
      esac
      ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

# One line: bash reads scripts as it runs them, so a long-running instance (the watcher) must not
# read past this point if the file is edited meanwhile.
main "$@"; exit "$?"
