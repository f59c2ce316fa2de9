"""The chart as a package, linted and rendered by real Helm (helm-python-sdk): lint, Chart.yaml
metadata, the kubeVersion floor, and the CRD it ships.

Run: pip install -r tests/chart/requirements.txt && pytest -q tests/chart
"""

from __future__ import annotations

import helm_python as helm
import pytest
import render
import value_sets as vs
import yaml
from helpers import CHART, NAMESPACE, REPO, REQUIRED, by_kind, identity, objects, values

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
    everything = values(vs.EVERYTHING_ON)
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


def test_helm_template_and_render_agree() -> None:
    """Helm's install action (helm template) and the engine render give the same objects."""
    for overrides in (
        {},
        {"replicas": 2, "policy": {"enabled": True}, "networkPolicy": {"enabled": True}},
        vs.TWO_NAMESPACES,
    ):
        via_install = render.template_objects(values(overrides))
        via_render = render.render_objects(values(overrides))
        assert sorted(via_install, key=identity) == sorted(via_render, key=identity)
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
