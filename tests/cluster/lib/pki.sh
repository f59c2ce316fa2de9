# Sourced by tests/cluster/cluster.sh: certificates, users' tokens and kubeconfigs in DIR.
# shellcheck shell=bash

readonly KUBERNETES_SERVICE_IP="10.0.0.1"

# Users written to DIR/users: file name | user name | groups (comma separated).
readonly USERS=(
  "alice|alice|gastown-claimers"
  "bob|bob|developers"
  "mallory|mallory|"
  "gastown-operator|system:serviceaccount:gastown-system:gastown-operator|system:serviceaccounts,system:serviceaccounts:gastown-system,system:authenticated"
)

# sign_cert NAME SUBJECT EXTENSION...: DIR/certs/NAME.key and NAME.crt, signed by the cluster CA.
sign_cert() {
  local c="$DIR/certs" name="$1" subject="$2"
  shift 2
  openssl req -new -nodes -newkey rsa:2048 -sha256 \
    -keyout "$c/$name.key" -out "$c/$name.csr" -subj "$subject" &&
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "$@" >"$c/$name.ext" &&
    openssl x509 -req -sha256 -days 3650 -in "$c/$name.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
      -CAcreateserial -extfile "$c/$name.ext" -out "$c/$name.crt"
}

generate_certs() {
  local c="$DIR/certs" logfile="$DIR/logs/openssl.log"
  local sans="IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  if ((NODE_MODE)); then
    sans+=",DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
  fi
  mkdir -p "$c"
  {
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
      -keyout "$c/ca.key" -out "$c/ca.crt" -subj "/CN=gastown-test-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" &&
      sign_cert serving "/CN=kube-apiserver" "extendedKeyUsage=serverAuth" "subjectAltName=$sans" &&
      openssl genrsa -out "$c/sa.key" 2048 &&
      openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub"
  } >"$logfile" 2>&1 || die_with_log "generating certificates with openssl failed" "$logfile"
  if ((NODE_MODE)); then
    # The API server's client certificate for the kubelet (which trusts only this CA).
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      "extendedKeyUsage=clientAuth" >>"$logfile" 2>&1 ||
      die_with_log "generating the kubelet client certificate failed" "$logfile"
  fi
  chmod 600 "$c"/*.key
}

new_token() { openssl rand -hex 24; }

# write_kubeconfig FILE TOKEN USERNAME
write_kubeconfig() {
  local file="$1" token="$2" user="$3" ca
  ca="$(base64 -w0 <"$DIR/certs/ca.crt")"
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gastown-test
  cluster:
    server: https://$APISERVER_HOST:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: gastown-test
  context:
    cluster: gastown-test
    user: $user
    namespace: default
current-context: gastown-test
EOF
}

write_tokens() {
  local entry file user groups token admin_token
  mkdir -p "$DIR/users"
  admin_token="$(new_token)"
  umask 077
  echo "$admin_token" >"$DIR/admin.token"
  printf '%s,admin,admin,"system:masters"\n' "$admin_token" >"$DIR/tokens.csv"
  for entry in "${USERS[@]}"; do
    IFS='|' read -r file user groups <<<"$entry"
    token="$(new_token)"
    echo "$token" >"$DIR/users/$file.token"
    if [[ -n "$groups" ]]; then
      printf '%s,%s,%s,"%s"\n' "$token" "$user" "$user" "$groups" >>"$DIR/tokens.csv"
    else
      printf '%s,%s,%s\n' "$token" "$user" "$user" >>"$DIR/tokens.csv"
    fi
  done
}

write_kubeconfigs() {
  local entry file user groups
  write_kubeconfig "$DIR/kubeconfig" "$(cat "$DIR/admin.token")" admin
  for entry in "${USERS[@]}"; do
    IFS='|' read -r file user groups <<<"$entry"
    write_kubeconfig "$DIR/users/$file.kubeconfig" "$(cat "$DIR/users/$file.token")" "$user"
  done
}

