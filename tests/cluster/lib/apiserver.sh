# Sourced by tests/cluster/cluster.sh: etcd and kube-apiserver.
# shellcheck shell=bash
# shellcheck disable=SC2153 # APISERVER_HOST is set by state.sh and node-images.sh

readonly READY_TIMEOUT_SECS="${CLUSTER_READY_TIMEOUT_SECS:-60}"
readonly ETCD_READY_TIMEOUT_SECS=30
readonly SERVICE_CLUSTER_IP_RANGE="10.0.0.0/24"

wait_for_etcd() {
  local deadline=$((SECONDS + ETCD_READY_TIMEOUT_SECS)) pid
  pid="$(cat "$DIR/pids/etcd.pid")"
  until curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
    pid_is "$pid" "$ETCD_BIN" "$DIR" || die_with_log "etcd exited during start" "$DIR/logs/etcd.log"
    ((SECONDS < deadline)) || die_with_log "etcd not healthy after ${ETCD_READY_TIMEOUT_SECS}s" "$DIR/logs/etcd.log"
    sleep 0.2
  done
}

wait_for_apiserver() {
  local deadline=$((SECONDS + READY_TIMEOUT_SECS)) pid token
  pid="$(cat "$DIR/pids/kube-apiserver.pid")"
  token="$(cat "$DIR/admin.token")"
  until curl -fsS --max-time 5 --cacert "$DIR/certs/ca.crt" -H "Authorization: Bearer $token" \
    "https://$APISERVER_HOST:$APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok; do
    pid_is "$pid" "$APISERVER_BIN" "$DIR" ||
      die_with_log "kube-apiserver exited during start" "$DIR/logs/kube-apiserver.log"
    ((SECONDS < deadline)) ||
      die_with_log "kube-apiserver not ready after ${READY_TIMEOUT_SECS}s (/readyz)" "$DIR/logs/kube-apiserver.log"
    sleep 0.5
  done
}

start_etcd() {
  spawn etcd "$ETCD_BIN" \
    --name default \
    --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" \
    --logger zap --log-outputs stderr
  wait_for_etcd
}

start_apiserver() {
  local mode_flags=(
    --bind-address 127.0.0.1
    --advertise-address 127.0.0.1
    --disable-admission-plugins ServiceAccount
    --endpoint-reconciler-type none
  )
  if ((NODE_MODE)); then
    # Pods reach the API server on the docker0 IP (the `kubernetes` Service's endpoint, kept by
    # the default endpoint reconciler); the ServiceAccount admission plugin mounts tokens; the
    # API server talks to the kubelet (logs, exec) on its InternalIP with a client certificate.
    mode_flags=(
      --bind-address "$NODE_IP"
      --advertise-address "$NODE_IP"
      --client-ca-file "$DIR/certs/ca.crt"
      --kubelet-preferred-address-types InternalIP
      --kubelet-client-certificate "$DIR/certs/apiserver-kubelet-client.crt"
      --kubelet-client-key "$DIR/certs/apiserver-kubelet-client.key"
    )
  fi
  spawn kube-apiserver "$APISERVER_BIN" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    "${mode_flags[@]}" \
    --secure-port "$APISERVER_PORT" \
    --insecure-port 0 \
    --cert-dir "$DIR/certs" \
    --tls-cert-file "$DIR/certs/serving.crt" \
    --tls-private-key-file "$DIR/certs/serving.key" \
    --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/certs/sa.pub" \
    --service-account-signing-key-file "$DIR/certs/sa.key" \
    --service-cluster-ip-range "$SERVICE_CLUSTER_IP_RANGE" \
    --enable-priority-and-fairness=false \
    --allow-privileged=true \
    --profiling=false
  wait_for_apiserver
}

# Ports are free when picked but may be taken before the daemon binds: retry with new ones.
start_etcd_on_free_ports() {
  local attempt
  for attempt in 1 2 3; do
    read -r ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT < <(free_ports 3) || true
    [[ -n "${APISERVER_PORT:-}" ]] || die "could not pick free ports (python3 failed)"
    write_cluster_env
    if (start_etcd) 2>>"$DIR/logs/up.log"; then
      break
    fi
    stop_process etcd "$ETCD_BIN"
    if ! grep -q "address already in use" "$DIR/logs/etcd.log" 2>/dev/null || ((attempt == 3)); then
      die_with_log "etcd failed to start: $(last_start_error)" "$DIR/logs/etcd.log"
    fi
    log "etcd port taken; retrying with other ports"
    rm -rf "$DIR/etcd"
  done
  log "etcd up on 127.0.0.1:$ETCD_CLIENT_PORT"
}

start_apiserver_on_free_port() {
  local attempt
  for attempt in 1 2 3; do
    write_cluster_env
    if (start_apiserver) 2>>"$DIR/logs/up.log"; then
      break
    fi
    stop_process kube-apiserver "$APISERVER_BIN"
    if grep -q "address already in use" "$DIR/logs/kube-apiserver.log" 2>/dev/null && ((attempt < 3)); then
      log "kube-apiserver port taken; retrying with another port"
      read -r APISERVER_PORT < <(free_ports 1) || true
      continue
    fi
    die_with_log "kube-apiserver failed to start: $(last_start_error)" "$DIR/logs/kube-apiserver.log"
  done
}

# Why the last start attempt failed (its messages go to DIR/logs/up.log, not the terminal).
last_start_error() {
  grep 'error: ' "$DIR/logs/up.log" 2>/dev/null | tail -n 1 | sed 's/^cluster.sh: error: //' || true
}
