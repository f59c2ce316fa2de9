"""A thin kubectl wrapper for the chart tests that talk to a real API server.

Every call is a real `kubectl` process (the binary the project's docs and CI use), against one
kubeconfig, with its own discovery cache directory so that CRDs registered by the tests are
seen at once and runs never share stale discovery data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import render
import yaml

KUBECTL_TIMEOUT_SECS = 60


class KubectlError(RuntimeError):
    """kubectl failed; the message carries the command line, exit code and stderr."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.args_ = list(args)
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        super().__init__(
            f"kubectl {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def find_kubectl() -> str | None:
    """The kubectl binary: on PATH, else /usr/bin/kubectl."""
    found = shutil.which("kubectl")
    if found:
        return found
    return "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None


class Kubectl:
    """kubectl bound to one kubeconfig (and so to one user)."""

    def __init__(self, binary: str, kubeconfig: Path, cache_dir: Path) -> None:
        self.binary = binary
        self.kubeconfig = Path(kubeconfig)
        self.cache_dir = Path(cache_dir)

    def as_kubeconfig(self, kubeconfig: Path) -> Kubectl:
        """The same kubectl for another user's kubeconfig (same cluster, same cache)."""
        return Kubectl(self.binary, kubeconfig, self.cache_dir)

    def with_token(self, token: str, kubeconfig: Path) -> Kubectl:
        """The same cluster as another user: a copy of this kubeconfig (written to
        ``kubeconfig``) whose users authenticate with the bearer ``token``."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        for user in config.get("users", []):
            user["user"] = {"token": token}
        kubeconfig.write_text(yaml.safe_dump(config))
        kubeconfig.chmod(0o600)
        return self.as_kubeconfig(kubeconfig)

    def create_token(self, service_account: str, namespace: str) -> str:
        """A token for the ServiceAccount from the TokenRequest API (`kubectl create token`)."""
        return self.run(
            "create", "token", service_account, "-n", namespace, "--duration=10m"
        ).stdout.strip()

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = KUBECTL_TIMEOUT_SECS,
    ) -> subprocess.CompletedProcess[str]:
        command = [
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *args,
        ]
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.run(*args, "-o", "json", stdin=stdin).stdout)

    # -----------------------------------------------------------------------------------------
    # Objects

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        *,
        dry_run_server: bool = False,
        server_side: bool = False,
    ) -> list[dict[str, Any]]:
        """`kubectl apply -f -` with strict validation; returns the objects the server returned
        (for a server dry run: the objects as the server would have stored them)."""
        args = ["apply", "--validate=strict", "-f", "-"]
        if dry_run_server:
            args.append("--dry-run=server")
        if server_side:
            args += ["--server-side", "--field-manager=gastown-chart-tests", "--force-conflicts"]
        returned = self.json(*args, stdin=render.to_yaml(objects))
        if returned.get("kind", "").endswith("List"):
            items: list[dict[str, Any]] = returned.get("items", [])
            return items
        return [returned]

    def create_if_absent(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Creates the objects, leaving those that already exist (whoever made them) alone."""
        objs = list(objects)
        if not objs:
            return
        args = ["create", "--validate=false", "-f", "-"]
        result = self.run(*args, stdin=render.to_yaml(objs), check=False)
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and "AlreadyExists" not in line and "already exists" not in line
        ]
        if result.returncode != 0 and errors:
            raise KubectlError(args, result)

    def get(
        self, resource: str, name: str, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        args = ["get", resource, name, "--ignore-not-found", "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        out = self.run(*args).stdout.strip()
        return json.loads(out) if out else None

    def delete(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Deletes the objects (those already gone are fine), without waiting for finalizers."""
        objs = list(objects)
        if objs:
            self.run(
                "delete",
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
                stdin=render.to_yaml(objs),
            )

    def ensure_namespaces(self, names: Iterable[str]) -> None:
        """Creates the namespaces that do not exist; fails when one exists but is terminating
        (namespaces never finish deleting on the test server: it runs no controller-manager)."""
        names = list(names)
        self.create_if_absent(render.namespace_object(name) for name in names)
        found = self.json("get", "namespaces", *names)
        items = found.get("items", [found])
        phases = {ns["metadata"]["name"]: ns.get("status", {}).get("phase") for ns in items}
        unusable = {name: phases.get(name) for name in names if phases.get(name) != "Active"}
        if unusable:
            raise AssertionError(
                f"namespaces not Active: {unusable}; objects cannot be created in them. Use a "
                "fresh cluster (tests/cluster/cluster.sh up DIR)."
            )

    def wait_established(self, crd_names: Iterable[str], timeout_secs: int = 30) -> None:
        names = [f"crd/{n}" for n in crd_names]
        self.run(
            "wait",
            "--for=condition=Established",
            f"--timeout={timeout_secs}s",
            *names,
            timeout=timeout_secs + 30,
        )

    # -----------------------------------------------------------------------------------------
    # Authorization

    def can_i(
        self,
        verb: str,
        resource: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        as_user: str | None = None,
    ) -> bool:
        """`kubectl auth can-i`; ``namespace=None`` asks about all namespaces (``-A``).

        ``resource`` is ``resource.version.group`` (``automatons.v1alpha1.olympus.io``, with
        ``/NAME`` for one object) or a bare core resource (``secrets``). Raises when kubectl does
        not know the resource: then the answer would be a meaningless "no".
        """
        args = ["auth", "can-i", verb, resource]
        args += ["-A"] if namespace is None else ["-n", namespace]
        if subresource:
            args.append(f"--subresource={subresource}")
        if as_user:
            args.append(f"--as={as_user}")
        result = self.run(*args, check=False)
        answer = result.stdout.strip()
        if "doesn't have a resource type" in result.stderr or answer not in ("yes", "no"):
            raise KubectlError(args, result)
        return answer == "yes"

    def access_reviews(
        self,
        questions: Sequence[tuple[str, str, str | None, str | None]],
        *,
        as_user: str,
    ) -> list[bool]:
        """Many `kubectl auth can-i --as USER` questions in one kubectl process.

        Each question is ``(verb, resource, namespace, subresource)`` as for :meth:`can_i`. They
        become the SelfSubjectAccessReviews `kubectl auth can-i` sends, created with
        ``kubectl create --as USER`` (the same impersonated request), one kubectl process
        instead of one per question.
        """
        reviews = [
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": resource_attributes(*question)},
            }
            for question in questions
        ]
        if not reviews:
            return []
        out = self.run(
            "create",
            "--validate=false",
            f"--as={as_user}",
            "-f",
            "-",
            "-o",
            "json",
            stdin=render.to_yaml(reviews),
        ).stdout
        items = [i for doc in json_documents(out) for i in doc.get("items", [doc])]
        assert len(items) == len(reviews)
        answers = []
        for sent, got in zip(reviews, items, strict=True):
            attrs = got["spec"]["resourceAttributes"]
            assert attrs == {**attrs, **sent["spec"]["resourceAttributes"]}, (sent, got)
            status = got.get("status", {})
            if status.get("evaluationError"):
                raise AssertionError(f"{attrs}: {status['evaluationError']}")
            answers.append(bool(status.get("allowed")))
        return answers

    def api_resources(self) -> set[str]:
        """`kubectl api-resources -o name`: ``resource.group``, or ``resource`` for core ones."""
        return set(self.run("api-resources", "-o", "name").stdout.split())


def json_documents(text: str) -> list[Any]:
    """The JSON documents of kubectl's output (`create -o json` prints one after another)."""
    decoder = json.JSONDecoder()
    docs, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)


def resource_attributes(
    verb: str, resource: str, namespace: str | None, subresource: str | None
) -> dict[str, str]:
    """The SelfSubjectAccessReview attributes `kubectl auth can-i VERB RESOURCE` sends (it does
    not send the version)."""
    name = ""
    if "/" in resource:
        resource, name = resource.split("/", 1)
    parts = resource.split(".", 2)
    if len(parts) == 2:
        raise ValueError(f"{resource}: write resource.version.group, or a bare core resource")
    attrs = {"verb": verb, "resource": parts[0]}
    if len(parts) == 3:
        attrs["group"] = parts[2]
    if namespace:
        attrs["namespace"] = namespace
    if subresource:
        attrs["subresource"] = subresource
    if name:
        attrs["name"] = name
    return attrs


def wait_for(predicate: Any, *, timeout_secs: float, interval_secs: float = 0.2) -> bool:
    """Polls ``predicate()`` until it is true or the time is up; returns its last value."""
    deadline = time.monotonic() + timeout_secs
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_secs)
