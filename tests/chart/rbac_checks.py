"""Questions about what an identity may do, asked of a real API server: `kubectl auth can-i`
checks (one SubjectAccessReview each) and real requests with the identity's own token."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kube
from live_cluster import Cluster

# How long RBAC changes may take to reach the API server's authorizer cache.
RBAC_PROPAGATION_SECS = 20


@dataclass(frozen=True)
class Check:
    """One `kubectl auth can-i` question; ``namespace=None`` means all namespaces (-A)."""

    verb: str
    resource: str
    namespace: str | None = None
    subresource: str | None = None

    def __str__(self) -> str:
        sub = f" --subresource={self.subresource}" if self.subresource else ""
        where = "-A" if self.namespace is None else f"-n {self.namespace}"
        return f"can-i {self.verb} {self.resource}{sub} {where}"


# Resources as `resource.version.group`: kubectl resolves that form from its discovery cache,
# while `resource.group` makes every kubectl process rediscover the whole API first.
AUTOMATONS = "automatons.v1alpha1.olympus.io"
LEASES = "leases.v1.coordination.k8s.io"
EVENTS = "events.v1.events.k8s.io"


def ask(cluster: Cluster, checks: list[Check], user: str) -> dict[Check, bool]:
    """The answers of `kubectl auth can-i --as <user>` (admin kubeconfig) to every check, asked
    in one kubectl process (see kube.Kubectl.access_reviews)."""
    questions = [(c.verb, c.resource, c.namespace, c.subresource) for c in checks]
    answers = cluster.admin.access_reviews(questions, as_user=user)
    return dict(zip(checks, answers, strict=True))


# Pseudo-resources that RBAC knows but discovery does not list.
NOT_DISCOVERABLE = {"users", "groups"}


def assert_resources_exist(cluster: Cluster, checks: list[Check]) -> None:
    """A misspelt resource would be a meaningless "no": every one must be served."""
    unknown = set()
    for check in checks:
        attrs = kube.resource_attributes(check.verb, check.resource, None, None)
        name = ".".join(filter(None, (attrs["resource"], attrs.get("group"))))
        if name not in cluster.api_resources and name not in NOT_DISCOVERABLE:
            unknown.add(name)
    assert not unknown, f"not served by the API server: {sorted(unknown)}"


def assert_matrix(cluster: Cluster, user: str, allowed: list[Check], denied: list[Check]) -> None:
    assert len(set(allowed)) == len(allowed), "a check is listed twice"
    assert len(set(denied)) == len(denied), "a check is listed twice"
    assert not set(allowed) & set(denied)
    assert_resources_exist(cluster, allowed + denied)
    # New bindings reach the authorizer's cache within moments: wait until every grant shows,
    # so that no denial below passes only because the RBAC objects are not seen yet.
    pending = list(allowed)

    def all_granted() -> bool:
        nonlocal pending
        answers = ask(cluster, pending, user)
        pending = [c for c in pending if not answers[c]]
        return not pending

    kube.wait_for(all_granted, timeout_secs=RBAC_PROPAGATION_SECS)
    answers = ask(cluster, denied, user)
    wrongly_allowed = [str(c) for c in denied if answers[c]]
    assert (pending, wrongly_allowed) == ([], []), (
        f"as {user}: not allowed although the controller needs it: "
        f"{[str(c) for c in pending]}; allowed although it must not be: {wrongly_allowed}"
    )
    # `kubectl auth can-i --as` itself, one process per question, agrees (on a sample).
    sample = [allowed[0], allowed[-1], denied[0], denied[-1]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        can_i = list(
            pool.map(
                lambda c: cluster.admin.can_i(
                    c.verb,
                    c.resource,
                    namespace=c.namespace,
                    subresource=c.subresource,
                    as_user=user,
                ),
                sample,
            )
        )
    expected = [c in set(allowed) for c in sample]
    assert can_i == expected, [(str(c), a) for c, a in zip(sample, can_i, strict=True)]


def forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "(Forbidden)" in result.stderr


def assert_lists(kubectl: kube.Kubectl, resource: str, *where: str) -> None:
    listed = kubectl.run("get", resource, *where, "-o", "name", check=False)
    assert listed.returncode == 0, listed.stderr


def assert_forbidden(kubectl: kube.Kubectl, *args: str) -> None:
    result = kubectl.run(*args, check=False)
    assert forbidden(result), (args, result.returncode, result.stdout, result.stderr)
