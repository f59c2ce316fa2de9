"""The RBAC the chart offers a Kubewarden PolicyServer (policy.policyServerRbac), created for
real on the test API server for a stand-in PolicyServer ServiceAccount
(chartps-kubewarden/chartps-policy-server), which then makes policy-server's own requests for
the claim limit with a real token.

The chart's ClusterRole and ClusterRoleBinding are created for real and the identity then makes
the requests policy-server makes for kubernetes/list_resources_by_namespace: API discovery of
olympus.io/v1alpha1 (kubewarden-controller
crates/policy-evaluator/src/callback_handler/kubernetes/client.rs, build_kube_resource), then a
LIST and a WATCH of the namespace's Automatons with the claim label selector (a kube-rs
reflector: .../kubernetes/reflector.rs).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kube
import pytest
import render
import yaml
from helpers import NAMESPACE, identity, values
from live_cluster import RBAC_OUTSIDE, Cluster
from rbac_checks import AUTOMATONS, RBAC_PROPAGATION_SECS, Check, ask, assert_matrix, forbidden

PS_RELEASE = "chartps"
PS_NAMESPACE = "chartps-kubewarden"
PS_SERVICE_ACCOUNT = "chartps-policy-server"
PS_USER = f"system:serviceaccount:{PS_NAMESPACE}:{PS_SERVICE_ACCOUNT}"
PS_OBJECT_NAME = f"{PS_RELEASE}-gastown-operator-policy-server"
PS_VALUES = {
    "policy": {
        "enabled": True,
        "settings": {"maxActiveClaimsPerNamespace": 3},
        "policyServerRbac": {
            "create": True,
            "serviceAccount": {"name": PS_SERVICE_ACCOUNT, "namespace": PS_NAMESPACE},
        },
    }
}
# The namespace whose claims are counted in the requests below.
PS_TEAM = "team-a"
AUTOMATONS_PATH = "/apis/olympus.io/v1alpha1"
CLAIM_SELECTOR = "labelSelector=gastown.io%2Fclaimed-by%3Dgastown-local"


def policy_server_rbac_objects() -> list[dict[str, Any]]:
    """The chart's PolicyServer ClusterRole and ClusterRoleBinding for the ``chartps`` release."""
    objs = render.template_objects(values(PS_VALUES), release_name=PS_RELEASE, namespace=NAMESPACE)
    mine = [o for o in objs if o["metadata"]["name"] == PS_OBJECT_NAME]
    assert sorted(o["kind"] for o in mine) == ["ClusterRole", "ClusterRoleBinding"]
    return mine


def policy_server_account() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": PS_SERVICE_ACCOUNT, "namespace": PS_NAMESPACE},
    }


def policy_server_requests(kubectl: kube.Kubectl) -> dict[str, subprocess.CompletedProcess[str]]:
    """policy-server's requests for kubernetes/list_resources_by_namespace, as ``kubectl``."""
    listing = f"{AUTOMATONS_PATH}/namespaces/{PS_TEAM}/automatons?{CLAIM_SELECTOR}"
    return {
        "discovery": kubectl.run("get", "--raw", AUTOMATONS_PATH, check=False),
        "list": kubectl.run("get", "--raw", listing, check=False),
        # The WATCH ends after one second on the server's side.
        "watch": kubectl.run("get", "--raw", f"{listing}&watch=true&timeoutSeconds=1", check=False),
    }


@pytest.fixture
def policy_server_identity(cluster: Cluster, tmp_path: Path) -> Iterator[kube.Kubectl]:
    """kubectl as the stand-in PolicyServer ServiceAccount, with none of the chart's RBAC (also
    none left by an interrupted earlier run) before and after the test."""
    cluster.admin.ensure_namespaces([PS_NAMESPACE])
    rbac = policy_server_rbac_objects()

    def revoke() -> None:
        cluster.admin.delete(rbac)
        kube.wait_for(
            lambda: not any(ask(cluster, [Check("list", AUTOMATONS)], PS_USER).values()),
            timeout_secs=RBAC_PROPAGATION_SECS,
        )

    revoke()
    cluster.admin.create_if_absent([policy_server_account()])
    token = cluster.admin.create_token(PS_SERVICE_ACCOUNT, PS_NAMESPACE)
    try:
        yield cluster.admin.with_token(token, tmp_path / "policy-server.kubeconfig")
    finally:
        revoke()


def test_policy_server_rbac_lets_the_policy_server_list_and_watch_automatons(
    cluster: Cluster, policy_server_identity: kube.Kubectl
) -> None:
    rbac = policy_server_rbac_objects()
    # Without the chart's RBAC the PolicyServer may discover the API but not read Automatons:
    # the claim limit would refuse every claim.
    before = policy_server_requests(policy_server_identity)
    assert before["discovery"].returncode == 0, before["discovery"].stderr
    assert forbidden(before["list"]), before["list"].stderr
    assert forbidden(before["watch"]), before["watch"].stderr

    created = cluster.admin.apply(rbac)
    assert sorted(map(identity, created)) == sorted(map(identity, rbac))
    allowed = [
        Check("list", AUTOMATONS),
        Check("watch", AUTOMATONS),
        Check("list", AUTOMATONS, PS_TEAM),
        Check("watch", AUTOMATONS, RBAC_OUTSIDE),
    ]
    denied = [
        # Not needed for list_resources_by_namespace (get is kubernetes/get_resource).
        Check("get", AUTOMATONS, PS_TEAM),
        *(Check(v, AUTOMATONS, PS_TEAM) for v in ("create", "update", "patch", "delete")),
        Check("deletecollection", AUTOMATONS, PS_TEAM),
        *(Check(v, AUTOMATONS, PS_TEAM, "status") for v in ("get", "update", "patch")),
        Check("update", AUTOMATONS, PS_TEAM, "finalizers"),
        Check("list", "secrets"),
        Check("list", "pods", PS_TEAM),
        Check("list", "clusteradmissionpolicies.v1.policies.kubewarden.io"),
    ]
    assert_matrix(cluster, PS_USER, allowed, denied)

    after = policy_server_requests(policy_server_identity)
    for request, result in after.items():
        assert result.returncode == 0, (request, result.stderr)
    listed = yaml.safe_load(after["list"].stdout)
    assert listed["kind"] == "AutomatonList"
    discovered = yaml.safe_load(after["discovery"].stdout)
    assert "automatons" in [r["name"] for r in discovered["resources"]]
    # A single object (kubernetes/get_resource) stays forbidden, not merely not found.
    one_object = policy_server_identity.run(
        "get", "--raw", f"{AUTOMATONS_PATH}/namespaces/{PS_TEAM}/automatons/none", check=False
    )
    assert forbidden(one_object), one_object.stderr
