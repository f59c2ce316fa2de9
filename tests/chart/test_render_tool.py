"""NOTES.txt, and render.py as the command-line tool the Rust end-to-end tests call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import render
import yaml
from helpers import NAMESPACE, PROXY_URL, RELEASE, REQUIRED, args, one, values

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
