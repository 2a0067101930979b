"""One settings tree, loaded once per entrypoint and passed down by keyword.

Sources, later wins: defaults, a YAML file (`--config`), `MODELFERRY_*` environment variables for
the few values operators set per deployment. Secrets are never values here: the Temporal API key
is read from the environment variable *named* by `temporal.api_key_env`, and storage credentials
come from Kubernetes Secrets at the moment a node activity needs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from modelferry.durations import parse_duration
from modelferry.names import AGENT_NAMESPACE_DEFAULT, ReportFormat
from modelferry.ownership import DEFAULT_MODELS_ROOTS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TemporalSettings(_Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    tls: bool = False
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    tls_server_ca_path: Path | None = None
    api_key_env: str | None = None  # name of the env var holding the API key, never the key


class KubeSettings(_Section):
    kubeconfig: Path | None = None  # None: in-cluster config, then ~/.kube/config
    agent_namespace: str = AGENT_NAMESPACE_DEFAULT
    # Node labels and ConfigMap entries: as OME's documents describe them, as OME's code reads
    # them today, or both (removal clears every format, so changing this strands nothing).
    report_formats: ReportFormat = ReportFormat.BOTH


class WorkerMode(StrEnum):
    JOB = "job"  # a per-node Job created on demand, exits when idle (default in a cluster)
    DAEMONSET = "daemonset"  # a long-running worker per node, deployed by deploy/node-worker
    STATIC = "static"  # started by hand or by `modelferry dev`


class WorkerSettings(_Section):
    mode: WorkerMode = WorkerMode.JOB
    image: str = "ghcr.io/modelferry/modelferry:0.1.0"
    service_account: str = "modelferry-node-worker"
    idle_exit_seconds: float = 300.0
    # How long node work may wait for the node's worker to poll before the node is Failed.
    schedule_to_start_seconds: float = 600.0
    models_host_path: str = "/raid/models"
    # Worker-side: activity slots for this node.
    max_concurrent_activities: int = 8


class NodeSettings(_Section):
    # Prefix under which storage.path lives on this node ("/" in a cluster; `dev` simulates a node
    # filesystem under <home>/node).
    root: Path = Path("/")
    pvc_mounts: dict[str, Path] = Field(default_factory=dict)
    hf_endpoint: str | None = None
    # Continuous verification of the models this node holds (`activities.continuous_verify`),
    # seconds; a duration string ("10m", "7d", "1h30m") is read too, and 0 or "off" disables.
    # Cheap (presence and sizes) every verify_interval, every byte hashed every deep_verify_interval.
    verify_interval: float = 600.0
    deep_verify_interval: float = 7 * 86400.0

    @field_validator("verify_interval", "deep_verify_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> float:
        return parse_duration(value, field=f"node.{info.field_name}")


class DownloadSettings(_Section):
    """The node worker's transfer knobs: the storage engine's and the backends' (`modelferry worker`
    and `modelferry pull` hand them on through `activities.node_options`).

    Every field travels to a Job-mode worker as the `modelferry worker` flag of the same name
    (`modelferry.nodejob`), so the controller's config governs the Jobs it creates.
    """

    concurrency: int = 4  # files of one model in flight
    multipart_concurrency: int = 4  # ranged parts of one large file in flight
    download_retry: int = 5  # retries per part
    num_download_worker: int = 2  # models downloading at once on one node
    stall_timeout: float = 60.0  # no byte for this long: the engine aborts and retries the part
    connect_timeout: float = Field(default=10.0, gt=0)  # opening a connection to the storage service
    read_timeout: float = Field(default=60.0, gt=0)  # one read that sees no byte for this long fails


class PipelineSettings(_Section):
    """How long the model workflows wait for the nodes: the control plane's side of a delivery.

    A section of its own because a different process reads it: the watcher's (controller, watch,
    dev) turns it into the `PipelineOptions` every model workflow carries
    (`modelferry.options.pipeline_options`), and a running workflow adopts those of the watcher that
    last applied it. Node workers never read it; their knobs are `download`. How long node work
    may wait for a worker to poll stays `worker.schedule_to_start_seconds`, beside the worker mode
    that decides how long a worker takes to start.
    """

    # One download attempt, start to close; a retry resumes from its checkpoint.
    download_timeout_seconds: float = Field(default=48 * 3600.0, gt=0)
    # A download attempt silent for this long is retried elsewhere (heartbeats go every 0.8 x this).
    download_heartbeat_seconds: float = Field(default=30.0, gt=0)
    # A node whose failure can heal (no spec change needed) is tried again after this.
    failed_node_retry_seconds: float = Field(default=1800.0, gt=0)
    # A model workflow continues as new past this many history events (well below Temporal's limits).
    max_history_events: int = Field(default=5_000, gt=0)
    # Complete previous versions each node keeps beside the serving one, for an instant rollback.
    keep_versions: int = Field(default=1, ge=0)


class PolicySettings(_Section):
    """What resources may ask of the nodes (see modelferry.admission and modelferry.ownership)."""

    # storage.path must lie strictly below one of these (absolute paths on the node).
    models_roots: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS_ROOTS))
    # Claims a cluster-scoped model may read: "namespace", "namespace:claim" or "*".
    # None: only the agent namespace's claims.
    cluster_claim_namespaces: list[str] | None = None

    @field_validator("models_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[str]) -> list[str]:
        for root in roots:
            if not root.startswith("/") or root == "/" or root != str(PurePosixPath(root)):
                raise ValueError(f"models root {root!r} must be an absolute, normalised path other than /")
        return roots


class HealthSettings(_Section):
    """Where the long-running roles answer probes (`/livez`, `/healthz`, `/readyz`) and serve
    Prometheus `/metrics` (`modelferry.commands.health`)."""

    # 127.0.0.1 unless told otherwise; a cluster install (deploy/config) opens it to the kubelet
    # and Prometheus, and Job-mode node workers get it as `--bind-address`.
    bind_address: str = "127.0.0.1"
    port: int | None = Field(default=8081, ge=0, le=65535)  # `controller`; None: no server
    # `modelferry worker` and `modelferry dev` (flag `--port`; 0: a free port). 8080 as OME's agent.
    worker_port: int | None = Field(default=8080, ge=0, le=65535)


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"  # one JSON object a line, with model, node and workflow ID when known


class LogSettings(_Section):
    """How every long-running role logs (`modelferry.commands.logs`; flag `--log-format`)."""

    format: LogFormat = LogFormat.TEXT


class Settings(_Section):
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    def cluster_claim_namespaces(self) -> list[str]:
        allowed = self.policy.cluster_claim_namespaces
        return list(allowed) if allowed is not None else [self.kube.agent_namespace]


_ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "MODELFERRY_TEMPORAL_ADDRESS": ("temporal", "address"),
    "MODELFERRY_TEMPORAL_NAMESPACE": ("temporal", "namespace"),
    "MODELFERRY_AGENT_NAMESPACE": ("kube", "agent_namespace"),
    "MODELFERRY_KUBECONFIG": ("kube", "kubeconfig"),
    "MODELFERRY_WORKER_MODE": ("worker", "mode"),
    "MODELFERRY_WORKER_IMAGE": ("worker", "image"),
    "MODELFERRY_NODE_ROOT": ("node", "root"),
    "MODELFERRY_LOG_FORMAT": ("log", "format"),
    "HF_ENDPOINT": ("node", "hf_endpoint"),
}


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < YAML file < environment < explicit overrides (`{"section.key": value}`)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: settings must be a mapping, got {type(loaded).__name__}")
        data = loaded
    env = os.environ if environ is None else environ
    for var, (section, key) in _ENV_OVERRIDES.items():
        if env.get(var):
            data.setdefault(section, {})[key] = env[var]
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    return Settings.model_validate(data)
