"""Typed messages between the watcher, workflows and activities.

One model in, one model out (`<Verb><Noun>Input` / `<Verb><Noun>Result`); new fields always get
defaults so running workflows keep replaying. Nothing here ever carries a secret: a spec names the
Secret (`storageKey`), and only the node activity that needs it reads it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from modelferry.lifecycle import wire_spec
from modelferry.names import ModelKey, ModelKind
from modelferry.spec.basemodel import BaseModelSpec
from modelferry.spec.finetuned import FineTunedWeightSpec
from modelferry.storage_uri import StorageUri, parse_storage_uri

# The typed spec, parsed once by the watcher (`spec.parse.parse_resource`) and carried as is:
# downstream code reads fields. On the wire (and in Temporal's history) it is OME's JSON, camelCase,
# exactly as the resource holds it, so a history stays readable and older payloads decode.
ModelSpec = Annotated[BaseModelSpec | FineTunedWeightSpec, PlainSerializer(wire_spec, return_type=dict)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Result(_Message):
    """An activity result. Before results were models, some activities returned a bare value
    (`true`, a version id); a history recorded then still replays: the bare value becomes
    `_BARE_FIELD`."""

    _BARE_FIELD: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _from_bare_value(cls, data: Any) -> Any:
        if cls._BARE_FIELD and not isinstance(data, dict):
            return {} if data is None else {cls._BARE_FIELD: data}
        if data is None:
            return {}
        return data


class ModelRef(_Message):
    """Identifies one model resource."""

    kind: ModelKind
    name: str
    namespace: str | None = None
    uid: str = ""

    @property
    def key(self) -> ModelKey:
        return (self.kind, self.namespace if self.kind.namespaced else None, self.name)

    def display(self) -> str:
        if self.namespace and self.kind.namespaced:
            return f"{self.kind.value}/{self.namespace}/{self.name}"
        return f"{self.kind.value}/{self.name}"


class ModelRevision(_Message):
    """A generation of a resource as the watcher saw it. `spec` is None only for a cleanup of a
    resource whose spec was never seen (a watcher that learns of a deletion it did not apply)."""

    generation: int
    spec: ModelSpec | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str = ""

    @field_validator("spec", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value  # histories recorded before spec was typed

    def storage_uri(self, kind: ModelKind) -> StorageUri:
        """The parsed source URI (raises InvalidStorageUriError); None-spec revisions have none."""
        if self.spec is None:
            raise ValueError("a cleanup-only revision has no spec")
        return model_storage_uri(kind, self.spec)


def model_storage_uri(kind: ModelKind, spec: BaseModelSpec | FineTunedWeightSpec) -> StorageUri:
    """The one place a model's storage URI is parsed (a cluster-scoped kind must name a claim's
    namespace)."""
    storage = spec.storage
    return parse_storage_uri(
        storage.storage_uri, parameters=storage.parameters, cluster_scoped=not kind.namespaced
    )


class NodeOutcome(_Message):
    """Where one node stands for one model."""

    node: str
    state: str  # NodeModelStatus value: Ready | Updating | Failed | Deleted
    reason: str = ""
    message: str = ""
    generation: int = 0
    revision: str = ""  # the source revision on disk (HF commit, listing digest)
    fingerprint: str = ""  # lifecycle.delivery_fingerprint of the spec this outcome delivered
    retryable: bool = True  # False when only a new generation of the resource can fix the failure
    metadata: dict[str, Any] | None = None  # parsed metadata (ModelMetadata by alias)
    version_id: str = ""  # the version directory storage.path points at (Ready outcomes)
    kept_versions: list[str] = Field(default_factory=list)  # complete older versions on disk
    peer_url: str = ""  # where this node's worker serves its verified versions to peers ("" none)


class PipelineOptions(_Message):
    """Timeouts the watcher's settings hand to the workflows (no secrets).

    Entry points build it only with `modelferry.options.pipeline_options`, and a running workflow
    adopts the watcher's (signal `apply_options`). These defaults equal the settings' (tested).
    """

    node_schedule_to_start_seconds: float = 600.0
    download_timeout_seconds: float = 48 * 3600.0
    failed_node_retry_seconds: float = 1800.0
    download_heartbeat_seconds: float = 30.0  # heartbeats reach the server every 0.8 x this
    max_history_events: int = 5_000  # continue-as-new past this (well below Temporal's limits)
    keep_versions: int = 1  # complete previous versions kept on each node for an instant rollback
    peer_delivery: bool = False  # nodes fetch from nodes that hold the version, not all from origin
    peer_origin_fetchers: int = 1  # with peer delivery: nodes fetching a new version from the origin


class PendingNodeWork(_Message):
    """Node work an admin action or a damage report asked for, until it starts."""

    action: str = "deliver"  # NodeAction value: deliver (with fresh_tag) or rollback
    fresh_tag: str = ""
    repair_from: str = ""
    damaged_files: list[str] = Field(default_factory=list)
    version_id: str = ""  # rollback: the kept version
    cause: str = ""


class InvalidRevision(_Message):
    """A generation of a resource the watcher refused (signal `mark_invalid`): the field at fault
    and the rule it breaks. The model's workflow, the one writer of status, reports it."""

    generation: int
    field: str = ""  # a dotted path such as `spec.storage.path`; empty when no one field is at fault
    rule: str
    uid: str = ""

    @property
    def message(self) -> str:
        return f"{self.field}: {self.rule}" if self.field else self.rule


class ModelWorkflowInput(_Message):
    ref: ModelRef
    # Generation 0 without a spec when the run was started to report an invalid spec of a resource
    # never applied (`InvalidRevision`), or to clean up one whose spec was never seen.
    revision: ModelRevision
    # Carried over continue_as_new so the new run knows what is already on which node.
    nodes: dict[str, NodeOutcome] = Field(default_factory=dict)
    delete_requested: bool = False
    spec_metadata_written_for: str = ""  # delivery fingerprint whose metadata reached the spec
    options: PipelineOptions = Field(default_factory=PipelineOptions)
    invalid: InvalidRevision | None = None  # a refused generation newer than `revision`
    # Ready nodes whose newer version failed (they keep serving the previous one).
    update_failures: dict[str, NodeOutcome] = Field(default_factory=dict)
    failed_at: dict[str, float] = Field(default_factory=dict)  # node -> workflow time of its failure
    pending: dict[str, PendingNodeWork] = Field(default_factory=dict)  # admin work not started yet
    handled_tokens: list[str] = Field(default_factory=list)  # AdminRequest tokens already run
    # Parsed metadata, once per version (node outcomes of the live loop do not each carry a copy).
    metadata: dict[str, dict[str, Any]] = Field(default_factory=dict)


# --- control-queue activities ----------------------------------------------------------------


class EnsureFinalizerInput(_Message):
    ref: ModelRef


class EnsureFinalizerResult(_Result):
    _BARE_FIELD = "added"
    added: bool = False  # False: it was there already (or the resource is gone)


class ReleaseFinalizerInput(_Message):
    ref: ModelRef


class ReleaseFinalizerResult(_Result):
    _BARE_FIELD = "released"
    released: bool = False


class PlanPlacementInput(_Message):
    ref: ModelRef
    spec: ModelSpec | None = None  # None: a cleanup-only run, which needs only the node list

    @field_validator("spec", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value


class PlanPlacementResult(_Result):
    eligible: list[str] = Field(default_factory=list)
    excluded: dict[str, str] = Field(default_factory=dict)  # node -> reason
    existing_nodes: list[str] = Field(default_factory=list)


class WriteSpecMetadataInput(_Message):
    ref: ModelRef
    metadata: dict[str, Any]


class WriteSpecMetadataResult(_Result):
    _BARE_FIELD = "written"
    written: bool = False  # False: nothing to fill (or the resource is gone)


class WriteModelStatusInput(_Message):
    ref: ModelRef
    status: dict[str, Any]
    # The generation `status` describes; None in inputs recorded before this field: then the
    # status's own observedGeneration. A status describing a newer generation is never overwritten.
    generation: int | None = None


class WriteModelStatusResult(_Result):
    _BARE_FIELD = "written"
    written: bool = False  # False: unchanged, describes an older generation, or the resource is gone


class SetNodeModelStatusInput(_Message):
    ref: ModelRef
    node: str
    status: str  # NodeModelStatus value
    config: dict[str, Any] | None = None


class SetNodeModelStatusResult(_Result):
    pass


class RemoveNodeModelStatusInput(_Message):
    ref: ModelRef
    node: str


class RemoveNodeModelStatusResult(_Result):
    pass


class EnsureNodeWorkerInput(_Message):
    node: str
    claim_namespace: str | None = None  # pvc:// in job mode: the Job must run beside the claim
    claim_name: str | None = None


class EnsureNodeWorkerResult(_Result):
    task_queue: str
    mode: str
    job_name: str | None = None
    created: bool = False


# --- node-queue activities -------------------------------------------------------------------


class NodeWork(_Message):
    """What every node activity needs: which model, which spec, which node."""

    ref: ModelRef
    spec: ModelSpec
    node: str

    def storage_uri(self) -> StorageUri:
        return model_storage_uri(self.ref.kind, self.spec)


class PeerSource(_Message):
    """A node whose worker serves a verified version to its peers."""

    node: str
    url: str  # the peer server's base URL (`peer.advertise_url` of that node's worker)
    version_id: str


class DownloadModelInput(NodeWork):
    # A fresh copy: fetch every byte again into a new version directory named
    # `<content version id>-<fresh_tag>`, ignoring what is on disk (admin `redownload`, repair).
    fresh_tag: str = ""
    # A repair of this (damaged) version: only `damaged_files` are fetched again; every other file
    # is taken from it after its size and digest check out. Needs `fresh_tag`.
    repair_from: str = ""
    damaged_files: list[str] = Field(default_factory=list)
    # Peer delivery: fetch bytes from these nodes (tried in order per file; every byte checked
    # against the origin listing's digests); a peer that is slow, gone or wrong is dropped and
    # the bytes come from the next one, then from the origin.
    peers: list[PeerSource] = Field(default_factory=list)


class DownloadModelResult(_Result):
    revision: str
    version_id: str
    total_bytes: int
    bytes_transferred: int
    files: int
    bytes_from_peers: dict[str, int] = Field(default_factory=dict)  # node -> bytes it fed
    dropped_peers: dict[str, str] = Field(default_factory=dict)  # node -> why it was dropped
    peer_url: str = ""  # this node's own peer server, if it serves peers


class VerifyModelInput(NodeWork):
    version_id: str


class VerifyModelResult(_Result):
    files: int
    total_bytes: int


class ActivateModelVersionInput(NodeWork):
    version_id: str
    keep_previous: int = 1  # complete older versions kept beside the active one (PipelineOptions)


class ActivateModelVersionResult(_Result):
    _BARE_FIELD = "version_id"
    version_id: str
    pruned: list[str] = Field(default_factory=list)  # older versions removed to keep the count
    kept: list[str] = Field(default_factory=list)  # complete older versions still on disk, newest first


class ParseModelInput(NodeWork):
    version_id: str = ""


class ParseModelResult(_Result):
    metadata: dict[str, Any] | None = None
    skipped: bool = False
    warnings: list[str] = Field(default_factory=list)


class RemoveModelFilesInput(NodeWork):
    pass


class RemoveModelFilesResult(_Result):
    removed: bool
    path: str


# --- the per-node child workflow ---------------------------------------------------------------


class NodeAction(StrEnum):
    DELIVER = "deliver"
    REMOVE = "remove"
    ROLLBACK = "rollback"  # re-point storage.path at a kept version (`NodeWorkflowInput.version_id`)


class NodeWorkflowInput(_Message):
    ref: ModelRef
    revision: ModelRevision
    node: str
    action: NodeAction = NodeAction.DELIVER
    node_exists: bool = True
    options: PipelineOptions = Field(default_factory=PipelineOptions)
    # The verified outcome serving on the node now, if any: while a new version is fetched the node
    # stays Ready on it, and a failure leaves it serving (a recorded rollback, not a broken model).
    serving: NodeOutcome | None = None
    fresh_tag: str = ""  # DownloadModelInput.fresh_tag (redownload, repair)
    repair_from: str = ""  # DownloadModelInput.repair_from
    damaged_files: list[str] = Field(default_factory=list)
    version_id: str = ""  # ROLLBACK: the kept version to serve
    peers: list[PeerSource] = Field(default_factory=list)  # DownloadModelInput.peers
    cause: str = ""  # why this node work runs, for the history and Events ("generation 3", "admin ...")


# --- events, progress and continuous verification ----------------------------------------------


class RecordModelEventInput(_Message):
    """A Kubernetes Event on the model resource (`kubectl describe` tells its story)."""

    ref: ModelRef
    reason: str  # CamelCase, e.g. DownloadStarted, NodeReady, NodeFailed, OverrideFailed, Repaired
    message: str
    type: str = "Normal"  # Normal | Warning
    node: str = ""  # the node the event is about, if one


class RecordModelEventResult(_Result):
    recorded: bool = False  # False: the resource is gone


class NodeProgress(_Message):
    """A download's progress on one node, with OME's ModelEntry `progress` field names on the wire."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    phase: str = ""  # Downloading | Verifying | Parsing
    total_bytes: int = Field(default=0, alias="totalBytes")
    completed_bytes: int = Field(default=0, alias="completedBytes")
    total_files: int = Field(default=0, alias="totalFiles")
    completed_files: int = Field(default=0, alias="completedFiles")
    speed_bytes_per_sec: float = Field(default=0.0, alias="speedBytesPerSec")
    eta_seconds: float | None = Field(default=None, alias="etaSeconds")
    last_updated: str = Field(default="", alias="lastUpdated")  # RFC 3339, UTC


class ReportNodeProgressInput(_Message):
    """Runs on the control queue beside a node's download: reads the download activity's heartbeat
    (from the node workflow's pending activities) and writes it into the node's ConfigMap entry as
    `progress`, throttled, until the node workflow cancels it."""

    ref: ModelRef
    node: str
    node_workflow_id: str
    status: str  # NodeModelStatus the entry keeps meanwhile: Updating, or Ready while a previous
    # version serves
    config: dict[str, Any] | None = None  # the entry's config meanwhile (the serving version's)
    interval_seconds: float = 10.0  # at most one write per interval ...
    min_percent_step: float = 5.0  # ... and only when the percentage moved this much (or phase changed)


class ReportNodeProgressResult(_Result):
    writes: int = 0


class DamageReport(_Message):
    """A node worker's continuous verification found a Ready model's files damaged (signal
    `report_damage` to the model's workflow): the workflow repairs it on that node."""

    node: str
    version_id: str
    files: list[str] = Field(default_factory=list)  # the missing or corrupted files
    check: str = "cheap"  # cheap (presence, sizes) | deep (every byte hashed)
    detail: str = ""
    uid: str = ""  # the resource uid the owner record names; a report for another uid is dropped


# --- admin actions (Temporal Updates on the model's workflow) -------------------------------------


class AdminAction(StrEnum):
    REDOWNLOAD = "redownload"  # a fresh fetch and verify, ignoring what is on disk
    ROLLBACK = "rollback"  # serve a kept version again
    RETRY = "retry"  # failed nodes now, not after the retry timer


class AdminRequest(_Message):
    nodes: list[str] = Field(default_factory=list)  # empty: every node the action applies to
    reason: str = ""
    requested_by: str = ""  # e.g. "cli:alice@host", "annotation:modelferry.io/redownload"
    to_version: str = ""  # rollback: the version to serve; empty: the newest kept one
    # An idempotency token (an annotation's key=value): a token already handled is not run again.
    token: str = ""


class AdminPlan(_Message):
    """What an accepted admin action will do (the Update's result, returned before it runs)."""

    action: AdminAction
    nodes: list[str] = Field(default_factory=list)
    to_version: dict[str, str] = Field(default_factory=dict)  # rollback: node -> version
    message: str = ""
    already_handled: bool = False  # the token was handled before: nothing new runs
