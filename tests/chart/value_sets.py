"""Value sets that the render tests check object by object and that the server-side dry runs
(test_cluster_dry_run.py) send to a real API server: one definition, so the two cannot drift."""

from __future__ import annotations

from typing import Any

TWO_NAMESPACES: dict[str, Any] = {"watchNamespaces": ["team-a", "team-b"]}

LEADER_ELECTION_NAMESPACED: dict[str, Any] = {
    "leaderElection": {"enabled": True, "leaseName": "gt-lease"},
    "watchNamespaces": ["team-a", "team-b"],
}

SERVICE_MONITOR_LABELLED: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}
}

NETWORK_POLICY_ADDRESSES: dict[str, Any] = {
    "gastown": {"proxy": {"url": "https://gt.example.com/api"}},
    "networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": ["10.96.0.1/32"], "ports": [443]},
        "proxy": {"cidrs": ["192.0.2.10/32"]},
        "dns": {"enabled": False},
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
}

POLICY_WITH_SETTINGS: dict[str, Any] = {
    "gastown": {"claimer": "team-town"},
    "policy": {
        "enabled": True,
        "policyServer": "gastown",
        "mode": "monitor",
        "failurePolicy": "Ignore",
        "timeoutSeconds": 5,
        "settings": {
            "allowedUsers": ["alice"],
            "allowedGroups": ["system:authenticated"],
            "extraControllerUsers": ["system:serviceaccount:ops:gt-admin"],
            "forgeRigs": {"payments": "payments_rig", "web": "frontend"},
            "defaultRig": "general",
            "maxActiveClaimsPerNamespace": 5,
        },
    },
}

# The PolicyServer's RBAC alone, bound to a PolicyServer ServiceAccount other than Kubewarden's
# default one.
POLICY_SERVER_RBAC_NAMED: dict[str, Any] = {
    "policy": {
        "policyServerRbac": {
            "create": True,
            "serviceAccount": {"name": "ps-gastown", "namespace": "kw-system"},
        }
    }
}

POLICY_MODULE = "registry://registry.local/gastown-claim:v9"

IMAGE_OVERRIDES: dict[str, Any] = {
    "image": {"repository": "registry.local/gc", "tag": "dev", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
}

IMAGE_DIGEST = "sha256:" + "a" * 64

TUNING: dict[str, Any] = {
    "gastown": {
        "claimer": "team-town",
        "syncInterval": "1m",
        "claimTimeout": "1h30m",
        "commandTimeout": "45s",
    },
    "controller": {
        "concurrency": 3,
        "gastownConcurrency": 2,
        "logFormat": "text",
        "metricsPort": 9090,
        "extraArgs": ["--verbose"],
    },
}

EVERYTHING_ON: dict[str, Any] = {
    "replicas": 2,
    "watchNamespaces": ["team-a", "team-b"],
    "metrics": {"serviceMonitor": {"enabled": True}},
    "networkPolicy": {"enabled": True},
    "policy": {
        "enabled": True,
        "settings": {"forgeRigs": {"payments": "pay"}, "maxActiveClaimsPerNamespace": 2},
    },
}

# Two Gas Towns: release gastown-alice owns the policy and lists both towns; gastown-bob runs
# bob's controller only (chart README "Several Gas Towns"). Each release names its ServiceAccount
# after itself, so the towns' controllerUsers do not depend on the release name.


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def towns(
    alice_namespace: str = "gastown-alice", bob_namespace: str = "gastown-bob"
) -> dict[str, Any]:
    """The values of alice's release, for releases in these namespaces."""
    return {
        "gastown": {"claimer": "town-alice"},
        "serviceAccount": {"name": "gastown-alice"},
        "policy": {
            "enabled": True,
            "settings": {
                "towns": [
                    {
                        "name": "town-alice",
                        "rigs": ["payments", "web"],
                        "allowedUsers": ["alice"],
                        "controllerUsers": [
                            service_account_user(alice_namespace, "gastown-alice")
                        ],
                        "maxActiveClaims": 10,
                    },
                    {
                        "name": "town-bob",
                        "allowedGroups": ["developers"],
                        "controllerUsers": [service_account_user(bob_namespace, "gastown-bob")],
                    },
                ],
                "defaultTown": "town-alice",
                "forgeRigs": {"payments": "payments"},
                "defaultRig": "web",
            },
        },
    }


TOWNS = towns()
ALICE_USER = service_account_user("gastown-alice", "gastown-alice")
BOB_USER = service_account_user("gastown-bob", "gastown-bob")
# The values of bob's release.
TOWN_BOB: dict[str, Any] = {
    "gastown": {"claimer": "town-bob"},
    "serviceAccount": {"name": "gastown-bob"},
}
