"""The chart's RBAC for the controller, created for real on the test API server and checked with
`kubectl auth can-i --as ...`: the controller is allowed exactly what it needs and denied the
rest, cluster-wide, with leader election, and in the namespaced scope; real requests with the
identity's token agree.

The release is `chartrbac`, whose ServiceAccount (gastown-system/chartrbac-gastown-operator) no
other test binds, so grants seen are the chart's; the same RBAC bound to the default identity
(system:serviceaccount:gastown-system:gastown-operator, with cluster.sh's
DIR/users/gastown-operator.kubeconfig) is checked as well. What is created (RBAC objects named
after the release, its ServiceAccount) is deleted again. While
test_rbac_for_the_default_controller_identity runs, the shared default identity holds the
chart's rights (a few seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kube
import pytest
import render
from helpers import NAMESPACE, identity, one, values
from live_cluster import OPERATOR_USER, RBAC_OUTSIDE, RBAC_TEAM_A, RBAC_TEAM_B, Cluster
from rbac_checks import (
    AUTOMATONS,
    EVENTS,
    LEASES,
    RBAC_PROPAGATION_SECS,
    Check,
    ask,
    assert_forbidden,
    assert_lists,
    assert_matrix,
    forbidden,
)

# The release whose RBAC is created for real: its cluster-scoped objects
# (ClusterRole/ClusterRoleBinding chartrbac-gastown-operator) are this module's alone.
RBAC_RELEASE = "chartrbac"
# The ServiceAccount the chart names for that release: an identity no other test binds, so the
# RBAC tests can tell the chart's grants from anyone else's. Its tokens come from the
# TokenRequest API.
OWN_SERVICE_ACCOUNT = f"{RBAC_RELEASE}-gastown-operator"
OWN_USER = f"system:serviceaccount:{NAMESPACE}:{OWN_SERVICE_ACCOUNT}"
LEASE = f"{RBAC_RELEASE}-gastown-operator-leader"


def automaton_grants(namespace: str | None) -> list[Check]:
    """What the controller needs on Automatons and Events in ``namespace`` (None: all)."""
    return [
        *(Check(v, AUTOMATONS, namespace) for v in ("get", "list", "watch", "patch")),
        *(Check(v, AUTOMATONS, namespace, "status") for v in ("get", "patch", "update")),
        Check("update", AUTOMATONS, namespace, "finalizers"),
        *(Check(v, EVENTS, namespace) for v in ("create", "patch")),
        *(Check(v, "events", namespace) for v in ("create", "patch")),  # core v1 Events
    ]


def automaton_refusals(namespace: str | None) -> list[Check]:
    """Automaton and Event verbs the controller never needs: it does not create, replace or
    delete Automatons (patch only), nor read Events."""
    return [
        *(Check(v, AUTOMATONS, namespace) for v in ("create", "update", "delete")),
        Check("deletecollection", AUTOMATONS, namespace),
        Check("patch", AUTOMATONS, namespace, "finalizers"),
        Check("list", EVENTS, namespace),
        Check("delete", "events", namespace),
    ]


def unrelated_refusals(namespace: str | None) -> list[Check]:
    """Other namespaced resources: no Secrets, Pods, ConfigMaps, RoleBindings."""
    return [
        Check("get", "secrets", namespace),
        Check("list", "secrets", namespace),
        Check("list", "pods", namespace),
        Check("get", "configmaps", namespace),
        Check("create", "rolebindings.v1.rbac.authorization.k8s.io", namespace),
    ]


# Cluster-level rights the controller never gets.
CLUSTER_REFUSALS = [
    Check("list", "customresourcedefinitions.v1.apiextensions.k8s.io"),
    Check("get", "customresourcedefinitions.v1.apiextensions.k8s.io/automatons.olympus.io"),
    Check("escalate", "clusterroles.v1.rbac.authorization.k8s.io"),
    Check("bind", "clusterroles.v1.rbac.authorization.k8s.io"),
    Check("create", "clusterrolebindings.v1.rbac.authorization.k8s.io"),
    Check("impersonate", "users"),
    Check("impersonate", "groups"),
    Check("impersonate", "serviceaccounts"),
    Check("list", "namespaces"),
    Check("list", "clusteradmissionpolicies.v1.policies.kubewarden.io"),
]

# The leader-election Role: create (cannot be limited by name), and this chart's Lease only.
LEASE_GRANTS = [
    Check("create", LEASES, NAMESPACE),
    Check("get", f"{LEASES}/{LEASE}", NAMESPACE),
    Check("update", f"{LEASES}/{LEASE}", NAMESPACE),
    Check("patch", f"{LEASES}/{LEASE}", NAMESPACE),
]
LEASE_REFUSALS = [
    Check("get", f"{LEASES}/another-lease", NAMESPACE),
    Check("update", f"{LEASES}/another-lease", NAMESPACE),
    Check("delete", f"{LEASES}/{LEASE}", NAMESPACE),
    Check("list", LEASES, NAMESPACE),
    Check("create", LEASES, RBAC_OUTSIDE),
    Check("get", f"{LEASES}/{LEASE}", RBAC_OUTSIDE),
]


def rbac_objects(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's RBAC objects (ServiceAccount, (Cluster)Roles, bindings) for the ``chartrbac``
    release in gastown-system."""
    objs = render.template_objects(
        values(overrides), release_name=RBAC_RELEASE, namespace=NAMESPACE
    )
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [o for o in objs if o["kind"] in kinds]
    sa = one(rbac, "ServiceAccount")["metadata"]["name"]
    for obj in rbac:
        if obj["kind"] != "ServiceAccount":
            # Named after the release: no other test's objects are touched.
            assert obj["metadata"]["name"].startswith(RBAC_RELEASE + "-"), identity(obj)
        for subject in obj.get("subjects", []):
            assert subject == {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
    return rbac


# The chart's defaults for the release `chartrbac`: ServiceAccount chartrbac-gastown-operator.
CLUSTER_VARIANT: dict[str, Any] = {}
LEADER_ELECTION_VARIANT: dict[str, Any] = {"replicas": 2}
NAMESPACED_VARIANT: dict[str, Any] = {"watchNamespaces": [RBAC_TEAM_A, RBAC_TEAM_B]}
# Bound to the ServiceAccount the controller runs as in a default install
# (gastown-system/gastown-operator, the user of DIR/users/gastown-operator.kubeconfig).
OPERATOR_VARIANT: dict[str, Any] = {"serviceAccount": {"name": "gastown-operator"}, "replicas": 2}
ALL_VARIANTS = [CLUSTER_VARIANT, LEADER_ELECTION_VARIANT, NAMESPACED_VARIANT, OPERATOR_VARIANT]

# Granted to this module's own identity by some variant; all gone once its RBAC is deleted.
SENTINELS = [
    Check("list", AUTOMATONS),
    Check("list", AUTOMATONS, RBAC_TEAM_A),
    Check("create", LEASES, NAMESPACE),
]


def ours(cluster: Cluster, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects this module may create and delete: all but a ServiceAccount that exists
    without the ``chartrbac`` instance label (someone else's, e.g. gastown-operator from another
    test's install)."""
    unique = {identity(o): o for o in objs}
    mine = []
    for obj in unique.values():
        if obj["kind"] == "ServiceAccount":
            current = cluster.admin.get(
                "serviceaccount", obj["metadata"]["name"], namespace=NAMESPACE
            )
            labels = (current or {}).get("metadata", {}).get("labels") or {}
            if current and labels.get("app.kubernetes.io/instance") != RBAC_RELEASE:
                continue
        mine.append(obj)
    return mine


def revoke(cluster: Cluster, objs: list[dict[str, Any]]) -> None:
    """Deletes this module's RBAC objects; waits until its own identity lost their rights."""
    cluster.admin.delete(ours(cluster, objs))
    kube.wait_for(
        lambda: not any(ask(cluster, SENTINELS, OWN_USER).values()),
        timeout_secs=RBAC_PROPAGATION_SECS,
    )


@pytest.fixture(scope="module")
def rbac_clean(cluster: Cluster) -> Iterator[None]:
    """No grant of this module is left from an earlier, interrupted run, before or after."""
    leftovers = [o for variant in ALL_VARIANTS for o in rbac_objects(variant)]
    revoke(cluster, leftovers)
    yield
    revoke(cluster, leftovers)


@contextmanager
def rbac_installed(cluster: Cluster, overrides: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The chart's RBAC for ``overrides``, created for real, deleted again afterwards."""
    objs = ours(cluster, rbac_objects(overrides))
    try:
        created = cluster.admin.apply(objs)
        assert sorted(map(identity, created)) == sorted(map(identity, objs))
        yield objs
    finally:
        revoke(cluster, objs)


def own_kubectl(cluster: Cluster, tmp_path: Path) -> kube.Kubectl:
    """kubectl as this module's own ServiceAccount, with a token from the TokenRequest API."""
    token = cluster.admin.create_token(OWN_SERVICE_ACCOUNT, NAMESPACE)
    return cluster.admin.with_token(token, tmp_path / "chartrbac.kubeconfig")


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_identity_has_no_rights_without_the_chart(cluster: Cluster) -> None:
    """The module's own identity starts (and, between tests, stays) without rights: what the
    tests below see comes from the chart's objects."""
    checks = [*SENTINELS, Check("get", f"{LEASES}/{LEASE}", NAMESPACE), Check("patch", AUTOMATONS)]
    answers = ask(cluster, checks, OWN_USER)
    assert [str(c) for c in checks if answers[c]] == []


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_cluster_scope_grants_exactly_what_the_controller_needs(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The default install: cluster scope, one replica, so no leader election."""
    with rbac_installed(cluster, CLUSTER_VARIANT) as objs:
        assert sorted(o["kind"] for o in objs) == [
            "ClusterRole",
            "ClusterRoleBinding",
            "ServiceAccount",
        ]
        # Cluster-wide (-A), which covers every namespace; spot checks in one namespace.
        allowed = automaton_grants(None) + [
            Check("list", AUTOMATONS, RBAC_OUTSIDE),
            Check("patch", AUTOMATONS, RBAC_OUTSIDE, "status"),
            Check("create", EVENTS, RBAC_OUTSIDE),
        ]
        denied = (
            automaton_refusals(None)
            + [Check("create", AUTOMATONS, RBAC_OUTSIDE), Check("delete", AUTOMATONS, RBAC_OUTSIDE)]
            + unrelated_refusals(None)
            + unrelated_refusals(NAMESPACE)
            + CLUSTER_REFUSALS
            # No leader election: no Lease rights at all.
            + LEASE_GRANTS
        )
        assert_matrix(cluster, OWN_USER, allowed, denied)

        # The same with a real token of the ServiceAccount.
        own = own_kubectl(cluster, tmp_path)
        assert_lists(own, AUTOMATONS, "--all-namespaces")
        assert_lists(own, AUTOMATONS, "-n", RBAC_OUTSIDE)
        for where in (["-n", NAMESPACE], ["--all-namespaces"]):
            assert_forbidden(own, "get", "secrets", *where)
        assert_forbidden(own, "get", "configmaps", "-n", NAMESPACE)
        assert_forbidden(own, "get", "customresourcedefinitions")


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_leader_election_is_limited_to_the_one_lease(cluster: Cluster, tmp_path: Path) -> None:
    """Two replicas: leader election on, and a Role for the chart's Lease in gastown-system."""
    with rbac_installed(cluster, LEADER_ELECTION_VARIANT) as objs:
        roles = [o for o in objs if o["kind"] == "Role"]
        assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles] == [
            (NAMESPACE, f"{RBAC_RELEASE}-gastown-operator-leader-election")
        ]
        allowed = [*LEASE_GRANTS, Check("list", AUTOMATONS), Check("patch", AUTOMATONS)]
        denied = [*LEASE_REFUSALS, Check("get", "secrets", NAMESPACE), Check("update", AUTOMATONS)]
        assert_matrix(cluster, OWN_USER, allowed, denied)

        own = own_kubectl(cluster, tmp_path)
        # Its own Lease: authorized (it just does not exist yet); any other: Forbidden.
        mine = own.run("get", LEASES, LEASE, "-n", NAMESPACE, check=False)
        assert mine.returncode != 0 and "(NotFound)" in mine.stderr, mine.stderr
        assert_forbidden(own, "get", LEASES, "another-lease", "-n", NAMESPACE)
        assert_forbidden(own, "get", LEASES, "-n", NAMESPACE)
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NAMESPACE},
            "spec": {"holderIdentity": "chart-test", "leaseDurationSeconds": 15},
        }
        # Creating it is allowed: authorized and admitted, not stored (a server dry run).
        create = ["create", "--dry-run=server", "--validate=false", "-f", "-"]
        created = own.run(*create, stdin=render.to_yaml([lease]), check=False)
        assert created.returncode == 0, created.stderr
        elsewhere = render.deep_merge(lease, {"metadata": {"namespace": RBAC_OUTSIDE}})
        refused = own.run(*create, stdin=render.to_yaml([elsewhere]), check=False)
        assert forbidden(refused), refused.stderr


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_namespaced_scope_stays_in_the_listed_namespaces(
    cluster: Cluster, tmp_path: Path
) -> None:
    with rbac_installed(cluster, NAMESPACED_VARIANT) as objs:
        assert not [o for o in objs if o["kind"].startswith("Cluster")]
        roles = sorted(o["metadata"]["namespace"] for o in objs if o["kind"] == "Role")
        assert roles == [RBAC_TEAM_A, RBAC_TEAM_B]
        allowed = automaton_grants(RBAC_TEAM_A) + [
            Check("list", AUTOMATONS, RBAC_TEAM_B),
            Check("watch", AUTOMATONS, RBAC_TEAM_B),
            Check("patch", AUTOMATONS, RBAC_TEAM_B),
            Check("update", AUTOMATONS, RBAC_TEAM_B, "status"),
            Check("create", EVENTS, RBAC_TEAM_B),
        ]
        denied = (
            automaton_refusals(RBAC_TEAM_A)
            + unrelated_refusals(RBAC_TEAM_A)
            # Outside the listed namespaces, and cluster-wide: nothing.
            + automaton_grants(RBAC_OUTSIDE)
            + automaton_grants(None)
            + [Check(v, AUTOMATONS, ns) for ns in (NAMESPACE, "default") for v in ("list", "patch")]
            + [Check("create", LEASES, NAMESPACE)]
        )
        assert_matrix(cluster, OWN_USER, allowed, denied)

        own = own_kubectl(cluster, tmp_path)
        for namespace in (RBAC_TEAM_A, RBAC_TEAM_B):
            assert_lists(own, AUTOMATONS, "-n", namespace)
        for where in (["-n", RBAC_OUTSIDE], ["-n", NAMESPACE], ["--all-namespaces"]):
            assert_forbidden(own, "get", AUTOMATONS, *where)
        assert_forbidden(own, "get", "secrets", "-n", RBAC_TEAM_A)


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_for_the_default_controller_identity(cluster: Cluster) -> None:
    """The chart's RBAC bound to gastown-system/gastown-operator, the identity of a default
    install (`system:serviceaccount:gastown-system:gastown-operator`), with leader election:
    checked with `kubectl auth can-i --as` and with that user's own kubeconfig.

    Other tests bind this shared identity too (controller/tests/whole_flow.rs applies the
    chart's RBAC for the release gastown-operator and leaves it), so this test checks what must
    hold while the chart's RBAC is bound; that the rights come from the chart's objects is
    shown by the tests above with the module's own identity.
    """
    with rbac_installed(cluster, OPERATOR_VARIANT):
        allowed = automaton_grants(None) + LEASE_GRANTS
        denied = (
            automaton_refusals(None)
            + unrelated_refusals(None)
            + unrelated_refusals(NAMESPACE)
            + CLUSTER_REFUSALS
            + LEASE_REFUSALS
        )
        assert_matrix(cluster, OPERATOR_USER, allowed, denied)

        operator = cluster.operator
        assert_lists(operator, AUTOMATONS, "--all-namespaces")
        for where in (["-n", NAMESPACE], ["--all-namespaces"]):
            result = operator.run("get", "secrets", *where, check=False)
            assert forbidden(result), result.stderr
            assert f'User "{OPERATOR_USER}" cannot list resource "secrets"' in result.stderr
        assert_forbidden(operator, "get", LEASES, "another-lease", "-n", NAMESPACE)
