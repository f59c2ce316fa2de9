"""What every chart test uses: the chart's names, the least values an install needs, and small
readers of rendered objects (render.py renders them with real Helm)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest
import render

CHART = render.CHART_DIR
REPO = render.REPO_ROOT
RELEASE = render.DEFAULT_RELEASE
NAMESPACE = render.DEFAULT_NAMESPACE

PROXY_URL = "https://gastown.example.com:9876"
PROXY_SECRET = "gt-proxy-client"
# The least a proxy install needs: everything else is the chart's default.
REQUIRED = {"gastown": {"proxy": {"url": PROXY_URL, "existingSecret": PROXY_SECRET}}}


def values(*overrides: dict[str, Any]) -> dict[str, Any]:
    """REQUIRED with ``overrides`` merged in, like repeated `helm -f`."""
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


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def rejected(user_values: dict[str, Any], **kwargs: Any) -> str:
    """Renders values that must fail; returns Helm's message."""
    with pytest.raises(helm.HelmError) as info:
        render.render_templates(user_values, **kwargs)
    return str(info.value)
