# Sourced by tests/cluster/cluster.sh: DIR/cluster.env, what `up` started and `down` stops.
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153 # variables shared with the other files of cluster.sh

# Set by `up` (from the options) or by load_cluster_env (from DIR/cluster.env).
NODE_MODE=0
APISERVER_HOST=127.0.0.1
NODE_IP=""
NODE_CIDR=""
NODE_BIN_DIR=""
DOCKERD_STARTED=0
SERVICE_ROUTE_ADDED=0
NODE_TEST_IMAGE=""

# env_lines VARIABLE...: a KEY=value line for each variable.
env_lines() {
  local key
  for key in "$@"; do
    printf '%s=%s\n' "$key" "${!key}"
  done
}

write_cluster_env() {
  {
    echo "# Written by cluster.sh up; read (not sourced) by cluster.sh down/restart-apiserver."
    env_lines CLUSTER_ID K8S_VERSION
    echo "APISERVER_URL=https://$APISERVER_HOST:$APISERVER_PORT"
    env_lines APISERVER_HOST APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_BIN ETCD_BIN
    echo "APISERVER_PID=$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)"
    echo "ETCD_PID=$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)"
    echo "KUBECONFIG=$DIR/kubeconfig"
    echo "NODE=$NODE_MODE"
    if ((NODE_MODE)); then
      env_lines NODE_NAME NODE_IP NODE_CIDR NODE_BIN_DIR DOCKERD_STARTED SERVICE_ROUTE_ADDED \
        PAUSE_IMAGE NODE_TEST_IMAGE
    fi
  } >"$DIR/cluster.env.tmp"
  mv -f "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

# 1 for "1", else 0.
flag_value() {
  if [[ "$1" == 1 ]]; then echo 1; else echo 0; fi
}

# The keys of cluster.env that `down` and `restart-apiserver` read back, each into the variable
# of the same name (NODE goes into NODE_MODE); flags read as 0 unless they are "1".
readonly CLUSTER_ENV_KEYS=(CLUSTER_ID APISERVER_HOST APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT
  APISERVER_BIN ETCD_BIN NODE_IP NODE_CIDR NODE_BIN_DIR NODE_TEST_IMAGE)
readonly CLUSTER_ENV_FLAGS=(DOCKERD_STARTED SERVICE_ROUTE_ADDED)

load_cluster_env() {
  local key value
  for key in "${CLUSTER_ENV_KEYS[@]}"; do
    printf -v "$key" '%s' ""
  done
  for key in "${CLUSTER_ENV_FLAGS[@]}"; do
    printf -v "$key" '%s' 0
  done
  APISERVER_HOST=127.0.0.1 NODE_MODE=0
  [[ -f "$DIR/cluster.env" ]] || return 1
  # Parsed, not sourced: only the keys we know.
  while IFS='=' read -r key value; do
    if [[ " ${CLUSTER_ENV_KEYS[*]} " == *" $key "* ]]; then
      printf -v "$key" '%s' "$value"
    elif [[ " ${CLUSTER_ENV_FLAGS[*]} " == *" $key "* ]]; then
      printf -v "$key" '%s' "$(flag_value "$value")"
    elif [[ "$key" == NODE ]]; then
      NODE_MODE="$(flag_value "$value")"
    fi
  done <"$DIR/cluster.env"
  return 0
}
