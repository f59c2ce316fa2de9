"""Two Gas Towns installed for real with Helm on the test API server: one release owns the
policy, the other does not, and neither takes an object of the other (Helm refuses to install
over an object another release owns, which the last step shows)."""

from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest
import value_sets as vs
import yaml
from helpers import CHART, values
from live_cluster import KUBECONFIG, TOWN_ALICE_NAMESPACE, TOWN_BOB_NAMESPACE, Cluster

ALICE_RELEASE = "charttown-alice"
BOB_RELEASE = "charttown-bob"
RELEASES = ((ALICE_RELEASE, TOWN_ALICE_NAMESPACE), (BOB_RELEASE, TOWN_BOB_NAMESPACE))
# value_sets names each town's ServiceAccount after its town.
RELEASE_ACCOUNTS = ((TOWN_ALICE_NAMESPACE, "gastown-alice"), (TOWN_BOB_NAMESPACE, "gastown-bob"))


def uninstall(name: str, namespace: str) -> None:
    with helm.Config(kubeconfig_path=KUBECONFIG, namespace=namespace) as config:
        config.uninstall(name, ignore_not_found=True, wait="watcher", timeout=60)


def install(name: str, namespace: str, user_values: dict) -> list[dict]:
    """`helm install` for real (no --wait: the test server runs no pods); the release's objects."""
    with helm.Config(kubeconfig_path=KUBECONFIG, namespace=namespace) as config:
        release = config.install(str(CHART), name, user_values, namespace=namespace)
    assert release["status"] == "deployed", release["status"]
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


@pytest.fixture
def towns_installed(cluster: Cluster) -> Iterator[dict[str, list[dict]]]:
    """Both towns' releases, removed again afterwards (and before, after an interrupted run)."""
    for name, namespace in RELEASES:
        uninstall(name, namespace)
    try:
        alice = vs.towns(TOWN_ALICE_NAMESPACE, TOWN_BOB_NAMESPACE)
        yield {
            ALICE_RELEASE: install(ALICE_RELEASE, TOWN_ALICE_NAMESPACE, values(alice)),
            BOB_RELEASE: install(BOB_RELEASE, TOWN_BOB_NAMESPACE, values(vs.TOWN_BOB)),
        }
    finally:
        for name, namespace in RELEASES:
            uninstall(name, namespace)


def cluster_wide_on_server(cluster: Cluster, release: str) -> set[tuple[str, str]]:
    """(kind, name) of the cluster-scoped objects the server holds for ``release``."""
    found = set()
    for resource in ("clusterroles", "clusterrolebindings", "clusteradmissionpolicies"):
        listed = cluster.admin.json("get", resource, "-l", f"app.kubernetes.io/instance={release}")
        found.update((item["kind"], item["metadata"]["name"]) for item in listed["items"])
    return found


def test_two_towns_install_side_by_side(
    cluster: Cluster, towns_installed: dict[str, list[dict]]
) -> None:
    assert cluster_wide_on_server(cluster, ALICE_RELEASE) == {
        ("ClusterRole", "charttown-alice-gastown-operator"),
        ("ClusterRoleBinding", "charttown-alice-gastown-operator"),
        ("ClusterAdmissionPolicy", "charttown-alice-gastown-operator-claim"),
    }
    assert cluster_wide_on_server(cluster, BOB_RELEASE) == {
        ("ClusterRole", "charttown-bob-gastown-operator"),
        ("ClusterRoleBinding", "charttown-bob-gastown-operator"),
    }
    # The one policy the server holds lists both towns with the identities of their releases.
    policy = cluster.admin.json(
        "get", "clusteradmissionpolicy", "charttown-alice-gastown-operator-claim"
    )
    users = {t["name"]: t["controllerUsers"] for t in policy["spec"]["settings"]["towns"]}
    assert users == {
        "town-alice": [vs.service_account_user(TOWN_ALICE_NAMESPACE, "gastown-alice")],
        "town-bob": [vs.service_account_user(TOWN_BOB_NAMESPACE, "gastown-bob")],
    }
    for namespace, account in RELEASE_ACCOUNTS:
        cluster.admin.run("get", "serviceaccount", account, "-n", namespace)
    # A third release named like alice's, in bob's namespace (with a ServiceAccount of its own),
    # would take alice's cluster-wide objects: Helm refuses it, naming the owner.
    third = values(vs.TOWN_BOB, {"serviceAccount": {"name": "charttown-third"}})
    with pytest.raises(helm.HelmError) as info:
        install(ALICE_RELEASE, TOWN_BOB_NAMESPACE, third)
    message = str(info.value)
    assert 'ClusterRole "charttown-alice-gastown-operator"' in message
    assert "exists and cannot be imported into the current release" in message
    assert 'must equal "charttown-bob": current value is "charttown-alice"' in message
