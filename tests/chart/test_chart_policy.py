"""The Kubewarden policy the chart can install (policy.*), compared field by field with the
standalone manifest in policy/manifests/, and the RBAC it offers a PolicyServer
(policy.policyServerRbac)."""

from __future__ import annotations

from typing import Any

import pytest
import render
import value_sets as vs
import yaml
from helpers import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    args,
    by_kind,
    kinds,
    objects,
    one,
    rejected,
    values,
)

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
    objs = objects(vs.POLICY_WITH_SETTINGS)
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
    policy = {"policy": {"enabled": True, "module": vs.POLICY_MODULE}}
    spec = one(objects(policy), "ClusterAdmissionPolicy")["spec"]
    assert spec["module"] == vs.POLICY_MODULE


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
        role = next(
            o
            for o in by_kind(objs, "ClusterRole")
            if o["metadata"]["name"].endswith("-policy-server")
        )
        assert role["metadata"]["name"] == f"{RELEASE}-policy-server"
        assert role["rules"] == [
            {"apiGroups": ["olympus.io"], "resources": ["automatons"], "verbs": ["list", "watch"]}
        ]
        binding = next(
            o
            for o in by_kind(objs, "ClusterRoleBinding")
            if o["metadata"]["name"] == role["metadata"]["name"]
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
    named = objects(vs.POLICY_SERVER_RBAC_NAMED, release_name="town")
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
        f"ClusterRole/{RELEASE}-policy-server grants them to ServiceAccount "
        "kubewarden/policy-server" in granted
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
