"""The gastown-operator chart against a real API server (tests/cluster/cluster.sh).

1. Every value set the chart tests render is rendered for the server's Kubernetes version
   (v1.20.2 on the test cluster) and applied with `kubectl apply --dry-run=server`: the API
   server validates, defaults and admits every object, nothing is stored. The project's CRD and
   stand-ins for the ServiceMonitor and ClusterAdmissionPolicy CRDs (tests/chart/crds/) are
   registered first, and the namespaces the objects use are created.
2. The chart's RBAC is created for real and checked with `kubectl auth can-i --as ...`: the
   controller is allowed exactly what it needs and denied the rest, cluster-wide, with leader
   election, and in the namespaced scope; real requests with the identity's token agree. The
   release is `chartrbac`, whose ServiceAccount (gastown-system/chartrbac-gastown-operator) no
   other test binds, so grants seen are the chart's; the same RBAC bound to the default
   identity (system:serviceaccount:gastown-system:gastown-operator, with cluster.sh's
   DIR/users/gastown-operator.kubeconfig) is checked as well.
3. The RBAC the chart offers a Kubewarden PolicyServer (policy.policyServerRbac) is created for
   real for a stand-in PolicyServer ServiceAccount (chartps-kubewarden/chartps-policy-server),
   which then makes policy-server's own requests for the claim limit with a real token.

Needs GASTOWN_CHART_KUBECONFIG, an admin kubeconfig written by cluster.sh (scripts/test.sh
always sets it; without it these tests are skipped):

    bash tests/cluster/cluster.sh up /tmp/chartcl
    GASTOWN_CHART_KUBECONFIG=/tmp/chartcl/kubeconfig python3 -m pytest -q tests/chart
    bash tests/cluster/cluster.sh down /tmp/chartcl

Re-runnable against the same cluster and safe next to other tests using it: what is created
for real (RBAC objects named after the release `chartrbac`, its ServiceAccount) is deleted
again, also what an interrupted earlier run left; namespaces are only created (the test server
never finishes deleting one) and CRDs only registered (stand-ins only where the kind is
unknown). While test_rbac_for_the_default_controller_identity runs, the shared default
identity holds the chart's rights (a few seconds).
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

SKIP_REASON = (
    f"{KUBECONFIG_ENV} is not set: these tests need a real API server (scripts/test.sh sets it; "
    f"by hand: bash tests/cluster/cluster.sh up DIR, then {KUBECONFIG_ENV}=DIR/kubeconfig)"
)

CHART = render.CHART_DIR
REPO = render.REPO_ROOT
# Dry runs use a release name of their own: Helm refuses to install over objects another
# release owns, and the default release's objects may exist for real (other tests create them).
DRY_RUN_RELEASE = "chartdry"
NAMESPACE = render.DEFAULT_NAMESPACE
HERE = Path(__file__).resolve().parent

PROXY_URL = "https://gastown.example.com:9876"
REQUIRED = {"gastown": {"proxy": {"url": PROXY_URL, "existingSecret": "gt-proxy-client"}}}

# The project's CRD, and stand-ins for third-party CRDs the chart renders objects of.
PROJECT_CRD = REPO / "crds" / "automaton.yaml"
STAND_IN_CRDS = sorted((HERE / "crds").glob("*.yaml"))

# The controller's identity in a default install (release gastown-operator); cluster.sh has a
# token for it. Other tests bind it too.
OPERATOR_USER = "system:serviceaccount:gastown-system:gastown-operator"
# The operator user's kubeconfig, written by cluster.sh next to the admin one.
OPERATOR_KUBECONFIG_NAME = "gastown-operator.kubeconfig"

# The release whose RBAC is created for real: its cluster-scoped objects
# (ClusterRole/ClusterRoleBinding chartrbac-gastown-operator) are this module's alone.
RBAC_RELEASE = "chartrbac"
# The ServiceAccount the chart names for that release: an identity no other test binds, so the
# RBAC tests can tell the chart's grants from anyone else's. Its tokens come from the
# TokenRequest API.
OWN_SERVICE_ACCOUNT = f"{RBAC_RELEASE}-gastown-operator"
OWN_USER = f"system:serviceaccount:{NAMESPACE}:{OWN_SERVICE_ACCOUNT}"
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
    # `kubectl api-resources -o name` once the CRDs are registered.
    api_resources: frozenset[str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """The API server, with the CRDs the chart's objects need and the namespaces they use.

    Every test using it is skipped when GASTOWN_CHART_KUBECONFIG is not set.
    """
    if not KUBECONFIG:
        pytest.skip(SKIP_REASON)
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
    stand_ins = [d for path in STAND_IN_CRDS for d in yaml.safe_load_all(path.read_text()) if d]
    admin.create_if_absent(stand_ins)
    admin.wait_established(crd_names + [c["metadata"]["name"] for c in stand_ins])

    admin.ensure_namespaces(
        [NAMESPACE, "team-a", "team-b", "agents", RBAC_TEAM_A, RBAC_TEAM_B, RBAC_OUTSIDE]
    )
    return Cluster(
        admin=admin,
        operator=operator,
        kube_version=match.group(0),
        api_resources=frozenset(admin.api_resources()),
    )


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

# Every value set test_chart.py renders (ids after the tests that render them). The namespaces
# they use (gastown-system, team-a, team-b, agents) are created by the `cluster` fixture.
DRY_RUN_CASES = [
    pytest.param({}, {}, id="defaults"),
    # The documented default release name (objects simply called gastown-operator).
    pytest.param({}, {"release_name": render.DEFAULT_RELEASE}, id="default-release-name"),
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
        {
            "policy": {
                "enabled": True,
                "settings": {"maxActiveClaimsPerNamespace": 3},
                "policyServerRbac": {"create": True},
            }
        },
        {},
        id="policy-server-rbac",
    ),
    pytest.param(
        {
            "policy": {
                "policyServerRbac": {
                    "create": True,
                    "serviceAccount": {"name": "ps-gastown", "namespace": "kw-system"},
                }
            }
        },
        {},
        id="policy-server-rbac-only",
    ),
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
    release = {"release_name": DRY_RUN_RELEASE, **release}
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
    objs = render.template_objects(
        values({"replicas": 2}), release_name=DRY_RUN_RELEASE, kube_version=cluster.kube_version
    )
    broken = yaml.safe_load(yaml.safe_dump(objs))
    container = one(broken, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "Sometimes"
    with pytest.raises(kube.KubectlError) as info:
        cluster.admin.apply(broken, dry_run_server=True)
    assert "imagePullPolicy" in str(info.value)
    # policy/v1 PodDisruptionBudgets only exist from Kubernetes 1.21.
    if int(cluster.kube_version.split(".")[1]) < 21:
        newer = render.template_objects(
            values({"replicas": 2}), release_name=DRY_RUN_RELEASE, kube_version="v1.21.0"
        )
        with pytest.raises(kube.KubectlError) as info:
            cluster.admin.apply(newer, dry_run_server=True)
        assert "PodDisruptionBudget" in str(info.value)
    # Namespaced objects need their namespace.
    with pytest.raises(kube.KubectlError) as info:
        cluster.admin.apply(
            render.template_objects(
                REQUIRED, release_name=DRY_RUN_RELEASE, namespace="chartdry-missing-namespace"
            ),
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
            str(CHART), DRY_RUN_RELEASE, values(overrides), namespace=NAMESPACE, dry_run="server"
        )
    assert release["status"] == "pending-install"
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    assert one(docs, "Deployment")["metadata"]["name"] == f"{DRY_RUN_RELEASE}-gastown-operator"
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


# Resources as `resource.version.group`: kubectl resolves that form from its discovery cache,
# while `resource.group` makes every kubectl process rediscover the whole API first.
AUTOMATONS = "automatons.v1alpha1.olympus.io"
LEASES = "leases.v1.coordination.k8s.io"
EVENTS = "events.v1.events.k8s.io"
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


def ask(cluster: Cluster, checks: list[Check], user: str) -> dict[Check, bool]:
    """The answers of `kubectl auth can-i --as <user>` (admin kubeconfig) to every check, asked
    in one kubectl process (see kube.Kubectl.access_reviews)."""
    questions = [(c.verb, c.resource, c.namespace, c.subresource) for c in checks]
    answers = cluster.admin.access_reviews(questions, as_user=user)
    return dict(zip(checks, answers, strict=True))


# Pseudo-resources that RBAC knows but discovery does not list.
NOT_DISCOVERABLE = {"users", "groups"}


def assert_resources_exist(cluster: Cluster, checks: list[Check]) -> None:
    """A misspelt resource would be a meaningless "no": every one must be served."""
    unknown = set()
    for check in checks:
        attrs = kube.resource_attributes(check.verb, check.resource, None, None)
        name = ".".join(filter(None, (attrs["resource"], attrs.get("group"))))
        if name not in cluster.api_resources and name not in NOT_DISCOVERABLE:
            unknown.add(name)
    assert not unknown, f"not served by the API server: {sorted(unknown)}"


def assert_matrix(cluster: Cluster, user: str, allowed: list[Check], denied: list[Check]) -> None:
    assert len(set(allowed)) == len(allowed), "a check is listed twice"
    assert len(set(denied)) == len(denied), "a check is listed twice"
    assert not set(allowed) & set(denied)
    assert_resources_exist(cluster, allowed + denied)
    # New bindings reach the authorizer's cache within moments: wait until every grant shows,
    # so that no denial below passes only because the RBAC objects are not seen yet.
    pending = list(allowed)

    def all_granted() -> bool:
        nonlocal pending
        answers = ask(cluster, pending, user)
        pending = [c for c in pending if not answers[c]]
        return not pending

    kube.wait_for(all_granted, timeout_secs=RBAC_PROPAGATION_SECS)
    answers = ask(cluster, denied, user)
    wrongly_allowed = [str(c) for c in denied if answers[c]]
    assert (pending, wrongly_allowed) == ([], []), (
        f"as {user}: not allowed although the controller needs it: "
        f"{[str(c) for c in pending]}; allowed although it must not be: {wrongly_allowed}"
    )
    # `kubectl auth can-i --as` itself, one process per question, agrees (on a sample).
    sample = [allowed[0], allowed[-1], denied[0], denied[-1]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        can_i = list(
            pool.map(
                lambda c: cluster.admin.can_i(
                    c.verb,
                    c.resource,
                    namespace=c.namespace,
                    subresource=c.subresource,
                    as_user=user,
                ),
                sample,
            )
        )
    expected = [c in set(allowed) for c in sample]
    assert can_i == expected, [(str(c), a) for c, a in zip(sample, can_i, strict=True)]


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


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "(Forbidden)" in result.stderr


def assert_lists(kubectl: kube.Kubectl, resource: str, *where: str) -> None:
    listed = kubectl.run("get", resource, *where, "-o", "name", check=False)
    assert listed.returncode == 0, listed.stderr


def assert_forbidden(kubectl: kube.Kubectl, *args: str) -> None:
    result = kubectl.run(*args, check=False)
    assert forbidden(result), (args, result.returncode, result.stdout, result.stderr)


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


# ---------------------------------------------------------------------------------------------
# The PolicyServer's RBAC (policy.policyServerRbac), for real
#
# A ServiceAccount of this module's own stands in for the PolicyServer's (Kubewarden's default
# is kubewarden/policy-server); the chart's ClusterRole and ClusterRoleBinding are created for
# real and the identity then makes, with a real token, the requests policy-server makes for
# kubernetes/list_resources_by_namespace: API discovery of olympus.io/v1alpha1 (kubewarden-
# controller crates/policy-evaluator/src/callback_handler/kubernetes/client.rs,
# build_kube_resource), then a LIST and a WATCH of the namespace's Automatons with the claim
# label selector (a kube-rs reflector: .../kubernetes/reflector.rs).

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
    objs = render.template_objects(
        values(PS_VALUES), release_name=PS_RELEASE, namespace=NAMESPACE
    )
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
        "watch": kubectl.run(
            "get", "--raw", f"{listing}&watch=true&timeoutSeconds=1", check=False
        ),
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

