"""Every value set the chart tests render, rendered for the server's Kubernetes version (v1.20.2
on the test cluster) and applied with `kubectl apply --dry-run=server`: the API server
validates, defaults and admits every object, nothing is stored. The project's CRD and stand-ins
for the ServiceMonitor and ClusterAdmissionPolicy CRDs (tests/chart/crds/) are registered first,
and the namespaces the objects use are created (the `cluster` fixture, live_cluster.py).
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kube
import pytest
import render
import value_sets as vs
import yaml
from helpers import CHART, NAMESPACE, REQUIRED, identity, one, values
from live_cluster import (
    KUBECONFIG,
    STAND_IN_CRDS,
    TOWN_ALICE_NAMESPACE,
    TOWN_BOB_NAMESPACE,
    Cluster,
    minor_version,
)

# Dry runs use a release name of their own: Helm refuses to install over objects another
# release owns, and the default release's objects may exist for real (other tests create them).
DRY_RUN_RELEASE = "chartdry"


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


# Every value set the render tests (test_chart_*.py) render, ids after the tests that render
# them. The namespaces they use (gastown-system, team-a, team-b, agents, charttown-*) are
# created by the `cluster` fixture.
DRY_RUN_CASES = [
    pytest.param({}, {}, id="defaults"),
    # The documented default release name (objects simply called gastown-operator).
    pytest.param({}, {"release_name": render.DEFAULT_RELEASE}, id="default-release-name"),
    pytest.param(vs.TWO_NAMESPACES, {}, id="namespaced-two-namespaces"),
    pytest.param({"rbac": {"scope": "namespaced"}}, {}, id="namespaced-release-namespace"),
    pytest.param(
        {"rbac": {"scope": "cluster"}, **vs.TWO_NAMESPACES}, {}, id="cluster-scope-watch-list"
    ),
    pytest.param({"rbac": {"create": False}, "replicas": 2}, {}, id="rbac-off"),
    pytest.param({"replicas": 2}, {}, id="replicas-2"),
    pytest.param({"replicas": 3, "podDisruptionBudget": {"enabled": False}}, {}, id="no-pdb"),
    pytest.param(vs.LEADER_ELECTION_NAMESPACED, {}, id="leader-election-namespaced"),
    pytest.param({"metrics": {"enabled": False}}, {}, id="metrics-off"),
    pytest.param(vs.SERVICE_MONITOR_LABELLED, {}, id="service-monitor-on"),
    pytest.param({"networkPolicy": {"enabled": True}}, {}, id="network-policy"),
    pytest.param(vs.NETWORK_POLICY_ADDRESSES, {}, id="network-policy-addresses"),
    pytest.param(vs.POLICY_WITH_SETTINGS, {}, id="policy-with-settings"),
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
    pytest.param(vs.POLICY_SERVER_RBAC_NAMED, {}, id="policy-server-rbac-only"),
    pytest.param({"policy": {"enabled": True, "module": vs.POLICY_MODULE}}, {}, id="policy-module"),
    pytest.param(
        {"policy": {"enabled": True}},
        {"release_name": "town", "namespace": "agents"},
        id="other-release-and-namespace",
    ),
    pytest.param({"gastown": {"transport": "exec"}}, {}, id="exec-transport"),
    pytest.param(vs.IMAGE_OVERRIDES, {}, id="image-overrides"),
    pytest.param({"image": {"digest": vs.IMAGE_DIGEST}}, {}, id="image-digest"),
    pytest.param(vs.TUNING, {}, id="tuning"),
    pytest.param({"serviceAccount": {"create": False, "name": "byo"}}, {}, id="existing-sa"),
    pytest.param(vs.EVERYTHING_ON, {}, id="everything-on"),
    pytest.param(
        vs.towns(TOWN_ALICE_NAMESPACE, TOWN_BOB_NAMESPACE),
        {"namespace": TOWN_ALICE_NAMESPACE},
        id="towns-policy-owner",
    ),
    pytest.param(vs.TOWN_BOB, {"namespace": TOWN_BOB_NAMESPACE}, id="towns-other-town"),
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
        assert pdb["apiVersion"] == (
            "policy/v1beta1" if minor_version(cluster) < 21 else "policy/v1"
        )


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
    if minor_version(cluster) < 21:
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
        expected = "policy/v1beta1" if minor_version(cluster) < 21 else "policy/v1"
        assert one(docs, "PodDisruptionBudget")["apiVersion"] == expected
