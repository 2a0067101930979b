"""The per-node worker Job (pure manifest building).

In a cluster, node work runs in a short-lived Job pinned to the node: it mounts the models root
(and, for `pvc://`, the claim read-only), polls the node's task queue, and exits after an idle
period. Tolerating every taint lets it reach tainted GPU nodes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from modelferry.durations import format_duration
from modelferry.names import MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODE_WORKER_LABEL, node_task_queue
from modelferry.settings import Settings

_DNS_UNSAFE = re.compile(r"[^a-z0-9-]")
PVC_MOUNT_ROOT = "/mnt/modelferry-pvc"


def _dns_name(prefix: str, *parts: str) -> str:
    """A readable DNS-1123 label that is unique per (prefix, *parts): cleaning maps `gpu.1` and
    `gpu-1` (or the parts `a-b, c` and `a, b-c`) to the same text, so a digest of the exact parts
    always follows it."""
    readable = _DNS_UNSAFE.sub("-", "-".join((prefix, *parts)).lower()).strip("-")
    digest = hashlib.sha256("\0".join((prefix, *parts)).encode()).hexdigest()[:8]
    return f"{readable[:54].rstrip('-')}-{digest}".lstrip("-")


def worker_task_queue(*, node: str, claim_namespace: str | None = None, claim_name: str | None = None) -> str:
    """A Job that mounts a claim polls its own queue, so only it gets that claim's downloads."""
    if claim_name:
        return f"{node_task_queue(node)}/pvc/{claim_namespace}/{claim_name}"
    return node_task_queue(node)


def worker_job_name(*, node: str, claim_namespace: str | None = None, claim_name: str | None = None) -> str:
    if claim_name:
        return _dns_name("modelferry-worker", node, claim_namespace or "", claim_name)
    return _dns_name("modelferry-worker", node)


def download_args(settings: Settings) -> list[str]:
    """Every `download` setting as its `modelferry worker` flag: the controller's download settings
    travel with the Job, so one config governs both, and a new setting cannot be left behind."""
    args: list[str] = []
    for name, value in settings.download.model_dump().items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def verify_args(settings: Settings) -> list[str]:
    """The node's continuous-verification intervals as `modelferry worker` flags (like the
    download settings, the controller's config governs the Jobs it creates)."""
    node = settings.node
    return [
        "--verify-interval",
        format_duration(node.verify_interval),
        "--deep-verify-interval",
        format_duration(node.deep_verify_interval),
    ]


def observability_args(settings: Settings) -> list[str]:
    """Where the Job's worker serves probes and /metrics, and how it logs: the controller's
    `health` and `log` settings, as flags (a Job reads no config file)."""
    port = settings.health.worker_port
    args = ["--log-format", settings.log.format.value, "--log-level", settings.log.level.value]
    if port is None:
        return [*args, "--port", "off"]
    return [*args, "--port", str(port), "--bind-address", settings.health.bind_address]


def build_worker_job(
    *, settings: Settings, node: str, namespace: str, claim_name: str | None = None
) -> dict[str, Any]:
    claim_namespace = namespace if claim_name else None
    queue = worker_task_queue(node=node, claim_namespace=claim_namespace, claim_name=claim_name)
    name = worker_job_name(node=node, claim_namespace=claim_namespace, claim_name=claim_name)
    models_root = settings.worker.models_host_path
    args = [
        "worker",
        "--node",
        node,
        "--task-queue",
        queue,
        "--idle-exit",
        str(int(settings.worker.idle_exit_seconds)),
        *download_args(settings),
        *verify_args(settings),
        *observability_args(settings),
    ]
    # The node applies the controller's admission policy again (defence in depth).
    for root in settings.policy.models_roots:
        args += ["--models-root", root]
    for allowed in settings.cluster_claim_namespaces():
        args += ["--allow-claims", allowed]
    volumes: list[dict[str, Any]] = [
        {"name": "models", "hostPath": {"path": models_root, "type": "DirectoryOrCreate"}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "models", "mountPath": models_root}]
    for i, root in enumerate(r for r in settings.policy.models_roots if r != models_root):
        volumes.append({"name": f"models-{i}", "hostPath": {"path": root, "type": "DirectoryOrCreate"}})
        mounts.append({"name": f"models-{i}", "mountPath": root})
    # The root filesystem is read-only; temporary files go to memory-backed scratch space.
    volumes.append({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if claim_name:
        mount_path = f"{PVC_MOUNT_ROOT}/{claim_name}"
        volumes.append(
            {"name": "claim", "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True}}
        )
        mounts.append({"name": "claim", "mountPath": mount_path, "readOnly": True})
        args += ["--pvc", f"{claim_namespace}:{claim_name}={mount_path}"]
    env = [
        {"name": "MODELFERRY_TEMPORAL_ADDRESS", "value": settings.temporal.address},
        {"name": "MODELFERRY_TEMPORAL_NAMESPACE", "value": settings.temporal.namespace},
        {"name": "MODELFERRY_AGENT_NAMESPACE", "value": settings.kube.agent_namespace},
    ]
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, NODE_WORKER_LABEL: _dns_name("", node)[:63]}
    pod_meta: dict[str, Any] = {"labels": labels}
    ports: list[dict[str, Any]] = []
    if settings.health.worker_port:  # Prometheus' usual pod annotations: scrape this port's /metrics
        port = settings.health.worker_port
        pod_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
        ports = [{"name": "metrics", "containerPort": port}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": pod_meta,
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.worker.service_account,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": "worker",
                            "image": settings.worker.image,
                            "args": args,
                            "env": env,
                            **({"ports": ports} if ports else {}),
                            "volumeMounts": mounts,
                            # Root, to write models roots the kubelet created root:root 0755,
                            # but with no capability and nothing else writable (as the DaemonSet).
                            "securityContext": {
                                "runAsUser": 0,
                                "runAsGroup": 0,
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def job_is_finished(job: dict[str, Any]) -> bool:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False
