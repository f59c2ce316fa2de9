"""Several Gas Towns in one cluster (policy.settings.towns): the release that owns the policy
lists every town, the others run their town's controller only (chart README "Several Gas
Towns"). Without towns the chart renders what it always did."""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import helm_python as helm
import pytest
import render
import value_sets as vs
import yaml
from helpers import CHART, REPO, args, identity, objects, one, rejected, values

ALICE = {"release_name": "gastown-alice", "namespace": "gastown-alice"}
BOB = {"release_name": "gastown-bob", "namespace": "gastown-bob"}
POLICY_TEMPLATE = f"{CHART.name}/templates/clusteradmissionpolicy.yaml"
# The settings the single-town shorthand is made of; with towns they live in each town.
SINGLE_TOWN_FIELDS = {
    "claimer",
    "allowedUsers",
    "allowedGroups",
    "controllerUsers",
    "maxActiveClaimsPerNamespace",
}


def towns_with(**changes: Any) -> dict[str, Any]:
    """vs.TOWNS with policy.settings entries replaced (a deep copy; vs.TOWNS stays as it is)."""
    changed = copy.deepcopy(vs.TOWNS)
    changed["policy"]["settings"].update(changes)
    return changed


def test_towns_render_every_town_and_the_default() -> None:
    objs = objects(vs.TOWNS, **ALICE)
    spec = one(objs, "ClusterAdmissionPolicy")["spec"]
    assert spec["settings"] == {
        "towns": [
            {
                "name": "town-alice",
                "rigs": ["payments", "web"],
                "allowedUsers": ["alice"],
                "allowedGroups": [],
                "controllerUsers": [vs.ALICE_USER],
                "maxActiveClaims": 10,
            },
            {
                "name": "town-bob",
                "rigs": [],
                "allowedUsers": [],
                "allowedGroups": ["developers"],
                "controllerUsers": [vs.BOB_USER],
            },
        ],
        "defaultTown": "town-alice",
        "forgeRigs": {"payments": "payments"},
        "defaultRig": "web",
    }
    assert not SINGLE_TOWN_FIELDS & set(spec["settings"])
    # A town's claim limit makes the policy read Automatons, as the single-town limit does.
    assert spec["contextAwareResources"] == [
        {"apiVersion": "olympus.io/v1alpha1", "kind": "Automaton"}
    ]
    notes = render.render_notes(values(vs.TOWNS), **ALICE)
    assert "town-alice (this release): rigs payments, web; at most 10" in notes
    assert "town-bob: rigs -" in notes
    assert "Default town: town-alice." in notes


def test_towns_without_limits_or_default_leave_them_out() -> None:
    unlimited = towns_with(
        towns=[{**t, "maxActiveClaims": None} for t in vs.TOWNS["policy"]["settings"]["towns"]],
        defaultTown="",
    )
    spec = one(objects(unlimited, **ALICE), "ClusterAdmissionPolicy")["spec"]
    assert "contextAwareResources" not in spec
    assert "defaultTown" not in spec["settings"]
    assert all("maxActiveClaims" not in town for town in spec["settings"]["towns"])
    assert not SINGLE_TOWN_FIELDS & set(spec["settings"])


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"policy": {"enabled": True}}, id="policy-minimal"),
        pytest.param(vs.POLICY_WITH_SETTINGS, id="policy-with-settings"),
        pytest.param(vs.EVERYTHING_ON, id="everything-on"),
    ],
)
def test_empty_towns_render_exactly_the_single_town_chart(overrides: dict[str, Any]) -> None:
    """`towns: []` and `defaultTown: ""` (the defaults, here given explicitly) change no byte;
    test_chart_policy.py pins the single-town policy against policy/manifests/."""
    explicit = {"policy": {"settings": {"towns": [], "defaultTown": ""}}}
    assert render.render_templates(values(overrides, explicit)) == render.render_templates(
        values(overrides)
    )


@pytest.mark.parametrize(
    ("field", "value", "per_town"),
    [
        ("allowedUsers", ["alice"], "towns[].allowedUsers"),
        ("allowedGroups", ["developers"], "towns[].allowedGroups"),
        ("extraControllerUsers", ["system:serviceaccount:ops:admin"], "towns[].controllerUsers"),
        ("maxActiveClaimsPerNamespace", 5, "towns[].maxActiveClaims"),
    ],
)
def test_single_town_settings_next_to_towns_are_refused(
    field: str, value: Any, per_town: str
) -> None:
    message = rejected(values(towns_with(**{field: value})), **ALICE)
    assert f"policy.settings.{field} cannot be combined with policy.settings.towns" in message
    assert per_town in message


@pytest.mark.parametrize(
    "bob",
    [
        pytest.param({"name": "town-bob"}, id="missing"),
        pytest.param({"name": "town-bob", "controllerUsers": []}, id="empty"),
    ],
)
def test_a_town_without_controller_users_is_refused(bob: dict[str, Any]) -> None:
    alice = vs.TOWNS["policy"]["settings"]["towns"][0]
    message = rejected(values(towns_with(towns=[alice, bob])), **ALICE)
    assert "policy.settings.towns[1] (town-bob) has no controllerUsers" in message
    assert "system:serviceaccount:<that town's release namespace>:<its ServiceAccount>" in message


def test_the_owning_release_must_be_one_of_the_towns() -> None:
    """The release that renders the policy runs a controller too: its town must be listed, with
    its own ServiceAccount, or the policy would refuse everything that controller writes."""
    message = rejected(values(vs.TOWNS, {"gastown": {"claimer": "town-carol"}}), **ALICE)
    assert 'no town named "town-carol" (gastown.claimer)' in message
    message = rejected(values(vs.TOWNS), **BOB)
    assert 'town "town-alice" does not list this release\'s controller' in message
    assert '"system:serviceaccount:gastown-bob:gastown-alice"' in message


def test_default_town_needs_towns() -> None:
    message = rejected(values({"policy": {"enabled": True, "settings": {"defaultTown": "a"}}}))
    assert "policy.settings.defaultTown needs policy.settings.towns" in message


def test_towns_are_only_checked_where_the_policy_is_rendered() -> None:
    """A release without the policy ignores policy.settings (its town is listed elsewhere)."""
    quiet = values(towns_with(towns=[{"name": "town-bob"}]), {"policy": {"enabled": False}})
    assert not [o for o in render.render_objects(quiet, **BOB) if o["kind"].endswith("Policy")]


def cluster_wide(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of the objects without a namespace."""
    return {(o["kind"], o["metadata"]["name"]) for o in objs if "namespace" not in o["metadata"]}


def test_two_releases_render_no_conflicting_objects() -> None:
    """One release per town: alice's owns the policy, bob's does not. Every object either lives
    in the release's own namespace or has a cluster-wide name of its release."""
    alice = objects(vs.TOWNS, **ALICE)
    bob = objects(vs.TOWN_BOB, **BOB)
    assert not {identity(o) for o in alice} & {identity(o) for o in bob}
    assert cluster_wide(alice) == {
        ("ClusterRole", "gastown-alice-gastown-operator"),
        ("ClusterRoleBinding", "gastown-alice-gastown-operator"),
        ("ClusterAdmissionPolicy", "gastown-alice-gastown-operator-claim"),
    }
    assert cluster_wide(bob) == {
        ("ClusterRole", "gastown-bob-gastown-operator"),
        ("ClusterRoleBinding", "gastown-bob-gastown-operator"),
    }
    assert {o["metadata"].get("namespace") for o in alice} - {None} == {"gastown-alice"}
    assert {o["metadata"].get("namespace") for o in bob} - {None} == {"gastown-bob"}
    # Each town's controllerUsers is the user its release's controller runs as.
    users = {
        t["name"]: t["controllerUsers"]
        for t in one(alice, "ClusterAdmissionPolicy")["spec"]["settings"]["towns"]
    }
    for objs, town, opts in ((alice, "town-alice", ALICE), (bob, "town-bob", BOB)):
        account = one(objs, "ServiceAccount")["metadata"]
        assert users[town] == [f"system:serviceaccount:{account['namespace']}:{account['name']}"]
        assert f"--claimer={town}" in args(objs)
        assert f"Identity:    {users[town][0]}" in render.render_notes(
            values(vs.TOWNS if town == "town-alice" else vs.TOWN_BOB), **opts
        )


def test_same_release_name_in_two_namespaces_collides_cluster_wide() -> None:
    """Why the README asks for a release name per town: Helm release names are per namespace,
    the ClusterRole and ClusterRoleBinding names are not."""
    first = objects(vs.TOWN_BOB, release_name="gastown", namespace="gastown-alice")
    second = objects(vs.TOWN_BOB, release_name="gastown", namespace="gastown-bob")
    assert cluster_wide(first) & cluster_wide(second) == {
        ("ClusterRole", "gastown-gastown-operator"),
        ("ClusterRoleBinding", "gastown-gastown-operator"),
    }


def test_chart_readme_example_installs_two_towns() -> None:
    """The README's alice.yaml and bob's `helm install` flags render, and each town's
    controllerUsers in alice.yaml is the identity its release's controller really has."""
    readme = (CHART / "README.md").read_text()
    section = readme[readme.index("## Several Gas Towns") :]
    assert "policy.enabled=false" in section
    assert "**RBAC cannot filter by label**" in section
    block = section[section.index("```yaml\n") + len("```yaml\n") :]
    alice_values = yaml.safe_load(block[: block.index("```")])
    command = section[section.index("helm install gastown-bob") :].split("```")[0]
    bob_values: dict[str, Any] = {}
    for expression in re.findall(r"--set (\S+)", command):
        bob_values = render.deep_merge(bob_values, helm.parse_set_string(expression))
    alice = render.render_objects(alice_values, **ALICE)
    bob = render.render_objects(bob_values, **BOB)
    assert not [o for o in bob if o["kind"] == "ClusterAdmissionPolicy"]
    towns = one(alice, "ClusterAdmissionPolicy")["spec"]["settings"]["towns"]
    for objs, town in ((alice, towns[0]), (bob, towns[1])):
        account = one(objs, "ServiceAccount")["metadata"]
        assert town["controllerUsers"] == [
            f"system:serviceaccount:{account['namespace']}:{account['name']}"
        ]
        assert f"--claimer={town['name']}" in args(objs)


def make_run_values(n: int, i: int) -> dict[str, Any]:
    """The values `make run TOWNS=n` gives town i's release (scripts/lib/run-towns.sh)."""
    script = f"source scripts/lib/run-towns.sh && town_values {n} {i}"
    text = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def test_make_run_towns_releases_render_and_agree() -> None:
    """`make run TOWNS=3`: town-1's release owns the policy, lists all three towns with their
    own rigs and the identities their releases' controllers run as; the others render none."""
    n = 3
    rendered = {
        i: render.render_objects(
            make_run_values(n, i), release_name=f"town-{i}", namespace=f"gastown-town-{i}"
        )
        for i in range(1, n + 1)
    }
    settings = one(rendered[1], "ClusterAdmissionPolicy")["spec"]["settings"]
    assert [t["name"] for t in settings["towns"]] == ["town-1", "town-2", "town-3"]
    assert [t["rigs"] for t in settings["towns"]] == [["gastown"], ["demo"], ["rig3"]]
    assert settings["defaultTown"] == "town-1"
    assert settings["defaultRig"] == "gastown"
    for i, town in enumerate(settings["towns"], start=1):
        policies = [o for o in rendered[i] if o["kind"] == "ClusterAdmissionPolicy"]
        assert len(policies) == (1 if i == 1 else 0)
        account = one(rendered[i], "ServiceAccount")["metadata"]
        assert town["controllerUsers"] == [
            f"system:serviceaccount:{account['namespace']}:{account['name']}"
        ]
        assert f"--claimer=town-{i}" in args(rendered[i])
