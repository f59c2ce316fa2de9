#!/usr/bin/env python3
"""Render the gastown-operator Helm chart with real Helm (helm-python-sdk, Helm v4's Go engine).

Importable (the pytest suite and other tools use it) and a command-line tool for the Rust
end-to-end tests, which render the chart and dry-run-apply it to a real API server:

    python3 tests/chart/render.py --values my-values.yaml --out target/chart
    echo 'gastown: {proxy: {url: https://gt:9876, existingSecret: gt-proxy}}' \
        | python3 tests/chart/render.py --values - --out target/chart --kube-version v1.20.2

writes ``<out>/manifests.yaml``: every object of the release in Helm's install order, CRDs
first (``--no-crds`` leaves them out; ``--create-namespace`` puts the release Namespace before
them), as one multi-document YAML file, and prints its path.
Errors (schema violations, ``required`` values, template failures) go to stderr with exit
code 1; the message is Helm's own and names the offending value.

Python API: render_templates() (Helm's engine, {template path: text}), render_objects() (parsed,
install-ordered), helm_template() / template_objects() (Helm's client-only install action, which
also enforces Chart.yaml's kubeVersion), crd_objects(), write_manifests(), deep_merge().
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "gastown-operator"
DEFAULT_RELEASE = "gastown-operator"
DEFAULT_NAMESPACE = "gastown-system"

# Helm's own install order (helm.sh/helm/v4 pkg/release/v1/util InstallOrder); kinds not in the
# list go last, as Helm does.
INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]

_CHARTS: dict[Path, helm.Chart] = {}


def load_chart(chart_dir: Path = CHART_DIR) -> helm.Chart:
    """The chart loaded by Helm (cached per directory for the life of the process)."""
    key = Path(chart_dir).resolve()
    if key not in _CHARTS:
        _CHARTS[key] = helm.Chart.load(key)
    return _CHARTS[key]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two user value sets like repeated `helm -f`: maps merge, everything else replaces.

    A ``null`` is kept, so that Helm removes the chart default it overrides.
    """
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values_file(source: str) -> dict[str, Any]:
    """Reads a values file (``-`` is standard input) with Helm's own YAML parser."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    if not text.strip():
        return {}
    return helm.values_from_yaml(text)


def _capabilities(kube_version: str | None, api_versions: Iterable[str] | None) -> dict[str, Any]:
    """The ``.Capabilities`` options of Helm's C ABI that were asked for."""
    capabilities: dict[str, Any] = {}
    if kube_version is not None:
        capabilities["kube_version"] = kube_version
    if api_versions:
        capabilities["api_versions"] = list(api_versions)
    return capabilities


def _takes_keywords(function: Any, keywords: Mapping[str, Any]) -> bool:
    """Whether the helm-python-sdk ``function`` has public keywords for all of ``keywords``."""
    return set(keywords) <= set(inspect.signature(function).parameters)


def render_templates(
    values: Mapping[str, Any] | None = None,
    *,
    release_name: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
    api_versions: Iterable[str] | None = None,
    chart_dir: Path = CHART_DIR,
) -> dict[str, str]:
    """Renders the chart's templates offline; returns {template path: rendered text}.

    Helm validates ``values`` against values.schema.json first. ``kube_version`` (e.g.
    ``v1.20.2``) and ``api_versions`` (e.g. ``monitoring.coreos.com/v1``) set
    ``.Capabilities`` the way ``helm template --kube-version/--api-versions`` do.

    Raises helm_python.HelmValuesError (schema) or helm_python.HelmRenderError (templates,
    ``required``/``fail``), whose message is Helm's own.
    """
    chart = load_chart(chart_dir)
    user_values = None if values is None else dict(values)
    capabilities = _capabilities(kube_version, api_versions)
    if not capabilities:
        return chart.render(user_values, name=release_name, namespace=namespace, is_install=True)
    # helm-python-sdk 0.2.2's Chart.render has no keywords for the capabilities, although the
    # C ABI's helm_render options accept `kube_version` and `api_versions` (unknown keys are
    # rejected, so this fails loudly if they ever go away). Use the public keywords when a
    # newer binding has them.
    if _takes_keywords(chart.render, capabilities):
        return chart.render(
            user_values, name=release_name, namespace=namespace, is_install=True, **capabilities
        )
    from helm_python import _native  # noqa: PLC0415 - only needed for this fallback

    opts = {"name": release_name, "namespace": namespace, "is_install": True, **capabilities}
    rendered = _native.call_string(
        "helm_render",
        chart._raw(),
        None if user_values is None else json.dumps(user_values),
        json.dumps(opts),
    )
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def helm_template(
    values: Mapping[str, Any] | None = None,
    *,
    release_name: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
    api_versions: Iterable[str] | None = None,
    chart_dir: Path = CHART_DIR,
) -> dict[str, Any]:
    """`helm template`: a client-only dry-run install, with no cluster and in-memory storage.

    Unlike :func:`render_templates` this is Helm's whole install action: it also checks the
    chart's ``kubeVersion`` against ``kube_version`` and returns the manifest in Helm's install
    order (``release["manifest"]``, with ``# Source:`` comments) and the rendered notes.
    """
    user_values = None if values is None else dict(values)
    capabilities = _capabilities(kube_version, api_versions)
    with helm.Config(namespace=namespace, storage_driver="memory") as config:
        if _takes_keywords(config.install, capabilities):
            return config.install(
                str(chart_dir),
                release_name,
                user_values,
                namespace=namespace,
                dry_run="client",
                **capabilities,
            )
        # As in render_templates: the C ABI's install options take `kube_version` and
        # `api_versions`, helm-python-sdk 0.2.2's Config.install does not expose them.
        from helm_python import _native  # noqa: PLC0415

        opts = {"namespace": namespace, "dry_run": "client", **capabilities}
        payload = _native.call_string(
            "helm_install",
            config._raw(),
            _native.HANDLE(0),
            _native.HANDLE(0),
            str(chart_dir),
            release_name,
            None if user_values is None else json.dumps(user_values),
            json.dumps(opts),
        )
        release: dict[str, Any] = json.loads(payload)
        return release


def template_objects(
    values: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """The objects of :func:`helm_template`, in Helm's own install order."""
    manifest = helm_template(values, **kwargs)["manifest"]
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def _install_rank(obj: Mapping[str, Any]) -> int:
    kind = obj.get("kind", "")
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def crd_objects(chart_dir: Path = CHART_DIR) -> list[dict[str, Any]]:
    """The CRDs the chart ships in crds/ (Helm installs them before the templates)."""
    objects: list[dict[str, Any]] = []
    for crd in load_chart(chart_dir).crds:
        objects.extend(doc for doc in yaml.safe_load_all(crd["data"]) if doc)
    return objects


def render_objects(
    values: Mapping[str, Any] | None = None,
    *,
    include_crds: bool = False,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Renders the chart and returns its objects in Helm's install order (NOTES.txt dropped)."""
    chart_dir = kwargs.get("chart_dir", CHART_DIR)
    manifests = render_templates(values, **kwargs)
    objects: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifests[path]):
            if doc:
                objects.append((path, doc))
    objects.sort(key=lambda item: (_install_rank(item[1]), item[1]["metadata"].get("name", "")))
    ordered = [obj for _, obj in objects]
    if include_crds:
        ordered = crd_objects(chart_dir) + ordered
    return ordered


def render_notes(values: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    """The rendered NOTES.txt."""
    manifests = render_templates(values, **kwargs)
    return next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """One multi-document YAML stream, each document starting with `---`."""
    return "".join(
        "---\n" + yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False)
        for obj in objects
    )


def namespace_object(name: str) -> dict[str, Any]:
    """A Namespace, as `helm install --create-namespace` would create it."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def write_manifests(
    out_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    include_crds: bool = True,
    create_namespace: bool = False,
    **kwargs: Any,
) -> Path:
    """Renders the chart like `helm template --include-crds` into ``<out_dir>/manifests.yaml``.

    Uses Helm's install action (:func:`helm_template`), so the chart's kubeVersion is checked
    and the objects come in Helm's install order. Returns the path written.
    """
    objects = template_objects(values, **kwargs)
    if include_crds:
        objects = crd_objects(kwargs.get("chart_dir", CHART_DIR)) + objects
    if create_namespace:
        objects.insert(0, namespace_object(kwargs.get("namespace", DEFAULT_NAMESPACE)))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "manifests.yaml"
    target.write_text(to_yaml(objects), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--values",
        "-f",
        action="append",
        default=[],
        metavar="FILE",
        help="values file, '-' for standard input; repeatable, later files win",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="EXPR",
        help="a `helm --set` expression (parsed by Helm); repeatable, applied after --values",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for manifests.yaml")
    parser.add_argument("--release-name", default=DEFAULT_RELEASE)
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--kube-version", help="e.g. v1.20.2: what .Capabilities.KubeVersion says")
    parser.add_argument(
        "--api-versions",
        action="append",
        default=[],
        metavar="GV",
        help="extra API versions for .Capabilities.APIVersions (repeatable)",
    )
    parser.add_argument("--no-crds", action="store_true", help="leave the chart's CRDs out")
    parser.add_argument(
        "--create-namespace",
        action="store_true",
        help="put a Namespace object for --namespace first (like helm --create-namespace)",
    )
    parser.add_argument("--chart", type=Path, default=CHART_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    values: dict[str, Any] = {}
    try:
        for source in args.values:
            values = deep_merge(values, load_values_file(source))
        for expression in args.set:
            values = deep_merge(values, helm.parse_set_string(expression))
        target = write_manifests(
            args.out,
            values,
            include_crds=not args.no_crds,
            create_namespace=args.create_namespace,
            release_name=args.release_name,
            namespace=args.namespace,
            kube_version=args.kube_version,
            api_versions=args.api_versions,
            chart_dir=args.chart,
        )
    except (helm.HelmError, OSError) as exc:
        print(f"render.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
