"""The objects the chart renders (real Helm): the defaults, the RBAC scope, replicas with leader
election and the PodDisruptionBudget, metrics and the NetworkPolicy."""

from __future__ import annotations

from typing import Any

import render
import value_sets as vs
from helpers import (
    CHART,
    NAMESPACE,
    PROXY_SECRET,
    PROXY_URL,
    RELEASE,
    args,
    by_kind,
    container,
    kinds,
    objects,
    one,
    rejected,
    values,
)

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
    objs = objects(vs.IMAGE_OVERRIDES)
    c = container(objs)
    assert c["image"] == "registry.local/gc:dev"
    assert c["imagePullPolicy"] == "Always"
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(objects({"image": {"digest": vs.IMAGE_DIGEST}}))["image"] == (
        f"ghcr.io/gastown-operator/gastown-controller@{vs.IMAGE_DIGEST}"
    )


def test_tuning_flags_follow_values() -> None:
    a = args(objects(vs.TUNING))
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
    objs = objects(vs.TWO_NAMESPACES)
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
    objs = objects({"rbac": {"scope": "cluster"}, **vs.TWO_NAMESPACES})
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
    objs = objects(vs.LEADER_ELECTION_NAMESPACED)
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
    objs = objects(vs.SERVICE_MONITOR_LABELLED)
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
    np = one(objects(vs.NETWORK_POLICY_ADDRESSES), "NetworkPolicy")
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
