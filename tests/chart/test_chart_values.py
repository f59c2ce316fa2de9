"""values.yaml and values.schema.json: invalid values are refused with a message naming the
problem, the schema carries the Rust crate's naming rules, and every value is documented."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import render
import yaml
from helpers import CHART, REPO, values

RIG_PATTERN = (
    "^(?:[A-Za-z]|[A-GI-Za-gi-z][A-Za-z0-9_]|[Hh][A-PR-Za-pr-z0-9_]|[A-Za-z][A-Za-z0-9_]{2,63})$"
)
DNS_LABEL_PATTERN = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


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
            {"policy": {"settings": {"towns": [{"name": "town-a", "controllerUser": ["x"]}]}}},
            ["/policy/settings/towns/0", "additional properties 'controllerUser' not allowed"],
            id="town-unknown-key",
        ),
        pytest.param(
            {"policy": {"settings": {"towns": [{"name": "Town_A"}]}}},
            ["/policy/settings/towns/0/name", "does not match pattern"],
            id="town-name-not-dns-label",
        ),
        pytest.param(
            {"policy": {"settings": {"towns": [{"rigs": ["web"]}]}}},
            ["/policy/settings/towns/0", "missing property 'name'"],
            id="town-without-name",
        ),
        pytest.param(
            {"policy": {"settings": {"towns": [{"name": "a", "rigs": ["my-rig"]}]}}},
            ["/policy/settings/towns/0/rigs/0", "does not match pattern"],
            id="town-bad-rig",
        ),
        pytest.param(
            {"policy": {"settings": {"towns": [{"name": "a", "maxActiveClaims": 0}]}}},
            ["/policy/settings/towns/0/maxActiveClaims", "minimum"],
            id="town-zero-limit",
        ),
        pytest.param(
            {"policy": {"settings": {"defaultTown": "Town A"}}},
            ["/policy/settings/defaultTown", "does not match pattern"],
            id="bad-default-town",
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
    town = settings["properties"]["towns"]["items"]
    assert town["properties"]["rigs"]["items"]["pattern"] == RIG_PATTERN
    assert town["properties"]["name"]["pattern"] == DNS_LABEL_PATTERN
    assert town["additionalProperties"] is False
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
