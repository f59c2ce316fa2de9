# Sourced by tests/cluster/cluster.sh: DIR/cluster.env, what `up` started and `down` stops.
# shellcheck shell=bash

# Set by `up` (from the options) or by load_cluster_env (from DIR/cluster.env).
NODE_MODE=0
APISERVER_HOST=127.0.0.1
NODE_IP=""
NODE_CIDR=""
NODE_BIN_DIR=""
DOCKERD_STARTED=0
SERVICE_ROUTE_ADDED=0
NODE_TEST_IMAGE=""

write_cluster_env() {
  cat >"$DIR/cluster.env.tmp" <<EOF
# Written by cluster.sh up; read (not sourced) by cluster.sh down/restart-apiserver.
CLUSTER_ID=$CLUSTER_ID
K8S_VERSION=$K8S_VERSION
APISERVER_URL=https://$APISERVER_HOST:$APISERVER_PORT
APISERVER_HOST=$APISERVER_HOST
APISERVER_PORT=$APISERVER_PORT
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_BIN=$APISERVER_BIN
ETCD_BIN=$ETCD_BIN
APISERVER_PID=$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)
ETCD_PID=$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)
KUBECONFIG=$DIR/kubeconfig
NODE=$NODE_MODE
EOF
  if ((NODE_MODE)); then
    cat >>"$DIR/cluster.env.tmp" <<EOF
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_CIDR=$NODE_CIDR
NODE_BIN_DIR=$NODE_BIN_DIR
DOCKERD_STARTED=$DOCKERD_STARTED
SERVICE_ROUTE_ADDED=$SERVICE_ROUTE_ADDED
PAUSE_IMAGE=$PAUSE_IMAGE
NODE_TEST_IMAGE=$NODE_TEST_IMAGE
EOF
  fi
  mv -f "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

# 1 for "1", else 0.
flag_value() {
  if [[ "$1" == 1 ]]; then echo 1; else echo 0; fi
}

load_cluster_env() {
  local key value
  CLUSTER_ID="" APISERVER_PORT="" ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_BIN="" ETCD_BIN=""
  APISERVER_HOST=127.0.0.1 NODE_MODE=0 NODE_IP="" NODE_CIDR="" NODE_BIN_DIR="" DOCKERD_STARTED=0
  SERVICE_ROUTE_ADDED=0
  NODE_TEST_IMAGE=""
  [[ -f "$DIR/cluster.env" ]] || return 1
  # Parsed, not sourced: only the keys we know.
  while IFS='=' read -r key value; do
    case "$key" in
      CLUSTER_ID) CLUSTER_ID="$value" ;;
      APISERVER_PORT) APISERVER_PORT="$value" ;;
      ETCD_CLIENT_PORT) ETCD_CLIENT_PORT="$value" ;;
      ETCD_PEER_PORT) ETCD_PEER_PORT="$value" ;;
      APISERVER_BIN) APISERVER_BIN="$value" ;;
      ETCD_BIN) ETCD_BIN="$value" ;;
      APISERVER_HOST) APISERVER_HOST="$value" ;;
      NODE) NODE_MODE="$(flag_value "$value")" ;;
      NODE_IP) NODE_IP="$value" ;;
      NODE_CIDR) NODE_CIDR="$value" ;;
      NODE_BIN_DIR) NODE_BIN_DIR="$value" ;;
      DOCKERD_STARTED) DOCKERD_STARTED="$(flag_value "$value")" ;;
      SERVICE_ROUTE_ADDED) SERVICE_ROUTE_ADDED="$(flag_value "$value")" ;;
      NODE_TEST_IMAGE) NODE_TEST_IMAGE="$value" ;;
    esac
  done <"$DIR/cluster.env"
  return 0
}

