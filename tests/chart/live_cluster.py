"""The real API server the test_cluster_*.py modules use (tests/cluster/cluster.sh), prepared
once per run by the `cluster` fixture in conftest.py.

Needs GASTOWN_CHART_KUBECONFIG, an admin kubeconfig written by cluster.sh (scripts/test.sh
always sets it; without it those tests are skipped):

    bash tests/cluster/cluster.sh up /tmp/chartcl
    GASTOWN_CHART_KUBECONFIG=/tmp/chartcl/kubeconfig python3 -m pytest -q tests/chart
    bash tests/cluster/cluster.sh down /tmp/chartcl

Re-runnable against the same cluster and safe next to other tests using it: what the tests
create for real is deleted again, also what an interrupted earlier run left; namespaces are only
created (the test server never finishes deleting one) and CRDs only registered (stand-ins only
where the kind is unknown).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import kube
import yaml
from helpers import NAMESPACE, REPO

KUBECONFIG_ENV = "GASTOWN_CHART_KUBECONFIG"
KUBECONFIG = os.environ.get(KUBECONFIG_ENV)

SKIP_REASON = (
    f"{KUBECONFIG_ENV} is not set: these tests need a real API server (scripts/test.sh sets it; "
    f"by hand: bash tests/cluster/cluster.sh up DIR, then {KUBECONFIG_ENV}=DIR/kubeconfig)"
)

HERE = Path(__file__).resolve().parent
# The project's CRD, and stand-ins for third-party CRDs the chart renders objects of.
PROJECT_CRD = REPO / "crds" / "automaton.yaml"
STAND_IN_CRDS = sorted((HERE / "crds").glob("*.yaml"))

# The controller's identity in a default install (release gastown-operator); cluster.sh has a
# token for it. Other tests bind it too.
OPERATOR_USER = "system:serviceaccount:gastown-system:gastown-operator"
# The operator user's kubeconfig, written by cluster.sh next to the admin one.
OPERATOR_KUBECONFIG_NAME = "gastown-operator.kubeconfig"

# Namespaces of the namespaced-scope RBAC variant, and one the controller must not reach.
RBAC_TEAM_A = "chartrbac-team-a"
RBAC_TEAM_B = "chartrbac-team-b"
RBAC_OUTSIDE = "chartrbac-outside"
# The two towns' release namespaces (test_cluster_towns.py and the towns dry runs).
TOWN_ALICE_NAMESPACE = "charttown-alice"
TOWN_BOB_NAMESPACE = "charttown-bob"


@dataclass(frozen=True)
class Cluster:
    admin: kube.Kubectl
    operator: kube.Kubectl
    # `.Capabilities.KubeVersion` for rendering: the server's own version (v1.20.2 on the
    # test cluster, so the PodDisruptionBudget is policy/v1beta1).
    kube_version: str
    # `kubectl api-resources -o name` once the CRDs are registered.
    api_resources: frozenset[str]


def connect(kubeconfig: Path, cache_dir: Path) -> Cluster:
    """The API server, with the CRDs the chart's objects need and the namespaces they use."""
    assert kubeconfig.is_file(), f"{KUBECONFIG_ENV}={KUBECONFIG}: no such file"
    operator_kubeconfig = kubeconfig.parent / "users" / OPERATOR_KUBECONFIG_NAME
    assert operator_kubeconfig.is_file(), (
        f"{operator_kubeconfig} is missing: {KUBECONFIG_ENV} must point at the kubeconfig "
        "written by tests/cluster/cluster.sh up DIR (DIR/kubeconfig)"
    )
    binary = kube.find_kubectl()
    assert binary, "kubectl not found (on PATH or /usr/bin/kubectl)"
    admin = kube.Kubectl(binary, kubeconfig, cache_dir)
    operator = admin.as_kubeconfig(operator_kubeconfig)

    raw = admin.run("get", "--raw", "/version").stdout
    version = yaml.safe_load(raw)["gitVersion"]
    match = re.match(r"^v\d+\.\d+\.\d+", version)
    assert match, f"unexpected server version {version!r}"

    # The project's CRD is (re)applied, so the server checks against the current one; the
    # stand-ins are only registered where the kind is unknown (a real CRD is left alone).
    project_crds = [d for d in yaml.safe_load_all(PROJECT_CRD.read_text()) if d]
    admin.apply(project_crds, server_side=True)
    crd_names = [c["metadata"]["name"] for c in project_crds]
    stand_ins = [d for path in STAND_IN_CRDS for d in yaml.safe_load_all(path.read_text()) if d]
    admin.create_if_absent(stand_ins)
    admin.wait_established(crd_names + [c["metadata"]["name"] for c in stand_ins])

    admin.ensure_namespaces(
        [
            NAMESPACE,
            "team-a",
            "team-b",
            "agents",
            RBAC_TEAM_A,
            RBAC_TEAM_B,
            RBAC_OUTSIDE,
            TOWN_ALICE_NAMESPACE,
            TOWN_BOB_NAMESPACE,
        ]
    )
    return Cluster(
        admin=admin,
        operator=operator,
        kube_version=match.group(0),
        api_resources=frozenset(admin.api_resources()),
    )


def minor_version(cluster: Cluster) -> int:
    """The server's Kubernetes minor version (20 for v1.20.2)."""
    return int(cluster.kube_version.split(".")[1])
