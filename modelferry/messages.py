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


class DownloadModelInput(NodeWork):
    pass


class DownloadModelResult(_Result):
    revision: str
    version_id: str
    total_bytes: int
    bytes_transferred: int
    files: int


class VerifyModelInput(NodeWork):
    version_id: str


class VerifyModelResult(_Result):
    files: int
    total_bytes: int


class ActivateModelVersionInput(NodeWork):
    version_id: str


class ActivateModelVersionResult(_Result):
    _BARE_FIELD = "version_id"
    version_id: str
    pruned: list[str] = Field(default_factory=list)  # older versions removed to keep the count


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


class NodeWorkflowInput(_Message):
    ref: ModelRef
    revision: ModelRevision
    node: str
    action: NodeAction = NodeAction.DELIVER
    node_exists: bool = True
    options: PipelineOptions = Field(default_factory=PipelineOptions)
