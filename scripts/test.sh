#!/usr/bin/env bash
# The whole test suite (`make test`, called by .ci/run): brings up one real API server for all
# test binaries (tests/cluster/cluster.sh), runs the Rust tests and the Helm chart tests, and
# stops the server again, also on failure or Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cluster_dir="${GASTOWN_TEST_CLUSTER_DIR:-}"
own_cluster=0
if [[ -z "$cluster_dir" ]]; then
  cluster_dir="$root/.cluster/test"
  own_cluster=1
  bash tests/cluster/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true
  bash tests/cluster/cluster.sh up "$cluster_dir" --watch-pid $$
  trap 'bash tests/cluster/cluster.sh down "$cluster_dir" >/dev/null 2>&1 || true' EXIT
fi
export GASTOWN_TEST_CLUSTER_DIR="$cluster_dir"

echo "==> cargo test (workspace)"
cargo test --workspace --no-fail-fast

echo "==> benchmark smoke run (checks the benchmark code; asserts nothing about speed)"
make -s bench-smoke

echo "==> chart tests (real Helm through helm-python-sdk)"
GASTOWN_CHART_KUBECONFIG="$cluster_dir/kubeconfig" python3 -m pytest -q tests/chart

if ((own_cluster)); then
  echo "==> stopping the test cluster"
fi
