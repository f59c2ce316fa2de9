"""Makes the helper modules importable wherever pytest is started, and provides the real API
server to the test_cluster_*.py modules."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import live_cluster  # noqa: E402 - needs the path above


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> live_cluster.Cluster:
    """The API server, prepared once for every module that uses it; every test using it is
    skipped when GASTOWN_CHART_KUBECONFIG is not set."""
    if not live_cluster.KUBECONFIG:
        pytest.skip(live_cluster.SKIP_REASON)
    return live_cluster.connect(
        Path(live_cluster.KUBECONFIG), tmp_path_factory.mktemp("kube-cache")
    )
