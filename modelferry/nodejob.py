"""The per-node worker Job (pure manifest building).

In a cluster, node work runs in a short-lived Job pinned to the node: it mounts the models root
(and, for `pvc://`, the claim read-only), polls the node's task queue, and exits after an idle
period. Tolerating every taint lets it reach tainted GPU nodes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from typing import Any

from modelferry.durations import format_duration
from modelferry.errors import InvalidSettingsError
from modelferry.names import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    NODE_WORKER_LABEL,
    TEMPORAL_API_KEY_SECRET_KEY,
    TEMPORAL_CREDENTIALS_DIR,
    node_task_queue,
)
from modelferry.settings import Settings, TemporalSettings, env_var

_DNS_UNSAFE = re.compile(r"[^a-z0-9-]")
PVC_MOUNT_ROOT = "/mnt/modelferry-pvc"
TEMPORAL_CREDENTIALS_VOLUME = "temporal-credentials"
_TLS_PATH_SETTINGS = ("tls_client_cert_path", "tls_client_key_path", "tls_server_ca_path")


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


def check_job_can_reach_temporal(temporal: TemporalSettings) -> None:
    """Refuse settings with which a worker Job could not connect as the controller does: it has
    only its own env and volumes, so the API key and the TLS files must come from the Secret
    `credentials_secret` names."""
    secret = temporal.credentials_secret
    if temporal.api_key_env and not secret:
        raise InvalidSettingsError(
            f"temporal.api_key_env is set ({temporal.api_key_env}) but temporal.credentials_secret "
            "is not: a worker Job can get the API key only from that Secret (key "
            f"{TEMPORAL_API_KEY_SECRET_KEY!r}); name the Secret in temporal.credentials_secret"
        )
    if not secret:
        return  # TLS paths are used as given (files in the image, such as a system CA bundle)
    credentials_dir = PurePosixPath(TEMPORAL_CREDENTIALS_DIR)
    for key in _TLS_PATH_SETTINGS:
        path = getattr(temporal, key)
        if path is None:
            continue
        posix = PurePosixPath(path)
        if credentials_dir not in posix.parents or ".." in posix.parts:
            raise InvalidSettingsError(
                f"temporal.{key} ({path}) is outside {TEMPORAL_CREDENTIALS_DIR}, where worker Jobs "
                f"mount temporal.credentials_secret ({secret}): a Job could not read it"
            )


def temporal_env(settings: Settings) -> list[dict[str, Any]]:
    """Every `temporal` setting that is set, as the variable the worker's settings loader reads
    (so a new one cannot be left behind), and the API key's variable from the credentials Secret."""
    temporal = settings.temporal
    check_job_can_reach_temporal(temporal)
    env: list[dict[str, Any]] = []
    for key, value in temporal.model_dump().items():
        if value is None or value is False:  # the worker's default
            continue
        env.append({"name": env_var(f"temporal.{key}"), "value": "true" if value is True else str(value)})
    if temporal.api_key_env:
        ref = {"name": temporal.credentials_secret, "key": TEMPORAL_API_KEY_SECRET_KEY}
        env.append({"name": temporal.api_key_env, "valueFrom": {"secretKeyRef": ref}})
    return env


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
    if secret := settings.temporal.credentials_secret:  # read by the worker's uid 0 alone
        volumes.append(
            {
                "name": TEMPORAL_CREDENTIALS_VOLUME,
                "secret": {"secretName": secret, "defaultMode": 0o400, "optional": False},
            }
        )
        mounts.append(
            {"name": TEMPORAL_CREDENTIALS_VOLUME, "mountPath": TEMPORAL_CREDENTIALS_DIR, "readOnly": True}
        )
    env = [
        *temporal_env(settings),
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
