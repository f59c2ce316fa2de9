#!/usr/bin/env bash
# The whole test suite (`make test`, called by .ci/run): brings up one real API server for all
# test binaries (tests/cluster/cluster.sh), and a second cluster with a node where pods really
# run (`cluster.sh up --node`) for the tests that deploy pods, runs the Rust tests and the Helm
# chart tests, and stops both clusters again, also on failure or Ctrl-C.
#
# GASTOWN_TEST_CLUSTER_DIR / GASTOWN_TEST_NODE_CLUSTER_DIR name running clusters to use instead.
# The node cluster needs root; without it the node tests say that they did not run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# helm and kubectl as installed by scripts/setup.sh (`make test` runs it first).
tools_bin="$(scripts/setup.sh --print-bin-dir)"
export GASTOWN_TOOLS_BIN="$tools_bin"
export PATH="$tools_bin:$PATH"

own_dirs=()
stop_own_clusters() {
  local dir
  for dir in "${own_dirs[@]}"; do
    bash tests/cluster/cluster.sh down "$dir" >/dev/null 2>&1 || true
  done
}
trap stop_own_clusters EXIT

cluster_dir="${GASTOWN_TEST_CLUSTER_DIR:-}"
if [[ -z "$cluster_dir" ]]; then
  cluster_dir="$root/.cluster/test"
  bash tests/cluster/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true
  own_dirs+=("$cluster_dir")
  bash tests/cluster/cluster.sh up "$cluster_dir" --watch-pid $$
fi
export GASTOWN_TEST_CLUSTER_DIR="$cluster_dir"

node_cluster_dir="${GASTOWN_TEST_NODE_CLUSTER_DIR:-}"
own_node_cluster=0
if [[ -z "$node_cluster_dir" && -z "${GASTOWN_TEST_SKIP_NODE:-}" ]]; then
  if [[ "$(id -u)" == 0 ]]; then
    node_cluster_dir="$root/.cluster/test-node"
    bash tests/cluster/cluster.sh down "$node_cluster_dir" >/dev/null 2>&1 || true
    own_dirs+=("$node_cluster_dir")
    own_node_cluster=1
    bash tests/cluster/cluster.sh up "$node_cluster_dir" --node --watch-pid $$
  else
    export GASTOWN_TEST_SKIP_NODE="not root: a node runs dockerd, kubelet and kube-proxy as root; run make test as root to include the node tests"
    echo "==> NOTE: the node tests will not run ($GASTOWN_TEST_SKIP_NODE)"
  fi
fi
if [[ -n "$node_cluster_dir" ]]; then
  export GASTOWN_TEST_NODE_CLUSTER_DIR="$node_cluster_dir"
fi

echo "==> cargo test (workspace)"
cargo test --workspace --no-fail-fast -- --skip a_users_first_day_on_a_real_node

# On its own, with its progress shown: it builds the controller image (make image, a static musl
# release build the first time) and installs, upgrades and uninstalls the chart on the node.
echo "==> a user's first day on the node: make image, helm install/upgrade/uninstall (controller/tests/first_day/)"
cargo test -p gastown-controller --test first_day -- --nocapture

echo "==> benchmark smoke run (checks the benchmark code; asserts nothing about speed)"
make -s bench-smoke

echo "==> chart tests (real Helm through helm-python-sdk)"
GASTOWN_CHART_KUBECONFIG="$cluster_dir/kubeconfig" python3 -m pytest -q tests/chart

# `down` of a node cluster leaves nothing behind, and may be repeated.
check_node_teardown() {
  local dir="$1" left=()
  bash tests/cluster/cluster.sh down "$dir"
  bash tests/cluster/cluster.sh down "$dir"
  if docker info >/dev/null 2>&1; then
    [[ -z "$(docker ps -aq --filter 'name=^k8s_')" ]] || left+=("k8s_* containers")
  elif grep -qs '"Name":"/k8s_' /var/lib/docker/containers/*/config.v2.json; then
    left+=("k8s_* containers (in /var/lib/docker; dockerd is stopped)")
  fi
  ! findmnt -rn -o TARGET | grep -q "^$dir/" || left+=("mounts under $dir")
  ! { iptables-save; ip6tables-save; } 2>/dev/null | grep -q '^:KUBE-' || left+=("KUBE-* iptables chains")
  ! ip route show exact 10.0.0.0/24 | grep -q . || left+=("the route for the service range")
  local name pid
  for name in kubelet kube-proxy kube-controller-manager kube-scheduler; do
    for pid in $(pgrep -x "${name:0:15}" || true); do
      [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" != *"$dir/"* ]] || left+=("$name pid $pid")
    done
  done
  if ((${#left[@]})); then
    echo "cluster.sh down $dir left: ${left[*]}" >&2
    return 1
  fi
  echo "node cluster down: no k8s_* containers, mounts, KUBE-* chains, route or processes left"
}

if ((own_node_cluster)); then
  echo "==> stopping the node cluster and checking that it left nothing behind"
  check_node_teardown "$node_cluster_dir"
fi
if ((${#own_dirs[@]})); then
  echo "==> stopping the test clusters"
fi
