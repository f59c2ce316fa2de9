#!/usr/bin/env bash
# `make run`: the main job.
#
# With a reachable cluster in the kubeconfig: installs/updates the Automaton CRD and runs the
# controller locally with the exec transport against the local Gas Town (`gt`/`bd`).
#
# With no cluster: brings up the local test cluster (tests/cluster/cluster.sh), installs the
# CRD and the chart's RBAC, serves the compiled policy as the admission webhook, and runs the
# controller as the chart's ServiceAccount. Without a Gas Town installation it uses the
# simulated one (tests' fake gt/bd) and says so. Ctrl-C stops everything it started.
#
# TOWNS=N (`make run TOWNS=2`), N > 1: N simulated Gas Towns, each with its own controller
# (claimer town-1..town-N), on the local API server, with the policy routing rigs to towns
# (scripts/lib/run-towns.sh). TOWNS unset or 1: one town, as above.
#
# `scripts/run.sh --node` (`make run-node`) only prints how to try the real deployment instead:
# the controller image on a local node, installed with the chart.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/lib/run-towns.sh
source scripts/lib/run-towns.sh
towns="${TOWNS:-1}"
if ! [[ "$towns" =~ ^[1-9][0-9]?$ ]]; then
  echo "run.sh: TOWNS must be a number of Gas Towns from 1 to 99, not '$towns'" >&2
  exit 2
fi

if [[ "${1:-}" == --node ]]; then
  node_dir="${GASTOWN_NODE_DIR:-$root/.cluster/node}"
  bridge_ip="$(ip -4 -o addr show docker0 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4 }' || true)"
  cat <<NODE
The controller as users deploy it: its image in a pod on a local node, installed with Helm.
(Needs root: the node runs Debian's docker.io and a kubelet; the first \`up --node\` builds the
node binaries, about 15-25 minutes, cached afterwards.)

  make image                                          # $(scripts/image.sh repository):$(scripts/image.sh tag), static, FROM scratch
  bash tests/cluster/cluster.sh up $node_dir --node   # API server + a node using the same dockerd
  export KUBECONFIG=$node_dir/kubeconfig

  # gt-proxy-server on your Gas Town host, reachable from pods (on this machine: the docker0
  # address, ${bridge_ip:-172.17.0.1 once docker runs}), and a client certificate it trusts:
  kubectl create namespace gastown-system
  kubectl -n gastown-system create secret generic gt-proxy-client \\
    --from-file=tls.crt=client.crt --from-file=tls.key=client.key --from-file=ca.crt=ca.crt
  helm install gastown-operator charts/gastown-operator -n gastown-system \\
    --set gastown.proxy.url=https://<gt-proxy host>:9876 \\
    --set gastown.proxy.existingSecret=gt-proxy-client --wait
  # the image is already in the node's docker: no registry, no pull (pullPolicy IfNotPresent)

  kubectl -n gastown-system get pods,svc               # one pod, Ready through /readyz
  kubectl apply -f crds/examples/local.yaml            # a local Automaton (the claim policy: README "Install")
  kubectl describe automaton fix-login                 # conditions and events
  helm uninstall gastown-operator -n gastown-system    # the CRD and Automatons stay (chart README)
  bash tests/cluster/cluster.sh down $node_dir

Without a gt-proxy-server the pod still starts; claimed Automatons then show
GasTownReachable=False with the connection error. \`make test\` runs all of this against a fake
gt-proxy-server (controller/tests/first_day/).
NODE
  exit 0
fi

dev_dir="${GASTOWN_DEV_DIR:-$root/.cluster/dev}"
bin_dir="$root/target/debug"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
loud() { printf '\n\033[1;33m*** %s ***\033[0m\n\n' "$*"; }

echo "==> building the controller and the dev tools"
cargo build -q --workspace --bins

pids=()
own_cluster=0
cleanup() {
  # A second signal (make forwards SIGTERM to its recipe; an impatient Ctrl-C) must not cut the
  # teardown short and leave the cluster running.
  trap '' INT TERM
  trap - EXIT
  echo
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((own_cluster)); then bash tests/cluster/cluster.sh down "$dev_dir" || true; fi
}
trap cleanup INT TERM EXIT

reachable() {
  command -v kubectl >/dev/null 2>&1 || return 1
  timeout 10 kubectl get --raw=/readyz >/dev/null 2>&1
}

if ((towns > 1)); then
  run_towns "$towns"
  wait -n "${pids[@]}" || true
  exit 0
fi

controller_args=(--sync-interval "${GASTOWN_SYNC_INTERVAL:-5s}" --metrics-addr "${GASTOWN_METRICS_ADDR:-127.0.0.1:8080}")

# Gas Town: the real one when installed, else the simulated one.
town_root="${GASTOWN_TOWN_ROOT:-$HOME/gt}"
if command -v gt >/dev/null 2>&1 && command -v bd >/dev/null 2>&1 && [[ -f "$town_root/mayor/town.json" ]]; then
  say "using the local Gas Town at $town_root"
  controller_args+=(--town-root "$town_root")
else
  town_root="$dev_dir/town"
  mkdir -p "$dev_dir"
  fake_bin="$("$bin_dir/fake-gastown" init "$town_root" --rigs gastown,demo --auto-progress 5000,20000,merged)"
  loud "Gas Town (gt/bd) is not installed here: using the SIMULATED Gas Town in $town_root (beads start after 5 s and close after 20 s)"
  controller_args+=(--town-root "$town_root" --gt-path "$fake_bin/gt" --bd-path "$fake_bin/bd")
fi

if [[ -z "${GASTOWN_FORCE_LOCAL_CLUSTER:-}" ]] && reachable; then
  say "cluster reachable ($(kubectl config current-context 2>/dev/null || echo in-cluster)): installing the CRD"
  kubectl apply --server-side --field-manager=gastown-operator -f crds/automaton.yaml
  kubectl wait --for=condition=Established --timeout=60s crd/automatons.olympus.io
  kubeconfig="${KUBECONFIG:-$HOME/.kube/config}"
  controller_kubeconfig="$kubeconfig"
  echo "(the claim policy is not served here: install it with Kubewarden, see README 'Install')"
else
  say "no reachable cluster: starting the local API server in $dev_dir"
  own_cluster=1
  bash tests/cluster/cluster.sh down "$dev_dir" >/dev/null 2>&1 || true
  bash tests/cluster/cluster.sh up "$dev_dir"
  kubeconfig="$dev_dir/kubeconfig"
  export KUBECONFIG="$kubeconfig"
  kubectl apply --server-side --field-manager=gastown-operator -f crds/automaton.yaml >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd/automatons.olympus.io >/dev/null
  say "rendering the chart (real Helm) for its RBAC and ClusterAdmissionPolicy"
  python3 tests/chart/render.py --out "$dev_dir/chart" --release-name gastown-operator --namespace gastown-system \
    --kube-version v1.20.2 --no-crds --values - >/dev/null <<'VALUES'
gastown:
  proxy: {url: "https://gt-proxy.invalid:9876", existingSecret: unused-in-make-run}
policy:
  enabled: true
  settings:
    defaultRig: gastown
VALUES
  kubectl create namespace gastown-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  rbac_only "$dev_dir/chart/manifests.yaml" "$dev_dir/rbac.yaml"
  kubectl apply --server-side --field-manager=gastown-operator -f "$dev_dir/rbac.yaml" >/dev/null
  "$bin_dir/gastown-dev" webhook --kubeconfig "$kubeconfig" --manifests "$dev_dir/chart/manifests.yaml" \
    --policy policy/policy.wasm &
  pids+=($!)
  # The controller runs as the chart's ServiceAccount, with exactly the chart's RBAC.
  controller_kubeconfig="$dev_dir/users/gastown-operator.kubeconfig"
  sleep 2
fi

say "starting gastown-controller"
KUBECONFIG="$controller_kubeconfig" "$bin_dir/gastown-controller" "${controller_args[@]}" &
pids+=($!)

cat <<HELP

Try it (in another terminal):

  export KUBECONFIG=$kubeconfig
  kubectl apply -f crds/examples/local.yaml            # a local Automaton: claimed, then slung
  kubectl apply -f crds/examples/kubernetes-mode.yaml  # left to the Kubernetes executor
  kubectl get automatons -w                            # watch Claimed -> Dispatched -> Running -> Succeeded
  kubectl describe automaton fix-login                 # conditions and events
  kubectl delete automaton fix-login                   # releases the work in Gas Town
  curl -s ${GASTOWN_METRICS_ADDR:-127.0.0.1:8080}/metrics | grep ^gastown_

Press Ctrl-C to stop everything.
(To see the controller as users deploy it, an image in a pod installed with Helm: make run-node.
Several Gas Towns, each with its own controller: make run TOWNS=2.)
HELP
wait -n "${pids[@]}" || true
