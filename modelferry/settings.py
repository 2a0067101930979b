"""One settings tree, loaded once per entrypoint and passed down by keyword.

Sources, later wins: defaults, a YAML file (`--config`), environment variables, flags. Every
setting but a map (`node.pvc_mounts`: `--pvc`) has its variable `MODELFERRY_<SECTION>_<KEY>`
(`MODELFERRY_DOWNLOAD_DOWNLOAD_RETRY=3`; a list is comma-separated), plus the older names in
`ENV_ALIASES`. `resolve_settings` also says where each value came from (`modelferry config show`).
Secrets are never values here: the Temporal API key is read from the environment variable *named*
by `temporal.api_key_env`, and storage credentials come from Kubernetes Secrets at the moment a
node activity needs them.

OME's model agent (sgl-project/ome cmd/model-agent/main.go) takes `--port` 8080,
`--models-root-dir` /mnt/models, `--node-label-retry` 5, `--download-retry` 3, `--concurrency` 4,
`--multipart-concurrency` 4, `--num-download-worker` 5, `--namespace` ome and `--log-level` info;
`modelferry worker` takes each under that name (`modelferry.commands.settingflags`) with that
default, except where a field's comment says why not (`kube.node_label_retry`; and
`policy.models_roots` allows /raid/models, where OME's own DaemonSet points its agent, beside OME's
default /mnt/models). OME's viper also reads bare variables
(`PORT`, `NAMESPACE`...); those are too common in a Pod's environment to read here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from modelferry.durations import parse_duration
from modelferry.names import AGENT_NAMESPACE_DEFAULT, OmeManager, ReportFormat
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
    # The Kubernetes Secret holding the client credentials (keys tls.crt, tls.key, ca.crt and
    # api-key, each optional). The controller only names it: the worker Jobs it creates mount it
    # read-only at names.TEMPORAL_CREDENTIALS_DIR (so the TLS paths must lie there) and get
    # api_key_env's variable from its api-key. A pvc:// Job runs in the claim's namespace and can
    # mount only that namespace's Secret: create it there too, beside the RoleBindings deploy/rbac
    # asks for there.
    credentials_secret: str | None = None


class KubeSettings(_Section):
    kubeconfig: Path | None = None  # None: in-cluster config, then ~/.kube/config
    agent_namespace: str = AGENT_NAMESPACE_DEFAULT
    # Node labels and ConfigMap entries: as OME's documents describe them, as OME's code reads
    # them today, or both (removal clears every format, so changing this strands nothing).
    report_formats: ReportFormat = ReportFormat.BOTH
    # Attempts of one node's ConfigMap write that keeps meeting a conflict (OME: --node-label-retry).
    # Not OME's 5: OME's agent is the one writer of its node's ConfigMap, while here every model's
    # control activity for the node writes it (up to 32 at once), and each conflict means another
    # writer won, so fewer attempts than writers loses reports
    # (tests/activities/test_concurrent_node_reports_lose_nothing.py).
    node_label_retry: int = Field(default=50, ge=1)
    # Whether OME's own manager runs beside us: then it owns status.state/nodesReady/nodesFailed and
    # we write conditions and observedGeneration only (`modelferry.modelstatus.split_status`).
    # auto: present for a model that carries OME's finalizer (its manager reconciles it).
    ome_manager: OmeManager = OmeManager.AUTO


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

    # OME's defaults (a drop-in defaults like OME: bench/README.md measured nothing that argues
    # otherwise): download_retry was 5 and num_download_worker 2 before.
    concurrency: int = Field(default=4, ge=1)  # files of one model in flight
    multipart_concurrency: int = Field(default=4, ge=1)  # ranged parts of one large file in flight
    download_retry: int = Field(default=3, ge=0)  # retries per part
    num_download_worker: int = Field(default=5, ge=1)  # models downloading at once on one node
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


class LogLevel(StrEnum):
    """OME's `--log-level` values (zap's names; `warning` and any case are read too)."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> LogLevel | None:
        text = str(value).strip().lower()
        return cls.WARN if text == "warning" else next((m for m in cls if m.value == text), None)

    def logging_level(self) -> int:
        return {"debug": 10, "info": 20, "warn": 30, "error": 40}[self.value]


class LogSettings(_Section):
    """How every long-running role logs (`modelferry.commands.logs`; flags `--log-format`,
    `--log-level`)."""

    format: LogFormat = LogFormat.TEXT
    level: LogLevel = LogLevel.INFO


class PeerSettings(_Section):
    """Peer delivery: nodes fetch a version from nodes that already hold it, not all from the
    origin. Off until an admin enables it; every byte is still checked against the origin
    listing's digests, so a peer can be fast but is never trusted."""

    enabled: bool = False  # the model workflows plan the spread (PipelineOptions.peer_delivery)
    origin_fetchers: int = Field(default=1, ge=1)  # nodes that fetch a new version from the origin
    # The node worker's peer server: read-only, only complete versions under the models roots.
    bind_address: str = "127.0.0.1"
    port: int | None = Field(default=8090, ge=0, le=65535)  # None: no peer server; 0: a free port
    advertise_url: str | None = None  # what peers use to reach this worker; None: from bind/port
    token_env: str = "MODELFERRY_PEER_TOKEN"  # env var holding the per-cluster bearer token


class Settings(_Section):
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    peer: PeerSettings = Field(default_factory=PeerSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    def cluster_claim_namespaces(self) -> list[str]:
        allowed = self.policy.cluster_claim_namespaces
        return list(allowed) if allowed is not None else [self.kube.agent_namespace]


ENV_PREFIX = "MODELFERRY_"
# Older or conventional names, read before the MODELFERRY_<SECTION>_<KEY> ones (which win).
ENV_ALIASES: dict[str, str] = {
    "MODELFERRY_AGENT_NAMESPACE": "kube.agent_namespace",
    "MODELFERRY_KUBECONFIG": "kube.kubeconfig",
    "HF_ENDPOINT": "node.hf_endpoint",
}
DEFAULT = "default"
FILE = "file"
FLAG = "flag"


def setting_names() -> list[str]:
    """Every setting, as `section.key`, in the tree's order."""
    names: list[str] = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, _Section)
        names += [f"{section}.{key}" for key in model.model_fields]
    return names


def _field_kind(setting: str) -> type:
    """`list`, `dict` or `str` (anything pydantic parses from one string)."""
    section, key = setting.split(".", 1)
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, _Section)
    annotation = model.model_fields[key].annotation
    for candidate in (annotation, *get_args(annotation)):
        origin = get_origin(candidate) or candidate
        if origin in (list, dict):
            return origin  # type: ignore[no-any-return]
    return str


def env_var(setting: str) -> str | None:
    """`MODELFERRY_<SECTION>_<KEY>` for `section.key`; None for a map (set by file or flag)."""
    if _field_kind(setting) is dict:
        return None
    return ENV_PREFIX + setting.replace(".", "_").upper()


def _env_value(setting: str, text: str) -> Any:
    if _field_kind(setting) is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings and, per `section.key`, where its value came from: `default`, `file`,
    `env VAR` or `flag`."""

    settings: Settings
    sources: dict[str, str]
    file: Path | None = None


def resolve_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ResolvedSettings:
    """Defaults < YAML file < environment < explicit overrides (`{"section.key": value}`, the flags)."""
    data: dict[str, Any] = {}
    sources = dict.fromkeys(setting_names(), DEFAULT)
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: settings must be a mapping, got {type(loaded).__name__}")
        data = loaded
        for section, values in loaded.items():
            for key in values if isinstance(values, dict) else ():
                sources[f"{section}.{key}"] = FILE
    env = os.environ if environ is None else environ
    readers = [*ENV_ALIASES.items(), *((env_var(name), name) for name in setting_names())]
    for var, setting in readers:
        if var and env.get(var):
            section, key = setting.split(".", 1)
            data.setdefault(section, {})[key] = _env_value(setting, env[var])
            sources[setting] = f"env {var}"
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
        sources[dotted] = FLAG
    return ResolvedSettings(settings=Settings.model_validate(data), sources=sources, file=path)


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < YAML file < environment < explicit overrides (`{"section.key": value}`)."""
    return resolve_settings(path, environ=environ, overrides=overrides).settings
