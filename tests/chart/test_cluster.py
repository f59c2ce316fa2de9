"""The gastown-operator chart against a real API server (tests/cluster/cluster.sh).

1. Every value set the chart tests render is rendered for the server's Kubernetes version and
   applied with `kubectl apply --dry-run=server`: the API server validates, defaults and admits
   every object (namespaces, kinds, schemas), nothing is stored.
2. The chart's RBAC is applied for real and the controller's identity
   (system:serviceaccount:gastown-system:gastown-operator) is checked with
   `kubectl auth can-i --as ...`: allowed exactly what the controller needs, denied the rest; a
   real request with that user's token confirms it.

Needs GASTOWN_CHART_KUBECONFIG (an admin kubeconfig; scripts/test.sh always sets it): e.g.

    bash tests/cluster/cluster.sh up /tmp/chartcl
    GASTOWN_CHART_KUBECONFIG=/tmp/chartcl/kubeconfig python3 -m pytest -q tests/chart
    bash tests/cluster/cluster.sh down /tmp/chartcl

Re-runnable against the same cluster and safe next to other tests using it: the objects created
for real (RBAC, the ServiceAccount) belong to the release ``chartrbac`` and are deleted again;
namespaces are only created (the test server never finishes deleting one) and CRDs only
registered. Note that while an RBAC test runs, the shared operator identity holds the chart's
rights (that is what is being tested).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kube
import pytest
import render
import yaml

KUBECONFIG_ENV = "GASTOWN_CHART_KUBECONFIG"
KUBECONFIG = os.environ.get(KUBECONFIG_ENV)

pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason=f"{KUBECONFIG_ENV} is not set: these tests need a real API server (scripts/test.sh "
    "sets it; by hand: bash tests/cluster/cluster.sh up DIR, then "
    f"{KUBECONFIG_ENV}=DIR/kubeconfig)",
)

CHART = render.CHART_DIR
REPO = render.REPO_ROOT
RELEASE = render.DEFAULT_RELEASE
NAMESPACE = render.DEFAULT_NAMESPACE
HERE = Path(__file__).resolve().parent

PROXY_URL = "https://gastown.example.com:9876"
REQUIRED = {"gastown": {"proxy": {"url": PROXY_URL, "existingSecret": "gt-proxy-client"}}}

# The project's CRD, and stand-ins for third-party CRDs the chart renders objects of.
PROJECT_CRD = REPO / "crds" / "automaton.yaml"
STAND_IN_CRDS = sorted((HERE / "crds").glob("*.yaml"))

OPERATOR_USER = "system:serviceaccount:gastown-system:gastown-operator"
# The operator user's kubeconfig, written by cluster.sh next to the admin one.
OPERATOR_KUBECONFIG_NAME = "gastown-operator.kubeconfig"

# The release whose RBAC is created for real: its cluster-scoped objects
# (ClusterRole/ClusterRoleBinding chartrbac-gastown-operator) are this module's alone.
RBAC_RELEASE = "chartrbac"
# Namespaces of the namespaced-scope RBAC variant, and one the controller must not reach.
RBAC_TEAM_A = "chartrbac-team-a"
RBAC_TEAM_B = "chartrbac-team-b"
RBAC_OUTSIDE = "chartrbac-outside"

# How long RBAC changes may take to reach the API server's authorizer cache.
RBAC_PROPAGATION_SECS = 20


def values(*overrides: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = REQUIRED
    for override in overrides:
        merged = render.deep_merge(merged, override)
    return merged


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


# ---------------------------------------------------------------------------------------------
# The cluster


@dataclass(frozen=True)
class Cluster:
    admin: kube.Kubectl
    operator: kube.Kubectl
    # `.Capabilities.KubeVersion` for rendering: the server's own version (v1.20.2 on the
    # test cluster, so the PodDisruptionBudget is policy/v1beta1).
    kube_version: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The API server, with the CRDs the chart's objects need and the namespaces they use."""
    assert KUBECONFIG  # the module is skipped otherwise
    kubeconfig = Path(KUBECONFIG)
    assert kubeconfig.is_file(), f"{KUBECONFIG_ENV}={KUBECONFIG}: no such file"
    operator_kubeconfig = kubeconfig.parent / "users" / OPERATOR_KUBECONFIG_NAME
    assert operator_kubeconfig.is_file(), (
        f"{operator_kubeconfig} is missing: {KUBECONFIG_ENV} must point at the kubeconfig "
        "written by tests/cluster/cluster.sh up DIR (DIR/kubeconfig)"
    )
    binary = kube.find_kubectl()
    assert binary, "kubectl not found (on PATH or /usr/bin/kubectl)"
    admin = kube.Kubectl(binary, kubeconfig, tmp_path_factory.mktemp("kube-cache"))
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
    for path in STAND_IN_CRDS:
        for crd in (d for d in yaml.safe_load_all(path.read_text()) if d):
            admin.create_if_absent(crd)
            crd_names.append(crd["metadata"]["name"])
    admin.wait_established(crd_names)

    for namespace in (
        NAMESPACE,
        "team-a",
        "team-b",
        "agents",
        RBAC_TEAM_A,
        RBAC_TEAM_B,
        RBAC_OUTSIDE,
    ):
        admin.ensure_namespace(namespace)
    return Cluster(admin=admin, operator=operator, kube_version=match.group(0))


def test_stand_in_crds_are_what_the_chart_renders() -> None:
    """The stand-ins register exactly the kinds, versions and scopes the templates use."""
    stand_ins = {
        crd["spec"]["names"]["kind"]: crd
        for path in STAND_IN_CRDS
        for crd in yaml.safe_load_all(path.read_text())
        if crd
    }
    assert set(stand_ins) == {"ServiceMonitor", "ClusterAdmissionPolicy"}
    objs = render.render_objects(
        values({"metrics": {"serviceMonitor": {"enabled": True}}, "policy": {"enabled": True}})
    )
    for kind, crd in stand_ins.items():
        obj = one(objs, kind)
        group, version = obj["apiVersion"].split("/")
        assert crd["spec"]["group"] == group
        assert [v["name"] for v in crd["spec"]["versions"]] == [version]
        scope = "Namespaced" if "namespace" in obj["metadata"] else "Cluster"
        assert crd["spec"]["scope"] == scope, kind
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{group}"
    for path in STAND_IN_CRDS:
        assert "STAND-IN, FOR SERVER-SIDE DRY RUNS ONLY" in path.read_text()


# ---------------------------------------------------------------------------------------------
# Every rendered manifest, server-side dry run

# Every value set test_chart.py renders (the test each one comes from is named). The namespaces
# they use (gastown-system, team-a, team-b, agents) are created by the `cluster` fixture.
DRY_RUN_CASES = [
    pytest.param({}, {}, id="defaults"),
    pytest.param({"watchNamespaces": ["team-a", "team-b"]}, {}, id="namespaced-two-namespaces"),
    pytest.param({"rbac": {"scope": "namespaced"}}, {}, id="namespaced-release-namespace"),
    pytest.param(
        {"rbac": {"scope": "cluster"}, "watchNamespaces": ["team-a", "team-b"]},
        {},
        id="cluster-scope-watch-list",
    ),
    pytest.param({"rbac": {"create": False}, "replicas": 2}, {}, id="rbac-off"),
    pytest.param({"replicas": 2}, {}, id="replicas-2"),
    pytest.param({"replicas": 3, "podDisruptionBudget": {"enabled": False}}, {}, id="no-pdb"),
    pytest.param(
        {
            "leaderElection": {"enabled": True, "leaseName": "gt-lease"},
            "watchNamespaces": ["team-a", "team-b"],
        },
        {},
        id="leader-election-namespaced",
    ),
    pytest.param({"metrics": {"enabled": False}}, {}, id="metrics-off"),
    pytest.param(
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
        {},
        id="service-monitor-on",
    ),
    pytest.param({"networkPolicy": {"enabled": True}}, {}, id="network-policy"),
    pytest.param(
        {
            "gastown": {"proxy": {"url": "https://gt.example.com/api"}},
            "networkPolicy": {
                "enabled": True,
                "apiServer": {"cidrs": ["10.96.0.1/32"], "ports": [443]},
                "proxy": {"cidrs": ["192.0.2.10/32"]},
                "dns": {"enabled": False},
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            },
        },
        {},
        id="network-policy-addresses",
    ),
    pytest.param(
        {
            "gastown": {"claimer": "team-town"},
            "policy": {
                "enabled": True,
                "policyServer": "gastown",
                "mode": "monitor",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 5,
                "settings": {
                    "allowedUsers": ["alice"],
                    "allowedGroups": ["system:authenticated"],
                    "extraControllerUsers": ["system:serviceaccount:ops:gt-admin"],
                    "forgeRigs": {"payments": "payments_rig", "web": "frontend"},
                    "defaultRig": "general",
                    "maxActiveClaimsPerNamespace": 5,
                },
            },
        },
        {},
        id="policy-with-settings",
    ),
    pytest.param({"policy": {"enabled": True}}, {}, id="policy-minimal"),
    pytest.param(
        {"policy": {"enabled": True, "module": "registry://registry.local/gastown-claim:v9"}},
        {},
        id="policy-module",
    ),
    pytest.param(
        {"policy": {"enabled": True}},
        {"release_name": "town", "namespace": "agents"},
        id="other-release-and-namespace",
    ),
    pytest.param({"gastown": {"transport": "exec"}}, {}, id="exec-transport"),
    pytest.param(
        {
            "image": {"repository": "registry.local/gc", "tag": "dev", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
        },
        {},
        id="image-overrides",
    ),
    pytest.param({"image": {"digest": "sha256:" + "a" * 64}}, {}, id="image-digest"),
    pytest.param(
        {
            "gastown": {
                "claimer": "team-town",
                "syncInterval": "1m",
                "claimTimeout": "1h30m",
                "commandTimeout": "45s",
            },
            "controller": {
                "concurrency": 3,
                "gastownConcurrency": 2,
                "logFormat": "text",
                "metricsPort": 9090,
                "extraArgs": ["--verbose"],
            },
        },
        {},
        id="tuning",
    ),
    pytest.param({"serviceAccount": {"create": False, "name": "byo"}}, {}, id="existing-sa"),
    pytest.param(
        {
            "replicas": 2,
            "watchNamespaces": ["team-a", "team-b"],
            "metrics": {"serviceMonitor": {"enabled": True}},
            "networkPolicy": {"enabled": True},
            "policy": {
                "enabled": True,
                "settings": {"forgeRigs": {"payments": "pay"}, "maxActiveClaimsPerNamespace": 2},
            },
        },
        {},
        id="everything-on",
    ),
]


@pytest.mark.parametrize(("overrides", "release"), DRY_RUN_CASES)
def test_server_side_dry_run_accepts_every_object(
    cluster: Cluster, overrides: dict[str, Any], release: dict[str, str]
) -> None:
    # The exec transport needs no proxy settings (test_exec_transport_needs_no_proxy).
    exec_only = overrides == {"gastown": {"transport": "exec"}}
    user_values = overrides if exec_only else values(overrides)
    # Helm's install action (`helm template`): Chart.yaml's kubeVersion is checked too.
    objs = render.template_objects(user_values, kube_version=cluster.kube_version, **release)
    assert objs
    accepted = cluster.admin.apply(objs, dry_run_server=True)
    # The server took every object as rendered: same kinds and versions, cluster-scoped ones
    # without a namespace and namespaced ones in the one the chart set (not kubectl's default).
    assert sorted(map(identity, accepted)) == sorted(map(identity, objs))
    for obj in objs:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding", "ClusterAdmissionPolicy"):
            assert "namespace" not in obj["metadata"], identity(obj)
        else:
            assert obj["metadata"].get("namespace"), identity(obj)
    if overrides.get("replicas", 1) > 1 and overrides.get("podDisruptionBudget") is None:
        pdb = one(objs, "PodDisruptionBudget")
        minor = int(cluster.kube_version.split(".")[1])
        assert pdb["apiVersion"] == ("policy/v1beta1" if minor < 21 else "policy/v1")


def test_server_side_dry_run_rejects_what_the_server_would_reject(cluster: Cluster) -> None:
    """The dry run is a real check: a mistake in a template would fail it."""
    objs = render.template_objects(values({"replicas": 2}), kube_version=cluster.kube_version)
    broken = yaml.safe_load(yaml.safe_dump(objs))
    container = one(broken, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "Sometimes"
    with pytest.raises(kube.KubectlError) as info:
        cluster.admin.apply(broken, dry_run_server=True)
    assert "imagePullPolicy" in str(info.value)
    # policy/v1 PodDisruptionBudgets only exist from Kubernetes 1.21.
    if int(cluster.kube_version.split(".")[1]) < 21:
        newer = render.template_objects(values({"replicas": 2}), kube_version="v1.21.0")
        with pytest.raises(kube.KubectlError) as info:
            cluster.admin.apply(newer, dry_run_server=True)
        assert "PodDisruptionBudget" in str(info.value)
    # Namespaced objects need their namespace.
    with pytest.raises(kube.KubectlError) as info:
        cluster.admin.apply(
            render.template_objects(REQUIRED, namespace="chartrbac-missing-namespace"),
            dry_run_server=True,
        )
    assert "not found" in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"replicas": 2, "networkPolicy": {"enabled": True}}, id="ha-networkpolicy"),
        pytest.param({"watchNamespaces": ["team-a", "team-b"]}, id="namespaced"),
        pytest.param({"gastown": {"transport": "exec"}, "metrics": {"enabled": False}}, id="exec"),
        pytest.param(
            {"metrics": {"serviceMonitor": {"enabled": True}}, "policy": {"enabled": True}},
            id="servicemonitor-policy",
        ),
    ],
)
def test_helm_server_dry_run_install(cluster: Cluster, overrides: dict[str, Any]) -> None:
    """Helm's own install with dry_run="server": the cluster's capabilities pick the API
    versions and every kind must be served (Helm maps but does not send the objects; the
    kubectl dry run above is what validates them)."""
    with helm.Config(kubeconfig_path=KUBECONFIG, namespace=NAMESPACE) as config:
        release = config.install(
            str(CHART), RELEASE, values(overrides), namespace=NAMESPACE, dry_run="server"
        )
    assert release["status"] == "pending-install"
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    assert one(docs, "Deployment")["metadata"]["name"] == RELEASE
    if overrides.get("replicas", 1) > 1:
        minor = int(cluster.kube_version.split(".")[1])
        expected = "policy/v1beta1" if minor < 21 else "policy/v1"
        assert one(docs, "PodDisruptionBudget")["apiVersion"] == expected


# ---------------------------------------------------------------------------------------------
# RBAC, for real


@dataclass(frozen=True)
class Check:
    """One `kubectl auth can-i` question; ``namespace=None`` means all namespaces (-A)."""

    verb: str
    resource: str
    namespace: str | None = None
    subresource: str | None = None

    def __str__(self) -> str:
        sub = f" --subresource={self.subresource}" if self.subresource else ""
        where = "-A" if self.namespace is None else f"-n {self.namespace}"
        return f"can-i {self.verb} {self.resource}{sub} {where}"


AUTOMATONS = "automatons.olympus.io"
LEASES = "leases.coordination.k8s.io"


def automaton_checks(namespace: str | None) -> tuple[list[Check], list[Check]]:
    """(allowed, denied) for the Automaton rules granted in ``namespace`` (None: everywhere)."""
    allowed = [Check(v, AUTOMATONS, namespace) for v in ("get", "list", "watch", "patch")]
    allowed += [Check(v, AUTOMATONS, namespace, "status") for v in ("get", "patch", "update")]
    allowed += [Check("update", AUTOMATONS, namespace, "finalizers")]
    allowed += [
        Check(v, r, namespace) for r in ("events.events.k8s.io", "events") for v in ("create", "patch")
    ]
    denied = [
        Check(v, AUTOMATONS, namespace) for v in ("create", "update", "delete", "deletecollection")
    ]
    denied += [Check("patch", AUTOMATONS, namespace, "finalizers")]
    denied += [
        Check(v, r, namespace) for r in ("events.events.k8s.io", "events") for v in ("list", "delete")
    ]
    return allowed, denied


def unrelated_checks(namespace: str | None) -> list[Check]:
    """What the controller never gets, in ``namespace`` and cluster-wide."""
    return [
        Check("get", "secrets", namespace),
        Check("list", "secrets", namespace),
        Check("list", "pods", namespace),
        Check("create", "pods", namespace),
        Check("get", "configmaps", namespace),
        Check("create", "rolebindings.rbac.authorization.k8s.io", namespace),
    ]


CLUSTER_WIDE_DENIED = [
    Check("list", "customresourcedefinitions.apiextensions.k8s.io"),
    Check("get", "customresourcedefinitions.apiextensions.k8s.io/automatons.olympus.io"),
    Check("escalate", "clusterroles.rbac.authorization.k8s.io"),
    Check("bind", "clusterroles.rbac.authorization.k8s.io"),
    Check("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    Check("impersonate", "users"),
    Check("impersonate", "groups"),
    Check("impersonate", "serviceaccounts"),
    Check("list", "namespaces"),
    Check("get", "namespaces/gastown-system"),
    Check("list", "servicemonitors.monitoring.coreos.com"),
    Check("list", "clusteradmissionpolicies.policies.kubewarden.io"),
]


def lease_checks(lease: str, leader_election: bool) -> tuple[list[Check], list[Check]]:
    """(allowed, denied) Lease questions in the release namespace and elsewhere."""
    named = f"{LEASES}/{lease}"
    granted = [
        Check("create", LEASES, NAMESPACE),
        Check("get", named, NAMESPACE),
        Check("update", named, NAMESPACE),
        Check("patch", named, NAMESPACE),
    ]
    denied = [
        Check("get", f"{LEASES}/another-lease", NAMESPACE),
        Check("update", f"{LEASES}/another-lease", NAMESPACE),
        Check("delete", named, NAMESPACE),
        Check("list", LEASES, NAMESPACE),
        Check("watch", LEASES, NAMESPACE),
        Check("create", LEASES, RBAC_OUTSIDE),
        Check("get", named, RBAC_OUTSIDE),
        Check("create", LEASES),
        Check("get", named),
    ]
    return (granted, denied) if leader_election else ([], granted + denied)


def ask(cluster: Cluster, checks: list[Check]) -> dict[Check, bool]:
    """Asks every question at once, as the operator (impersonated by the admin)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = pool.map(
            lambda c: cluster.admin.can_i(
                c.verb,
                c.resource,
                namespace=c.namespace,
                subresource=c.subresource,
                as_user=OPERATOR_USER,
            ),
            checks,
        )
        return dict(zip(checks, answers, strict=True))


def assert_matrix(cluster: Cluster, allowed: list[Check], denied: list[Check]) -> None:
    assert len(set(allowed)) == len(allowed) and len(set(denied)) == len(denied)
    assert not set(allowed) & set(denied)
    # New bindings reach the authorizer's cache within moments: wait until every grant shows,
    # so that no denial below passes only because the RBAC objects are not seen yet.
    pending = list(allowed)

    def granted() -> bool:
        nonlocal pending
        answers = ask(cluster, pending)
        pending = [c for c in pending if not answers[c]]
        return not pending

    kube.wait_for(granted, timeout_secs=RBAC_PROPAGATION_SECS)
    answers = ask(cluster, denied)
    wrongly_allowed = [str(c) for c in denied if answers[c]]
    assert (pending, wrongly_allowed) == ([], []), (
        f"as {OPERATOR_USER}: not allowed although the controller needs it: "
        f"{[str(c) for c in pending]}; allowed although it must not be: {wrongly_allowed}"
    )


def rbac_objects(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's RBAC (ServiceAccount, (Cluster)Roles, bindings) for the ``chartrbac`` release,
    bound to the operator user's ServiceAccount gastown-system/gastown-operator."""
    objs = render.template_objects(
        values({"serviceAccount": {"name": "gastown-operator"}}, overrides),
        release_name=RBAC_RELEASE,
        namespace=NAMESPACE,
    )
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [o for o in objs if o["kind"] in kinds]
    for obj in rbac:
        if obj["kind"] != "ServiceAccount":
            assert obj["metadata"]["name"].startswith(RBAC_RELEASE + "-"), identity(obj)
    return rbac


CLUSTER_VARIANT: dict[str, Any] = {}
LEADER_ELECTION_VARIANT: dict[str, Any] = {"replicas": 2}
NAMESPACED_VARIANT: dict[str, Any] = {"watchNamespaces": [RBAC_TEAM_A, RBAC_TEAM_B]}
ALL_VARIANTS = [CLUSTER_VARIANT, LEADER_ELECTION_VARIANT, NAMESPACED_VARIANT]


def revoke(cluster: Cluster, objs: list[dict[str, Any]]) -> None:
    """Deletes this module's RBAC objects and waits until the operator lost their rights.

    The ServiceAccount is only deleted when this module created it (it carries the
    ``chartrbac`` instance label).
    """
    ours = [o for o in objs if o["kind"] != "ServiceAccount"]
    for sa in (o for o in objs if o["kind"] == "ServiceAccount"):
        current = cluster.admin.get("serviceaccount", sa["metadata"]["name"], namespace=NAMESPACE)
        labels = (current or {}).get("metadata", {}).get("labels") or {}
        if labels.get("app.kubernetes.io/instance") == RBAC_RELEASE:
            ours.append(sa)
    cluster.admin.delete(ours)
    sentinels = [Check("list", AUTOMATONS), Check("list", AUTOMATONS, RBAC_TEAM_A)]
    sentinels.append(Check("create", LEASES, NAMESPACE))
    kube.wait_for(
        lambda: not any(ask(cluster, sentinels).values()), timeout_secs=RBAC_PROPAGATION_SECS
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
    objs = rbac_objects(overrides)
    sa = one(objs, "ServiceAccount")
    existing = cluster.admin.get("serviceaccount", sa["metadata"]["name"], namespace=NAMESPACE)
    labels = (existing or {}).get("metadata", {}).get("labels") or {}
    if existing and labels.get("app.kubernetes.io/instance") != RBAC_RELEASE:
        # Someone else's ServiceAccount of that name: use it, leave it alone.
        objs = [o for o in objs if o is not sa]
    try:
        created = cluster.admin.apply(objs)
        assert sorted(map(identity, created)) == sorted(map(identity, objs))
        yield objs
    finally:
        revoke(cluster, objs)


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "Forbidden" in result.stderr


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_cluster_scope_grants_exactly_what_the_controller_needs(cluster: Cluster) -> None:
    """The default install (cluster scope, one replica, no leader election)."""
    with rbac_installed(cluster, CLUSTER_VARIANT) as objs:
        assert {o["kind"] for o in objs} <= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        allowed, denied = [], list(CLUSTER_WIDE_DENIED)
        for namespace in (None, NAMESPACE, RBAC_OUTSIDE):
            ok, no = automaton_checks(namespace)
            allowed += ok
            denied += no + unrelated_checks(namespace)
        # No leader election: no Lease rights at all.
        granted, refused = lease_checks(f"{RBAC_RELEASE}-gastown-operator-leader", False)
        assert not granted
        denied += refused
        assert_matrix(cluster, allowed, denied)


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_cluster_scope_with_leader_election(cluster: Cluster) -> None:
    """Two replicas: leader election on, and a Role for the one Lease in gastown-system. Real
    requests with the operator's own token agree with can-i."""
    with rbac_installed(cluster, LEADER_ELECTION_VARIANT) as objs:
        lease = f"{RBAC_RELEASE}-gastown-operator-leader"
        roles = [o for o in objs if o["kind"] == "Role"]
        assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles] == [
            (NAMESPACE, f"{RBAC_RELEASE}-gastown-operator-leader-election")
        ]
        allowed, denied = [], list(CLUSTER_WIDE_DENIED)
        for namespace in (None, NAMESPACE, RBAC_OUTSIDE):
            ok, no = automaton_checks(namespace)
            allowed += ok
            denied += no + unrelated_checks(namespace)
        granted, refused = lease_checks(lease, True)
        allowed += granted
        denied += refused
        assert_matrix(cluster, allowed, denied)

        op = cluster.operator
        listed = op.run("get", AUTOMATONS, "--all-namespaces", "-o", "name", check=False)
        assert listed.returncode == 0, listed.stderr
        listed = op.run("get", AUTOMATONS, "-n", RBAC_OUTSIDE, "-o", "name", check=False)
        assert listed.returncode == 0, listed.stderr
        for args in (["-n", NAMESPACE], ["--all-namespaces"]):
            secrets = op.run("get", "secrets", *args, check=False)
            assert forbidden(secrets), (secrets.returncode, secrets.stderr)
            assert 'cannot list resource "secrets"' in secrets.stderr
        # Its own Lease: authorized (it just does not exist yet); any other: Forbidden.
        own = op.run("get", "lease", lease, "-n", NAMESPACE, check=False)
        assert own.returncode != 0 and "NotFound" in own.stderr, own.stderr
        other = op.run("get", "lease", "another-lease", "-n", NAMESPACE, check=False)
        assert forbidden(other), other.stderr
        # Creating it is allowed (checked by the server without storing anything).
        lease_obj = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": lease, "namespace": NAMESPACE},
            "spec": {"holderIdentity": "chart-test", "leaseDurationSeconds": 15},
        }
        created = op.run(
            "create", "--dry-run=server", "-f", "-", stdin=render.to_yaml([lease_obj]), check=False
        )
        assert created.returncode == 0, created.stderr


@pytest.mark.usefixtures("rbac_clean")
def test_rbac_namespaced_scope_stays_in_the_listed_namespaces(cluster: Cluster) -> None:
    with rbac_installed(cluster, NAMESPACED_VARIANT) as objs:
        assert not [o for o in objs if o["kind"].startswith("Cluster")]
        roles = sorted(o["metadata"]["namespace"] for o in objs if o["kind"] == "Role")
        assert roles == [RBAC_TEAM_A, RBAC_TEAM_B]
        allowed, denied = [], list(CLUSTER_WIDE_DENIED)
        for namespace in (RBAC_TEAM_A, RBAC_TEAM_B):
            ok, no = automaton_checks(namespace)
            allowed += ok
            denied += no + unrelated_checks(namespace)
        for namespace in (None, NAMESPACE, RBAC_OUTSIDE, "default"):
            ok, no = automaton_checks(namespace)
            denied += ok + no
        denied += unrelated_checks(None)
        denied += lease_checks(f"{RBAC_RELEASE}-gastown-operator-leader", False)[1]
        assert_matrix(cluster, allowed, denied)

        op = cluster.operator
        for namespace in (RBAC_TEAM_A, RBAC_TEAM_B):
            listed = op.run("get", AUTOMATONS, "-n", namespace, "-o", "name", check=False)
            assert listed.returncode == 0, listed.stderr
        for args in (["-n", RBAC_OUTSIDE], ["--all-namespaces"]):
            outside = op.run("get", AUTOMATONS, *args, check=False)
            assert forbidden(outside), outside.stderr
        secrets = op.run("get", "secrets", "-n", RBAC_TEAM_A, check=False)
        assert forbidden(secrets), secrets.stderr


@pytest.mark.usefixtures("rbac_clean")
def test_operator_identity_has_no_rights_without_the_chart(cluster: Cluster) -> None:
    """Between the RBAC tests nothing is left: what the tests saw came from the chart."""
    allowed = []
    for namespace in (None, NAMESPACE, RBAC_TEAM_A):
        allowed += automaton_checks(namespace)[0]
    allowed += lease_checks(f"{RBAC_RELEASE}-gastown-operator-leader", True)[0]
    answers = ask(cluster, allowed)
    assert [str(c) for c in allowed if answers[c]] == []
    listed = cluster.operator.run("get", AUTOMATONS, "-n", RBAC_TEAM_A, check=False)
    assert forbidden(listed), listed.stderr
