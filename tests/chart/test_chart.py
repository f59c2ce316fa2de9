"""The gastown-operator Helm chart, linted and rendered by real Helm (helm-python-sdk).

Run: pip install -r tests/chart/requirements.txt && pytest -q tests/chart
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import render
import yaml

CHART = render.CHART_DIR
REPO = render.REPO_ROOT
RELEASE = render.DEFAULT_RELEASE
NAMESPACE = render.DEFAULT_NAMESPACE

PROXY_URL = "https://gastown.example.com:9876"
PROXY_SECRET = "gt-proxy-client"
# The least a proxy install needs: everything else is the chart's default.
REQUIRED = {"gastown": {"proxy": {"url": PROXY_URL, "existingSecret": PROXY_SECRET}}}

RIG_PATTERN = (
    "^(?:[A-Za-z]|[A-GI-Za-gi-z][A-Za-z0-9_]|[Hh][A-PR-Za-pr-z0-9_]|[A-Za-z][A-Za-z0-9_]{2,63})$"
)
DNS_LABEL_PATTERN = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

AUTOMATON_RULES = [
    {
        "apiGroups": ["olympus.io"],
        "resources": ["automatons"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["olympus.io"],
        "resources": ["automatons/status"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["olympus.io"], "resources": ["automatons/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]


def lease_rules(lease: str) -> list[dict[str, Any]]:
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update", "patch"],
        },
    ]


def values(*overrides: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = REQUIRED
    for override in overrides:
        merged = render.deep_merge(merged, override)
    return merged


def objects(*overrides: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    return render.render_objects(values(*overrides), **kwargs)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def args(objs: list[dict[str, Any]]) -> list[str]:
    return container(objs)["args"]


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def rejected(user_values: dict[str, Any], **kwargs: Any) -> str:
    """Renders values that must fail; returns Helm's message."""
    with pytest.raises(helm.HelmError) as info:
        render.render_templates(user_values, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Lint and metadata


def test_lint_is_clean_with_required_values() -> None:
    for kube_version in (None, "v1.20.0", "v1.31.0"):
        report = helm.lint(
            CHART, REQUIRED, strict=True, namespace=NAMESPACE, kube_version=kube_version
        )
        assert report["total_charts_linted"] == 1
        assert report["errors"] == [], report
        # Only informational findings (Helm recommends an icon) are tolerated.
        assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def test_lint_is_clean_with_every_option_on() -> None:
    everything = values(
        {
            "replicas": 2,
            "watchNamespaces": ["team-a", "team-b"],
            "metrics": {"serviceMonitor": {"enabled": True}},
            "networkPolicy": {"enabled": True},
            "policy": {
                "enabled": True,
                "settings": {"forgeRigs": {"payments": "pay"}, "maxActiveClaimsPerNamespace": 2},
            },
        }
    )
    report = helm.lint(CHART, everything, strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]


def test_lint_reports_schema_violations() -> None:
    report = helm.lint(CHART, values({"replicas": 0}), strict=True)
    assert any("/replicas" in e for e in report["errors"]), report


def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["type"] == "application"
    assert meta["name"] == "gastown-operator"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.20.0-0"
    ann = meta["annotations"]
    assert ann["artifacthub.io/license"] == "Apache-2.0"
    assert ann["artifacthub.io/operator"] == "true"
    crds = yaml.safe_load(ann["artifacthub.io/crds"])
    assert [(c["kind"], c["version"], c["name"]) for c in crds] == [
        ("Automaton", "v1alpha1", "automatons.olympus.io")
    ]
    examples = yaml.safe_load(ann["artifacthub.io/crdsExamples"])
    assert [(e["apiVersion"], e["kind"]) for e in examples] == [
        ("olympus.io/v1alpha1", "Automaton")
    ]
    links = yaml.safe_load(ann["artifacthub.io/links"])
    assert links and all({"name", "url"} <= set(link) for link in links)
    images = yaml.safe_load(ann["artifacthub.io/images"])
    assert images == [
        {
            "name": "gastown-controller",
            "image": f"ghcr.io/gastown-operator/gastown-controller:{meta['appVersion']}",
        }
    ]
    # Helm reads the same metadata.
    assert render.load_chart().metadata["appVersion"] == "0.1.0"


def test_kube_version_below_minimum_is_refused() -> None:
    # Only Helm's install action checks Chart.yaml's kubeVersion (render and lint do not).
    with pytest.raises(helm.HelmReleaseError) as info:
        render.helm_template(REQUIRED, kube_version="v1.19.9")
    assert "chart requires kubeVersion: >=1.20.0-0" in str(info.value)
    for ok in ("v1.20.0", "v1.20.2", "v1.34.1"):
        assert render.helm_template(REQUIRED, kube_version=ok)["manifest"]


def _identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def test_helm_template_and_render_agree() -> None:
    """Helm's install action (helm template) and the engine render give the same objects."""
    for overrides in (
        {},
        {"replicas": 2, "policy": {"enabled": True}, "networkPolicy": {"enabled": True}},
        {"watchNamespaces": ["team-a", "team-b"]},
    ):
        via_install = render.template_objects(values(overrides))
        via_render = render.render_objects(values(overrides))
        assert sorted(via_install, key=_identity) == sorted(via_render, key=_identity)
        assert [o["kind"] for o in via_install] == [o["kind"] for o in via_render]


def test_chart_has_notes_readme_and_schema() -> None:
    chart = render.load_chart()
    names = {f["name"] for f in chart.files}
    assert "README.md" in names
    assert chart.schema is not None and chart.schema["$schema"].startswith(
        "http://json-schema.org/draft-07/schema"
    )
    assert any(t["name"] == "templates/NOTES.txt" for t in chart.templates)


# ---------------------------------------------------------------------------------------------
# The CRD


def test_crd_is_byte_identical_to_the_generated_one() -> None:
    generated = REPO / "crds" / "automaton.yaml"
    shipped = CHART / "crds" / "automaton.yaml"
    assert generated.exists(), "crds/automaton.yaml is missing: run `make crds`"
    assert shipped.read_bytes() == generated.read_bytes(), (
        "charts/gastown-operator/crds/automaton.yaml differs from crds/automaton.yaml: "
        "run `make crds`"
    )


def test_helm_ships_the_crd_outside_templates() -> None:
    crds = render.crd_objects()
    assert [c["metadata"]["name"] for c in crds] == ["automatons.olympus.io"]
    crd = crds[0]
    assert crd["spec"]["group"] == "olympus.io"
    assert crd["spec"]["scope"] == "Namespaced"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    assert version["subresources"] == {"status": {}}
    # Templates never render the CRD (Helm installs crds/ first and never upgrades it).
    assert not by_kind(objects(), "CustomResourceDefinition")


# ---------------------------------------------------------------------------------------------
# Defaults


def test_pure_defaults_fail_with_a_clear_required_message() -> None:
    message = rejected({})
    assert "gastown.proxy.url is required" in message, message
    message = rejected({"gastown": {"proxy": {"url": PROXY_URL}}})
    assert "gastown.proxy.existingSecret is required" in message, message
    assert "tls.crt" in message


def test_default_objects() -> None:
    objs = objects()
    assert kinds(objs) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"]
    )
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["name"] == RELEASE or obj["metadata"]["name"].startswith(RELEASE)


def test_default_deployment_is_hardened() -> None:
    objs = objects()
    deploy = one(objs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == RELEASE
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden)
    c = container(objs)
    assert c["image"] == "ghcr.io/gastown-operator/gastown-controller:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_default_args() -> None:
    assert args(objects()) == [
        "--claimer=gastown-local",
        "--transport=proxy",
        f"--proxy-url={PROXY_URL}",
        "--proxy-cert=/etc/gastown/proxy/tls.crt",
        "--proxy-key=/etc/gastown/proxy/tls.key",
        "--proxy-ca=/etc/gastown/proxy/ca.crt",
        "--sync-interval=15s",
        "--claim-timeout=10m",
        "--command-timeout=70s",
        "--concurrency=8",
        "--gastown-concurrency=4",
        "--metrics-addr=0.0.0.0:8080",
        "--log-format=json",
        "--identity=$(POD_NAME)",
    ]


def test_proxy_secret_is_mounted_read_only() -> None:
    objs = objects()
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert container(objs)["volumeMounts"] == [
        {"name": "proxy-tls", "mountPath": "/etc/gastown/proxy", "readOnly": True}
    ]
    (volume,) = pod["volumes"]
    assert volume["name"] == "proxy-tls"
    assert volume["secret"]["secretName"] == PROXY_SECRET
    assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt", "tls.key", "ca.crt"]
    # Readable by the non-root user through fsGroup, by nobody else.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == 65532


def test_default_rbac_is_cluster_wide_and_least_privilege() -> None:
    objs = objects()
    role = one(objs, "ClusterRole")
    assert role["rules"] == AUTOMATON_RULES
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    # No leader election with one replica: no Lease rights either.
    assert not by_kind(objs, "Role") and not by_kind(objs, "RoleBinding")


def test_every_rbac_rule_has_a_comment() -> None:
    overrides = {"replicas": 2, "watchNamespaces": ["team-a"]}
    text = render.render_templates(values(overrides))[f"{CHART.name}/templates/rbac.yaml"]
    lines = text.splitlines()
    rule_starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rule_starts) == len(AUTOMATON_RULES) + 2
    for i in rule_starts:
        assert lines[i - 1].strip().startswith("#"), f"rule without a comment: {lines[i]}"


def test_service_account() -> None:
    sa = one(objects(), "ServiceAccount")
    assert sa["metadata"]["name"] == RELEASE
    assert sa["automountServiceAccountToken"] is True


def test_image_overrides() -> None:
    objs = objects(
        {
            "image": {"repository": "registry.local/gc", "tag": "dev", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
        }
    )
    c = container(objs)
    assert c["image"] == "registry.local/gc:dev"
    assert c["imagePullPolicy"] == "Always"
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    digest = "sha256:" + "a" * 64
    assert container(objects({"image": {"digest": digest}}))["image"] == (
        f"ghcr.io/gastown-operator/gastown-controller@{digest}"
    )


def test_tuning_flags_follow_values() -> None:
    a = args(
        objects(
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
            }
        )
    )
    for flag in (
        "--claimer=team-town",
        "--sync-interval=1m",
        "--claim-timeout=1h30m",
        "--command-timeout=45s",
        "--concurrency=3",
        "--gastown-concurrency=2",
        "--log-format=text",
        "--metrics-addr=0.0.0.0:9090",
    ):
        assert flag in a
    assert a[-1] == "--verbose"


def test_exec_transport_needs_no_proxy() -> None:
    objs = render.render_objects({"gastown": {"transport": "exec"}})
    a = args(objs)
    assert "--transport=exec" in a
    assert not [x for x in a if x.startswith("--proxy")]
    assert "volumes" not in one(objs, "Deployment")["spec"]["template"]["spec"]
    assert "volumeMounts" not in container(objs)


# ---------------------------------------------------------------------------------------------
# Scope


def test_namespaced_scope_with_two_namespaces() -> None:
    objs = objects({"watchNamespaces": ["team-a", "team-b"]})
    assert not by_kind(objs, "ClusterRole") and not by_kind(objs, "ClusterRoleBinding")
    roles = by_kind(objs, "Role")
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == AUTOMATON_RULES
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]
    assert "--namespaces=team-a,team-b" in args(objs)


def test_namespaced_scope_without_a_list_watches_the_release_namespace() -> None:
    objs = objects({"rbac": {"scope": "namespaced"}})
    assert [r["metadata"]["namespace"] for r in by_kind(objs, "Role")] == [NAMESPACE]
    assert f"--namespaces={NAMESPACE}" in args(objs)


def test_cluster_scope_can_still_restrict_watched_namespaces() -> None:
    objs = objects({"rbac": {"scope": "cluster"}, "watchNamespaces": ["team-a", "team-b"]})
    assert one(objs, "ClusterRole")["rules"] == AUTOMATON_RULES
    assert not by_kind(objs, "Role")
    assert "--namespaces=team-a,team-b" in args(objs)


def test_rbac_can_be_turned_off() -> None:
    objs = objects({"rbac": {"create": False}, "replicas": 2})
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds(objs))


# ---------------------------------------------------------------------------------------------
# Replicas, leader election, PDB


def test_two_replicas_turn_on_leader_election_and_the_pdb() -> None:
    objs = objects({"replicas": 2})
    a = args(objs)
    lease = f"{RELEASE}-leader"
    assert "--leader-election" in a
    assert f"--lease-name={lease}" in a
    assert "--lease-namespace=$(POD_NAMESPACE)" in a
    assert "--identity=$(POD_NAME)" in a
    (role,) = by_kind(objs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == lease_rules(lease)
    (binding,) = by_kind(objs, "RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == (one(objs, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"


def test_pdb_uses_policy_v1beta1_on_kubernetes_1_20() -> None:
    objs = objects({"replicas": 2}, kube_version="v1.20.2")
    assert one(objs, "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"


def test_leader_election_on_one_replica_and_namespaced_scope() -> None:
    objs = objects(
        {
            "leaderElection": {"enabled": True, "leaseName": "gt-lease"},
            "watchNamespaces": ["team-a", "team-b"],
        }
    )
    assert "--leader-election" in args(objs)
    assert "--lease-name=gt-lease" in args(objs)
    assert not by_kind(objs, "PodDisruptionBudget")
    lease_roles = [r for r in by_kind(objs, "Role") if r["metadata"]["namespace"] == NAMESPACE]
    assert [r["rules"] for r in lease_roles] == [lease_rules("gt-lease")]
    assert len(by_kind(objs, "Role")) == 3


def test_pdb_can_be_turned_off() -> None:
    objs = objects({"replicas": 3, "podDisruptionBudget": {"enabled": False}})
    assert not by_kind(objs, "PodDisruptionBudget")


# ---------------------------------------------------------------------------------------------
# Metrics


def test_metrics_service_and_no_service_monitor_by_default() -> None:
    objs = objects()
    svc = one(objs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not by_kind(objs, "ServiceMonitor")


def test_metrics_off() -> None:
    objs = objects({"metrics": {"enabled": False}})
    assert not by_kind(objs, "Service") and not by_kind(objs, "ServiceMonitor")
    # The probes still use the admin port.
    assert container(objs)["ports"][0]["name"] == "metrics"


def test_service_monitor_on() -> None:
    objs = objects(
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    )
    sm = one(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}
    ]
    assert sm["spec"]["selector"]["matchLabels"].items() <= (
        one(objs, "Service")["metadata"]["labels"].items()
    )


def test_service_monitor_needs_the_service() -> None:
    message = rejected(values({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}))
    assert "metrics.serviceMonitor.enabled needs metrics.enabled=true" in message


# ---------------------------------------------------------------------------------------------
# NetworkPolicy


def test_network_policy_on() -> None:
    objs = objects({"networkPolicy": {"enabled": True}})
    np = one(objs, "NetworkPolicy")
    spec = np["spec"]
    assert (
        spec["podSelector"]["matchLabels"]
        == (one(objs, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    egress_ports = [
        sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in spec["egress"]
    ]
    assert egress_ports == [
        [(443, "TCP"), (6443, "TCP")],
        [(9876, "TCP")],
        [(53, "TCP"), (53, "UDP")],
    ]
    assert all("to" not in rule for rule in spec["egress"])
    assert not by_kind(objects(), "NetworkPolicy")


def test_network_policy_with_addresses() -> None:
    np = one(
        objects(
            {
                "gastown": {"proxy": {"url": "https://gt.example.com/api"}},
                "networkPolicy": {
                    "enabled": True,
                    "apiServer": {"cidrs": ["10.96.0.1/32"], "ports": [443]},
                    "proxy": {"cidrs": ["192.0.2.10/32"]},
                    "dns": {"enabled": False},
                    "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                },
            }
        ),
        "NetworkPolicy",
    )
    assert np["spec"]["egress"] == [
        {
            "ports": [{"port": 443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        },
        # No port in the URL: https' 443.
        {
            "ports": [{"port": 443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
        },
    ]
    assert np["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    ]


# ---------------------------------------------------------------------------------------------
# Kubewarden policy


POLICY_RULES = [
    {
        "apiGroups": ["olympus.io"],
        "apiVersions": ["v1alpha1"],
        "resources": ["automatons"],
        "operations": ["CREATE", "UPDATE"],
    },
    {
        "apiGroups": ["olympus.io"],
        "apiVersions": ["v1alpha1"],
        "resources": ["automatons/status"],
        "operations": ["UPDATE"],
    },
]


def test_no_policy_by_default() -> None:
    assert not by_kind(objects(), "ClusterAdmissionPolicy")


def test_policy_enabled_with_settings() -> None:
    objs = objects(
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
        }
    )
    cap = one(objs, "ClusterAdmissionPolicy")
    assert cap["apiVersion"] == "policies.kubewarden.io/v1"
    assert "namespace" not in cap["metadata"]
    spec = cap["spec"]
    assert spec["module"] == "registry://ghcr.io/gastown-operator/policies/gastown-claim:v0.1.0"
    assert spec["mutating"] is True
    assert spec["policyServer"] == "gastown"
    assert spec["mode"] == "monitor"
    assert spec["failurePolicy"] == "Ignore"
    assert spec["timeoutSeconds"] == 5
    assert spec["rules"] == POLICY_RULES
    assert spec["contextAwareResources"] == [
        {"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton"}
    ]
    assert spec["settings"] == {
        "claimer": "team-town",
        "allowedUsers": ["alice"],
        "allowedGroups": ["system:authenticated"],
        "controllerUsers": [
            f"system:serviceaccount:{NAMESPACE}:{RELEASE}",
            "system:serviceaccount:ops:gt-admin",
        ],
        "forgeRigs": {"payments": "payments_rig", "web": "frontend"},
        "defaultRig": "general",
        "maxActiveClaimsPerNamespace": 5,
    }
    # The controller is started with the same claimer the policy stamps.
    assert "--claimer=team-town" in args(objs)


def test_policy_minimal_settings_omit_optional_ones() -> None:
    spec = one(objects({"policy": {"enabled": True}}), "ClusterAdmissionPolicy")["spec"]
    assert "contextAwareResources" not in spec
    assert spec["mode"] == "protect"
    assert spec["failurePolicy"] == "Fail"
    assert spec["policyServer"] == "default"
    assert spec["settings"] == {
        "claimer": "gastown-local",
        "allowedUsers": [],
        "allowedGroups": [],
        "controllerUsers": [f"system:serviceaccount:{NAMESPACE}:{RELEASE}"],
        "forgeRigs": {},
    }


def test_controller_users_follow_the_release_service_account() -> None:
    objs = objects({"policy": {"enabled": True}}, release_name="town", namespace="agents")
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"] == {
        **sa["metadata"],
        "name": "town-gastown-operator",
        "namespace": "agents",
    }
    users = one(objs, "ClusterAdmissionPolicy")["spec"]["settings"]["controllerUsers"]
    assert users == ["system:serviceaccount:agents:town-gastown-operator"]
    named = objects(
        {"policy": {"enabled": True}, "serviceAccount": {"name": "gt-controller"}},
        namespace="agents",
    )
    assert one(named, "ServiceAccount")["metadata"]["name"] == "gt-controller"
    assert one(named, "ClusterRoleBinding")["subjects"][0]["name"] == "gt-controller"
    assert one(named, "ClusterAdmissionPolicy")["spec"]["settings"]["controllerUsers"] == [
        "system:serviceaccount:agents:gt-controller"
    ]
    # The default install matches the contract's DEFAULT_CONTROLLER_USER.
    default = objects(
        {"policy": {"enabled": True}}, release_name="gastown-operator", namespace="gastown-system"
    )
    assert one(default, "ClusterAdmissionPolicy")["spec"]["settings"]["controllerUsers"] == [
        "system:serviceaccount:gastown-system:gastown-operator"
    ]
    contract = (REPO / "crds" / "src" / "contract.rs").read_text()
    assert 'DEFAULT_CLAIMER: &str = "gastown-local"' in contract
    assert render.load_chart().values["gastown"]["claimer"] == "gastown-local"
    assert (
        'DEFAULT_CONTROLLER_USER: &str = "system:serviceaccount:gastown-system:gastown-operator"'
    ) in contract


def test_existing_service_account_must_be_named() -> None:
    message = rejected(values({"serviceAccount": {"create": False}}))
    assert "serviceAccount.name is required" in message
    objs = objects({"serviceAccount": {"create": False, "name": "byo"}})
    assert not by_kind(objs, "ServiceAccount")
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "byo"


def test_policy_module_override() -> None:
    module = "registry://registry.local/gastown-claim:v9"
    spec = one(objects({"policy": {"enabled": True, "module": module}}), "ClusterAdmissionPolicy")[
        "spec"
    ]
    assert spec["module"] == module


# The standalone policy (policy/manifests/, applied with kubectl) and the chart's policy are one
# policy installed two ways. These chart values turn the chart's policy into the manifest's: the
# settings the manifest sets beyond the chart's defaults, for the release gastown-operator in
# gastown-system. policy/tests/packaging/ checks the manifest against policy/metadata.yml.
STANDALONE_MANIFEST = REPO / "policy" / "manifests" / "cluster-admission-policy.yaml"
STANDALONE_VALUES = {
    "policy": {
        "enabled": True,
        "settings": {
            "allowedGroups": ["gastown-claimers"],
            "defaultRig": "gastown",
            "maxActiveClaimsPerNamespace": 20,
        },
    }
}


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every path at which two parsed YAML documents differ, for a readable failure."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}"
            if key not in actual:
                out.append(f"{where}: only in the manifest ({expected[key]!r})")
            elif key not in expected:
                out.append(f"{where}: only in the chart ({actual[key]!r})")
            else:
                out.extend(differences(expected[key], actual[key], where))
        return out
    if expected != actual or type(expected) is not type(actual):
        return [f"{path}: manifest {expected!r}, chart {actual!r}"]
    return []


def test_policy_is_the_standalone_manifest_field_by_field() -> None:
    """Every field of the spec (rules, operations, contextAwareResources, settings and their
    shape, mutating, backgroundAudit, failurePolicy, timeoutSeconds, mode, module, selectors,
    ...) is the same in the chart's policy and in policy/manifests/, and so is the name."""
    manifest = yaml.safe_load(STANDALONE_MANIFEST.read_text())
    cap = one(
        objects(STANDALONE_VALUES, release_name=RELEASE, namespace=NAMESPACE),
        "ClusterAdmissionPolicy",
    )
    assert (cap["apiVersion"], cap["kind"]) == (manifest["apiVersion"], manifest["kind"])
    assert cap["metadata"]["name"] == manifest["metadata"]["name"]
    assert set(manifest["metadata"]) == {"name", "labels"}
    labels = cap["metadata"]["labels"]
    assert manifest["metadata"]["labels"] == {
        k: labels.get(k) for k in manifest["metadata"]["labels"]
    }
    assert differences(manifest["spec"], cap["spec"]) == []
    assert cap["spec"] == manifest["spec"]


def test_differences_reports_every_kind_of_drift() -> None:
    """The comparison above cannot pass a difference by: a missing, an extra, a changed value
    and a changed type (20 vs "20") are each reported."""
    base = {"a": {"b": [1, 2]}, "c": 20, "d": False}
    assert differences(base, base) == []
    assert differences(base, {**base, "d": None}) == [".d: manifest False, chart None"]
    assert differences(base, {**base, "c": "20"}) == [".c: manifest 20, chart '20'"]
    assert differences(base, {"a": {"b": [2, 1]}, "c": 20, "d": False}) == [
        ".a.b: manifest [1, 2], chart [2, 1]"
    ]
    missing = {k: v for k, v in base.items() if k != "d"}
    assert differences(base, missing) == [".d: only in the manifest (False)"]
    assert differences(base, {**base, "e": 1}) == [".e: only in the chart (1)"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"policy": {"enabled": True}}, id="minimal"),
        pytest.param(STANDALONE_VALUES, id="standalone"),
        pytest.param(
            {"policy": {"enabled": True, "mode": "monitor", "failurePolicy": "Ignore"}},
            id="monitor",
        ),
    ],
)
def test_policy_is_never_background_audited(overrides: dict[str, Any]) -> None:
    """The CRD defaults backgroundAudit to true (kubewarden-controller
    api/policies/v1/policy_types.go, `+kubebuilder:default:=true`), so the chart must set false
    itself: the audit scanner replays stored Automatons as CREATEs without userInfo or old object
    (internal/audit-scanner/scanner/admission_request.go)."""
    spec = one(objects(overrides), "ClusterAdmissionPolicy")["spec"]
    assert spec["backgroundAudit"] is False


# PolicyServer RBAC for the claim limit (policy.policyServerRbac)


def test_no_policy_server_rbac_by_default() -> None:
    for overrides in ({}, {"policy": {"enabled": True}}, STANDALONE_VALUES):
        objs = objects(overrides)
        assert not [o for o in objs if o["metadata"]["name"].endswith("-policy-server")]
        assert kinds(by_kind(objs, "ClusterRole")) == ["ClusterRole"]  # the controller's only


def test_policy_server_rbac_lists_and_watches_automatons_only() -> None:
    """What policy-server needs for kubernetes/list_resources_by_namespace: a kube-rs reflector,
    i.e. LIST then WATCH (kubewarden-controller
    crates/policy-evaluator/src/callback_handler/kubernetes/reflector.rs), nothing else."""
    rbac = {"policyServerRbac": {"create": True}}
    for overrides in ({"policy": rbac}, {"policy": {**rbac, "enabled": True}}):
        objs = objects(overrides)
        role = next(o for o in by_kind(objs, "ClusterRole") if o["metadata"]["name"].endswith(
            "-policy-server"
        ))
        assert role["metadata"]["name"] == f"{RELEASE}-policy-server"
        assert role["rules"] == [
            {"apiGroups": ["olympus.io"], "resources": ["automatons"], "verbs": ["list", "watch"]}
        ]
        binding = next(
            o for o in by_kind(objs, "ClusterRoleBinding") if o["metadata"]["name"] == role[
                "metadata"
            ]["name"]
        )
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        }
        # Kubewarden's default PolicyServer: ServiceAccount policy-server (kubewarden-defaults
        # values policyServer.serviceAccountName) in the namespace Kubewarden is installed in.
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "policy-server", "namespace": "kubewarden"}
        ]
    named = objects(
        {
            "policy": {
                "policyServerRbac": {
                    "create": True,
                    "serviceAccount": {"name": "ps-gastown", "namespace": "kw-system"},
                }
            }
        },
        release_name="town",
    )
    binding = next(
        o
        for o in by_kind(named, "ClusterRoleBinding")
        if o["metadata"]["name"] == "town-gastown-operator-policy-server"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ps-gastown", "namespace": "kw-system"}
    ]
    assert "namespace" not in binding["metadata"]


def test_policy_server_rbac_rule_has_a_comment() -> None:
    text = render.render_templates(values({"policy": {"policyServerRbac": {"create": True}}}))[
        f"{CHART.name}/templates/policyserver-rbac.yaml"
    ]
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == 1
    assert lines[starts[0] - 1].strip().startswith("#")
    assert "list_resources_by_namespace" in text


def test_notes_tell_how_to_deploy_the_context_aware_policy() -> None:
    """kwctl drops contextAwareResources unless --allow-context-aware is given (kubewarden-
    controller crates/kwctl/src/scaffold/manifest.rs, generate_yaml_resource), and the claim limit
    needs the PolicyServer's RBAC."""
    without = render.render_notes(values())
    assert "kwctl scaffold manifest --allow-context-aware -t ClusterAdmissionPolicy" in without
    assert "registry://ghcr.io/gastown-operator/policies/gastown-claim:v0.1.0" in without
    limit = {"policy": {"enabled": True, "settings": {"maxActiveClaimsPerNamespace": 3}}}
    warned = render.render_notes(values(limit))
    assert "WARNING: policy.policyServerRbac.create=false" in warned
    granted = render.render_notes(values(limit, {"policy": {"policyServerRbac": {"create": True}}}))
    assert "WARNING" not in granted
    assert (
        f"ClusterRole/{RELEASE}-policy-server grants them to ServiceAccount kubewarden/policy-server"
        in granted
    )
    assert "policyServerRbac" not in render.render_notes(values({"policy": {"enabled": True}}))


def test_chart_readme_documents_the_policy_deployment() -> None:
    readme = (CHART / "README.md").read_text()
    for needle in (
        "backgroundAudit: false",
        "kwctl scaffold manifest --allow-context-aware",
        "policy.policyServerRbac.create",
        "namespacedPoliciesCapabilities",
        "kubernetes/list_resources_by_namespace",
    ):
        assert needle in readme, needle


# ---------------------------------------------------------------------------------------------
# Values validation


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param(
            {"policy": {"settings": {"forgeRigs": {"payments": "pay-rig"}}}},
            ["/policy/settings/forgeRigs/payments", "pay-rig", "does not match pattern"],
            id="rig-name-with-dash",
        ),
        pytest.param(
            {"policy": {"settings": {"forgeRigs": {"payments": "hq"}}}},
            ["/policy/settings/forgeRigs/payments", "'hq'"],
            id="reserved-rig-hq",
        ),
        pytest.param(
            {"policy": {"settings": {"defaultRig": "my rig"}}},
            ["/policy/settings/defaultRig", "does not match pattern"],
            id="bad-default-rig",
        ),
        pytest.param(
            {"policy": {"settings": {"forgeRigs": {"Payments": "payments"}}}},
            ["Payments"],
            id="forge-not-dns-label",
        ),
        pytest.param(
            {"controller": {"logFormat": "yaml"}},
            ["/controller/logFormat", "value must be one of", "'json', 'text'"],
            id="bad-log-format",
        ),
        pytest.param({"replicas": 0}, ["/replicas", "minimum: got 0, want 1"], id="zero-replicas"),
        pytest.param({"replicas": "two"}, ["/replicas", "string"], id="replicas-not-integer"),
        pytest.param(
            {"replica": 2},
            ["additional properties 'replica' not allowed"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            {"gastown": {"proxy": {"secret": "x"}}},
            ["/gastown/proxy", "additional properties 'secret' not allowed"],
            id="unknown-nested-key",
        ),
        pytest.param(
            {"gastown": {"transport": "ssh"}},
            ["/gastown/transport", "value must be one of 'proxy', 'exec'"],
            id="bad-transport",
        ),
        pytest.param(
            {"gastown": {"claimer": "Gas_Town"}},
            ["/gastown/claimer", "Gas_Town"],
            id="claimer-not-dns-label",
        ),
        pytest.param(
            {"gastown": {"proxy": {"url": "http://gt:9876"}}},
            ["/gastown/proxy/url", "does not match pattern"],
            id="proxy-not-https",
        ),
        pytest.param(
            {"gastown": {"syncInterval": "15 seconds"}},
            ["/gastown/syncInterval"],
            id="bad-duration",
        ),
        pytest.param(
            {"policy": {"mode": "enforce"}},
            ["/policy/mode", "protect", "monitor"],
            id="bad-policy-mode",
        ),
        pytest.param(
            {"policy": {"failurePolicy": "fail"}},
            ["/policy/failurePolicy", "Fail", "Ignore"],
            id="bad-failure-policy",
        ),
        pytest.param(
            {"policy": {"timeoutSeconds": 60}},
            ["/policy/timeoutSeconds", "maximum"],
            id="policy-timeout-too-long",
        ),
        pytest.param(
            {"policy": {"policyServerRbac": {"serviceAccount": {"name": "Policy_Server"}}}},
            ["/policy/policyServerRbac/serviceAccount/name", "does not match pattern"],
            id="bad-policy-server-service-account",
        ),
        pytest.param(
            {"policy": {"policyServerRbac": {"serviceAccount": {"namespace": "kube.warden"}}}},
            ["/policy/policyServerRbac/serviceAccount/namespace", "does not match pattern"],
            id="bad-policy-server-namespace",
        ),
        pytest.param(
            {"policy": {"policyServerRbac": {"enabled": True}}},
            ["/policy/policyServerRbac", "enabled"],
            id="policy-server-rbac-unknown-key",
        ),
        pytest.param(
            {"policy": {"settings": {"maxActiveClaimsPerNamespace": "5"}}},
            ["/policy/settings/maxActiveClaimsPerNamespace"],
            id="claim-limit-string",
        ),
        pytest.param(
            {"rbac": {"scope": "global"}}, ["/rbac/scope", "value must be one of"], id="bad-scope"
        ),
        pytest.param({"watchNamespaces": ["Team_A"]}, ["/watchNamespaces/0"], id="bad-namespace"),
        pytest.param(
            {"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy"], id="bad-pull-policy"
        ),
    ],
)
def test_invalid_values_are_rejected_with_a_message_naming_the_problem(
    bad: dict[str, Any], expected: list[str]
) -> None:
    user_values = values(bad)
    chart = render.load_chart()
    with pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(user_values)
    for text in expected:
        assert text in str(info.value), str(info.value)
    # Rendering (what install and template do) refuses them the same way.
    with pytest.raises(helm.HelmValuesError) as info:
        render.render_templates(user_values)
    assert "values don't meet the specifications of the schema" in str(info.value)
    for text in expected:
        assert text in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("rig", "ok"),
    [
        ("a", True),
        ("ab", True),
        ("h1", True),
        ("hqx", True),
        ("H_q", True),
        ("rig_01", True),
        ("x" * 64, True),
        ("hq", False),
        ("HQ", False),
        ("Hq", False),
        ("x" * 65, False),
        ("1rig", False),
        ("_rig", False),
        ("my-rig", False),
        ("my.rig", False),
        ("my/rig", False),
        ("my rig", False),
        ("", False),
    ],
)
def test_rig_name_rule(rig: str, ok: bool) -> None:
    check = {"policy": {"settings": {"forgeRigs": {"forge": rig}, "defaultRig": rig or "x"}}}
    chart = render.load_chart()
    if ok:
        chart.validate_schema(values(check))
    else:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values(check))


def test_schema_carries_the_crate_patterns() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    props = schema["properties"]
    settings = props["policy"]["properties"]["settings"]
    assert settings["properties"]["forgeRigs"]["additionalProperties"]["pattern"] == RIG_PATTERN
    assert props["gastown"]["properties"]["claimer"]["pattern"] == DNS_LABEL_PATTERN
    assert props["replicas"] == {**props["replicas"], "type": "integer", "minimum": 1}
    assert props["controller"]["properties"]["logFormat"]["enum"] == ["json", "text"]
    assert props["gastown"]["properties"]["transport"]["enum"] == ["proxy", "exec"]
    assert props["policy"]["properties"]["mode"]["enum"] == ["protect", "monitor"]
    assert props["policy"]["properties"]["failurePolicy"]["enum"] == ["Fail", "Ignore"]
    closed = [
        "",
        "image",
        "serviceAccount",
        "rbac",
        "gastown",
        "gastown.proxy",
        "controller",
        "leaderElection",
        "metrics",
        "metrics.serviceMonitor",
        "podDisruptionBudget",
        "networkPolicy",
        "policy",
        "policy.settings",
        "policy.policyServerRbac",
        "policy.policyServerRbac.serviceAccount",
    ]
    for path in closed:
        node = schema
        for part in filter(None, path.split(".")):
            node = node["properties"][part]
        assert node["additionalProperties"] is False, path


def test_crate_patterns_match_the_schema() -> None:
    """The Rust crate is the source of truth for the naming rules."""
    source = (REPO / "crds" / "src" / "validate.rs").read_text()
    # rustfmt may break a long constant after the `=`.
    rust = dict(re.findall(r'pub const (\w+_PATTERN): &str =\s*"((?:[^"\\]|\\.)*)";', source))
    assert rust["RIG_NAME_PATTERN"] == RIG_PATTERN
    assert rust["DNS_LABEL_PATTERN"] == DNS_LABEL_PATTERN


# ---------------------------------------------------------------------------------------------
# values.yaml documentation


def _walk(tree: Any, prefix: str = "") -> list[str]:
    paths = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.append(path)
            paths.extend(_walk(value, path))
    return paths


def test_every_value_has_a_comment_above_it() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        line
        for i, line in enumerate(lines)
        if re.match(r"^\s*[A-Za-z][\w.-]*:", line) and not lines[i - 1].strip().startswith("#")
    ]
    assert undocumented == []


def test_default_values_pass_the_schema_and_are_all_declared() -> None:
    chart = render.load_chart()
    defaults = chart.values
    chart.validate_schema(defaults)
    schema = chart.schema
    for path in _walk(defaults):
        node = schema
        for part in path.split("."):
            if node.get("type") == "object" and "properties" not in node:
                break  # a free-form object (resources, securityContext, ...)
            props = node.get("properties", {})
            assert part in props, f"{path} is not declared in values.schema.json"
            node = props[part]


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def documented_paths(tree: Any, node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else key
            child = node.get("properties", {}).get(key, {})
            if isinstance(value, dict) and "properties" in child:
                out.extend(documented_paths(value, child, path))
            else:
                out.append(path)
        return out

    missing = [p for p in documented_paths(defaults, schema) if f"`{p}`" not in readme]
    assert missing == []


# ---------------------------------------------------------------------------------------------
# NOTES.txt and the render tool


def test_notes() -> None:
    notes = render.render_notes(values({"policy": {"enabled": True}, "replicas": 2}))
    assert f"Deployment/{RELEASE}" in notes
    assert "leader election on Lease/gastown-operator-leader" in notes
    assert f"system:serviceaccount:{NAMESPACE}:{RELEASE}" in notes
    assert "ClusterAdmissionPolicy/gastown-operator-claim" in notes
    assert PROXY_URL in notes


def test_render_cli_writes_one_yaml_file(tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values({"replicas": 2})))
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(Path(render.__file__)),
            "--values",
            str(values_file),
            "--set",
            "controller.logFormat=text",
            "--out",
            str(out),
            "--kube-version",
            "v1.20.2",
            "--create-namespace",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    target = Path(result.stdout.strip())
    assert target == out / "manifests.yaml"
    docs = list(yaml.safe_load_all(target.read_text()))
    assert [d["kind"] for d in docs[:2]] == ["Namespace", "CustomResourceDefinition"]
    assert docs[0]["metadata"]["name"] == NAMESPACE
    assert docs[-1]["kind"] == "Deployment"
    assert one(docs, "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"
    assert "--log-format=text" in args(docs)
    # Install order: RBAC before the Deployment that needs it.
    order = [d["kind"] for d in docs]
    assert (
        order.index("ServiceAccount")
        < order.index("ClusterRoleBinding")
        < order.index("Deployment")
    )


def test_render_cli_reads_stdin_and_reports_errors(tmp_path: Path) -> None:
    script = str(Path(render.__file__))
    ok = subprocess.run(
        [sys.executable, script, "--values", "-", "--out", str(tmp_path), "--no-crds"],
        input=yaml.safe_dump(REQUIRED),
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    kinds_written = [
        d["kind"] for d in yaml.safe_load_all((tmp_path / "manifests.yaml").read_text())
    ]
    assert "CustomResourceDefinition" not in kinds_written
    bad = subprocess.run(
        [sys.executable, script, "--values", "-", "--out", str(tmp_path)],
        input=yaml.safe_dump(values({"controller": {"logFormat": "yaml"}})),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "/controller/logFormat" in bad.stderr
    missing = subprocess.run(
        [sys.executable, script, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert missing.returncode == 1
    assert "gastown.proxy.url is required" in missing.stderr


def test_values_merge_like_repeated_helm_f() -> None:
    merged = render.deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 3}, "d": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "d": [2]}


# ---------------------------------------------------------------------------------------------
# Against a real API server: test_cluster.py (server-side dry runs of every value set above, and
# the RBAC checked for real).
