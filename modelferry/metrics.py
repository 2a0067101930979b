"""Prometheus metrics: one registry, the metric objects, and the small helpers activities call.

The node metrics keep the names, types and label names of OME's model agent
(`pkg/modelagent/metrics.go`: `model_type`, `namespace`, `name`) so its dashboards and alerts work
unchanged. modelferry adds a `node` label to each (one agent per node in OME, so the scrape target
told the node; a `dev` process serves several nodes) and a bounded `reason` on failed downloads,
one of `FAILURE_REASONS` taken from the typed errors. As in OME, `namespace` is empty for a
cluster-scoped model. Durations reach hours: a model of hundreds of GB takes that long.

Our own metrics start with `modelferry_`. Each process serves what it did on `/metrics`
(`modelferry.commands.health`): node workers the download and verify series, the controller the
API write retries, workflows running and node reports. Everything here is pure
prometheus-client, so the bottom layer stays free of temporalio and the Kubernetes client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from modelferry.errors import (
    AccessDeniedError,
    BackendNotAvailableError,
    InsufficientDiskSpaceError,
    IntegrityError,
    InvalidSpecError,
    KubeForbiddenError,
    KubeNotFoundError,
    KubeUnavailableError,
    PathOwnershipError,
    SourceNotFoundError,
    SourceUnavailableError,
    UnsafePathError,
)

__all__ = ["CONTENT_TYPE", "REGISTRY", "render"]

# No `<name>_created` series beside every counter and histogram: OME's Go client has none, and they
# double what a scrape carries. (A process-wide switch of prometheus-client; every process that
# imports this module serves this registry.)
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

_MODEL = ("model_type", "namespace", "name", "node")
# 0.1 s .. 48 h: a small file in a test, a 1 TB model on a slow link (pipeline's download timeout).
DURATION_BUCKETS = (
    0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 172800,
)  # fmt: skip

DOWNLOADS_SUCCESS = Counter(
    "model_agent_downloads_success_total",
    "The total number of successful model downloads",
    _MODEL,
    registry=REGISTRY,
)
DOWNLOADS_FAILED = Counter(
    "model_agent_downloads_failed_total",
    "The total number of failed model downloads (attempts), by reason",
    (*_MODEL, "reason"),
    registry=REGISTRY,
)
DOWNLOAD_DURATION = Histogram(
    "model_agent_download_duration_seconds",
    "The duration of successful model downloads in seconds",
    _MODEL,
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
DOWNLOAD_BYTES = Counter(
    "model_agent_download_bytes_total",
    "The total bytes transferred while downloading models (failed attempts included)",
    _MODEL,
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "model_agent_verifications_total",
    "The total number of model verification attempts, by result (success, failure)",
    (*_MODEL, "result"),
    registry=REGISTRY,
)
VERIFICATION_DURATION = Histogram(
    "model_agent_verification_duration_seconds",
    "The duration of model verifications in seconds",
    ("node",),  # OME's has no label; the node is what tells a slow disk
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
CHECKSUM_FAILED = Counter(
    "model_agent_md5_checksum_failed_total",
    "The total number of checksum failures (a verification that failed, or a download whose bytes "
    "did not match their digests); OME's name, every digest kind counts",
    _MODEL,
    registry=REGISTRY,
)

KUBE_WRITE_CONFLICTS = Counter(
    "modelferry_kube_write_conflicts_total",
    "Kubernetes API writes retried after a conflict (another writer changed the object first)",
    ("resource",),
    registry=REGISTRY,
)
ACTIVITY_SLOTS = Gauge(
    "modelferry_worker_activity_slots",
    "Activity slots of this worker (max_concurrent_activities)",
    ("task_queue",),
    registry=REGISTRY,
)
ACTIVITY_SLOTS_USED = Gauge(
    "modelferry_worker_activity_slots_used",
    "Activities this worker is running now",
    ("task_queue",),
    registry=REGISTRY,
)
NODE_REPORTS = Counter(
    "modelferry_node_reports_total",
    "Per-node model states written to the node's ConfigMap and labels (Updating, Ready, Failed...)",
    ("state",),
    registry=REGISTRY,
)
WORKFLOWS_RUNNING = Gauge(
    "modelferry_workflows_running",
    "Running workflows of each type in the Temporal namespace (every controller replica sees all)",
    ("workflow_type",),
    registry=REGISTRY,
)

# The bounded set of `reason` values on failed downloads; anything else is `other`.
FAILURE_REASONS = (
    "access_denied",
    "not_found",
    "source_unavailable",
    "checksum_mismatch",
    "disk_full",
    "invalid_spec",
    "path_ownership",
    "cancelled",
    "io_error",
    "other",
)

_REASONS_BY_ERROR: tuple[tuple[type[BaseException], str], ...] = (
    (AccessDeniedError, "access_denied"),
    (KubeForbiddenError, "access_denied"),  # a storageKey Secret the worker may not read
    (SourceNotFoundError, "not_found"),
    (KubeNotFoundError, "not_found"),  # a storageKey Secret that does not exist
    (SourceUnavailableError, "source_unavailable"),
    (KubeUnavailableError, "source_unavailable"),
    (IntegrityError, "checksum_mismatch"),
    (InsufficientDiskSpaceError, "disk_full"),
    (InvalidSpecError, "invalid_spec"),
    (UnsafePathError, "invalid_spec"),
    (BackendNotAvailableError, "invalid_spec"),
    (PathOwnershipError, "path_ownership"),
)


def failure_reason(error: BaseException) -> str:
    """One of FAILURE_REASONS for an exception (a bounded label value, never the message)."""
    for cls, reason in _REASONS_BY_ERROR:
        if isinstance(error, cls):
            return reason
    # Temporal's and asyncio's CancelledError, and the engine's DownloadCancelledError: by name,
    # because this layer imports neither temporalio nor the activities.
    if any(c.__name__.endswith("CancelledError") for c in type(error).__mro__):
        return "cancelled"
    if isinstance(error, OSError):
        return "io_error"
    return "other"


@dataclass(frozen=True)
class ModelLabels:
    """OME's labels for one model on one node."""

    model_type: str  # BaseModel, ClusterBaseModel, FineTunedWeight (the kind, as in OME)
    namespace: str  # "" for a cluster-scoped model, as in OME
    name: str
    node: str

    def values(self) -> tuple[str, str, str, str]:
        return (self.model_type, self.namespace, self.name, self.node)


@dataclass
class DownloadObservation:
    """What one download attempt reports while it runs: bytes over the wire."""

    labels: ModelLabels
    _seen: int = field(default=0)

    def transferred(self, total_so_far: int) -> None:
        """The attempt's cumulative bytes over the wire; only the growth is counted."""
        delta = total_so_far - self._seen
        if delta > 0:
            DOWNLOAD_BYTES.labels(*self.labels.values()).inc(delta)
            self._seen = total_so_far


@contextmanager
def observe_download(labels: ModelLabels) -> Iterator[DownloadObservation]:
    """One download attempt: success and its duration, or failure with its reason."""
    started = time.monotonic()
    observation = DownloadObservation(labels=labels)
    try:
        yield observation
    except BaseException as error:
        reason = failure_reason(error)
        DOWNLOADS_FAILED.labels(*labels.values(), reason).inc()
        if reason == "checksum_mismatch":
            CHECKSUM_FAILED.labels(*labels.values()).inc()
        raise
    DOWNLOADS_SUCCESS.labels(*labels.values()).inc()
    DOWNLOAD_DURATION.labels(*labels.values()).observe(time.monotonic() - started)


@contextmanager
def observe_verification(labels: ModelLabels) -> Iterator[None]:
    """One verification: its result and duration; a failed one counts as a checksum failure (as
    OME counts it), a cancelled one as neither result."""
    started = time.monotonic()
    try:
        yield
    except BaseException as error:
        if failure_reason(error) != "cancelled":
            VERIFICATIONS.labels(*labels.values(), "failure").inc()
            CHECKSUM_FAILED.labels(*labels.values()).inc()
            VERIFICATION_DURATION.labels(labels.node).observe(time.monotonic() - started)
        raise
    VERIFICATIONS.labels(*labels.values(), "success").inc()
    VERIFICATION_DURATION.labels(labels.node).observe(time.monotonic() - started)


def count_write_conflict(resource: str) -> None:
    """A Kubernetes write that lost to another writer and is retried (`configmap`, `model`)."""
    KUBE_WRITE_CONFLICTS.labels(resource).inc()


def count_node_report(state: str) -> None:
    NODE_REPORTS.labels(state).inc()


def render() -> bytes:
    """The registry in Prometheus' text format, for `/metrics`."""
    return generate_latest(REGISTRY)


def metric_names() -> set[str]:
    """Every sample name the registry can expose (`_total`, `_bucket`, ... included), for the test
    that checks the dashboard queries only what exists."""
    names: set[str] = set()
    for collector in REGISTRY.collect():
        names.add(collector.name)
        kind = collector.type
        if kind == "counter":
            names.add(f"{collector.name}_total")
        elif kind == "histogram":
            names |= {f"{collector.name}_{s}" for s in ("bucket", "sum", "count")}
    return names
