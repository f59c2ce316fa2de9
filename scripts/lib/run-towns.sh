# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034  # dev_dir, bin_dir, pids and own_cluster belong to run.sh
# Sourced by scripts/run.sh for `make run TOWNS=N` (N > 1): N simulated Gas Towns on the local
# API server, as the chart README's "Several Gas Towns" installs them. Town i is the claimer
# `town-i`, the chart's release `town-i` in namespace `gastown-town-i` (the release town-1 owns
# the policy and lists every town), a fake Gas Town in DEV_DIR/town-i with the rig of that town,
# and a controller running with a real token of its release's ServiceAccount.
# Uses run.sh's dev_dir, bin_dir, pids, own_cluster, say and loud.

# The rig that lives in town i: town-1 has today's default rig, so crds/examples/local.yaml
# goes there.
town_rig() {
  case "$1" in
    1) echo gastown ;;
    2) echo demo ;;
    *) echo "rig$1" ;;
  esac
}

# A rig that no town lists: claims for it go where the requester or an explicit town sends them.
SHARED_RIG=scratch

# The chart values of town i's release among n towns.
town_values() {
  local n="$1" i="$2" t
  cat <<VALUES
gastown:
  claimer: town-$i
  proxy: {url: "https://gt-proxy.invalid:9876", existingSecret: unused-in-make-run}
serviceAccount: {name: gastown-operator}
VALUES
  if ((i > 1)); then
    printf 'policy: {enabled: false}\n'
    return
  fi
  printf 'policy:\n  enabled: true\n  settings:\n    defaultRig: gastown\n    defaultTown: town-1\n    towns:\n'
  for ((t = 1; t <= n; t++)); do
    printf '      - {name: town-%s, rigs: [%s], controllerUsers: ["%s"]}\n' \
      "$t" "$(town_rig "$t")" "system:serviceaccount:gastown-town-$t:gastown-operator"
  done
}

# The ServiceAccount and RBAC objects of a rendered chart (what the controller runs with).
rbac_only() {
  python3 - "$1" "$2" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
keep = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
yaml.safe_dump_all([d for d in docs if d.get("kind") in keep], open(sys.argv[2], "w"))
PY
}

# Renders and applies town i's release: its namespace, ServiceAccount and RBAC.
install_town() {
  local n="$1" i="$2" ns="gastown-town-$2" out="$dev_dir/chart-town-$2"
  town_values "$n" "$i" | python3 tests/chart/render.py --out "$out" --release-name "town-$i" \
    --namespace "$ns" --kube-version v1.20.2 --no-crds --values - >/dev/null
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  rbac_only "$out/manifests.yaml" "$out/rbac.yaml"
  kubectl apply --server-side --field-manager=gastown-operator -f "$out/rbac.yaml" >/dev/null
}

# A kubeconfig for town i's ServiceAccount, with a token from the TokenRequest API.
town_kubeconfig() {
  local i="$1" file="$dev_dir/users/town-$1.kubeconfig" token
  token="$(kubectl -n "gastown-town-$i" create token gastown-operator --duration=24h)"
  cp "$dev_dir/kubeconfig" "$file"
  chmod 600 "$file"
  kubectl --kubeconfig "$file" config set-credentials "town-$i" --token="$token" >/dev/null
  kubectl --kubeconfig "$file" config set-context --current --user "town-$i" >/dev/null
  kubectl --kubeconfig "$file" config delete-user admin >/dev/null
  echo "$file"
}

# Example Automatons: one per town routed by its rig, and one asking for the last town by name.
write_town_examples() {
  local n="$1" i
  mkdir -p "$dev_dir/examples"
  for ((i = 1; i <= n; i++)); do
    town_example "hello-town-$i" "$(town_rig "$i")" "" >"$dev_dir/examples/town-$i.yaml"
  done
  town_example "ask-town-$n" "$SHARED_RIG" "town-$n" >"$dev_dir/examples/ask-town-$n.yaml"
}

town_example() {
  local name="$1" rig="$2" town="$3"
  printf 'apiVersion: olympus.io/v1alpha1\nkind: Automaton\nmetadata:\n  name: %s\n' "$name"
  [[ -z "$town" ]] || printf '  annotations:\n    gastown.io/claim: %s\n' "$town"
  printf 'spec:\n'
  [[ -n "$town" ]] || printf '  executionMode: local\n'
  printf '  rig: %s\n  task:\n    title: Say hello from %s\n' "$rig" "${town:-the town of rig $rig}"
}

# Starts everything for n towns; the caller waits on pids.
run_towns() {
  local n="$1" i rig fake_bin addr host port
  addr="${GASTOWN_METRICS_ADDR:-127.0.0.1:8080}"
  host="${addr%:*}"
  port="${addr##*:}"
  loud "TOWNS=$n: $n SIMULATED Gas Towns (town-1..town-$n) with a controller each, on the local API server (the routing needs the claim policy, which make run serves only there)"
  say "starting the local API server in $dev_dir"
  own_cluster=1
  bash tests/cluster/cluster.sh down "$dev_dir" >/dev/null 2>&1 || true
  bash tests/cluster/cluster.sh up "$dev_dir"
  export KUBECONFIG="$dev_dir/kubeconfig"
  kubectl apply --server-side --field-manager=gastown-operator -f crds/automaton.yaml >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd/automatons.olympus.io >/dev/null
  say "rendering one chart release per town (real Helm); town-1's owns the policy"
  for ((i = 1; i <= n; i++)); do install_town "$n" "$i"; done
  "$bin_dir/gastown-dev" webhook --kubeconfig "$KUBECONFIG" \
    --manifests "$dev_dir/chart-town-1/manifests.yaml" --policy policy/policy.wasm &
  pids+=($!)
  sleep 2
  for ((i = 1; i <= n; i++)); do
    rig="$(town_rig "$i")"
    rm -rf "$dev_dir/town-$i"
    fake_bin="$("$bin_dir/fake-gastown" init "$dev_dir/town-$i" --rigs "$rig,$SHARED_RIG" \
      --prefix "t$i" --auto-progress 5000,20000,merged)"
    say "town-$i: fake Gas Town $dev_dir/town-$i (rigs $rig, $SHARED_RIG; beads t$i-*), metrics $host:$((port + i - 1))"
    KUBECONFIG="$(town_kubeconfig "$i")" "$bin_dir/gastown-controller" --claimer "town-$i" \
      --sync-interval "${GASTOWN_SYNC_INTERVAL:-5s}" --metrics-addr "$host:$((port + i - 1))" \
      --town-root "$dev_dir/town-$i" --gt-path "$fake_bin/gt" --bd-path "$fake_bin/bd" \
      > >(sed -u "s/^/[town-$i] /") 2>&1 &
    pids+=($!)
  done
  write_town_examples "$n"
  towns_help "$n" "$host" "$port"
}

towns_help() {
  local n="$1" host="$2" port="$3" i
  printf '\nTry it (in another terminal):\n\n  export KUBECONFIG=%s\n' "$dev_dir/kubeconfig"
  for ((i = 1; i <= n; i++)); do
    printf '  kubectl apply -f %s   # rig %s: routed to town-%s by its rig\n' \
      "$dev_dir/examples/town-$i.yaml" "$(town_rig "$i")" "$i"
  done
  cat <<HELP
  kubectl apply -f $dev_dir/examples/ask-town-$n.yaml   # gastown.io/claim: town-$n (rig $SHARED_RIG is in no town)
  kubectl apply -f crds/examples/local.yaml            # rig gastown: town-1
  kubectl get automatons -w                            # each claim shows its town
  cat $dev_dir/town-<i>/.fake-gastown/calls.jsonl      # what each town's gt/bd was asked
  curl -s $host:$port/metrics | grep ^gastown_             # town-1 (town-i: port $port+i-1)

The policy's towns settings: $dev_dir/chart-town-1/manifests.yaml (ClusterAdmissionPolicy).
Press Ctrl-C to stop everything.
HELP
}
