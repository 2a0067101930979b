"""Status of a model resource and the state values other layers write.

`ModelState` keeps OME's `LifeCycleState` spellings (`In_Transit`, `In_Training`). modelferry writes
only `Creating`, `Ready` and `Failed` (`modelferry.modelstatus`), which OME's CRD accepts too;
`Updating` and `Deleting` are accepted by our CRD (`deploy/crd/`) so objects other tools wrote
with them stay valid, but nothing here writes them: a deletion in progress is the `Ready`
condition's reason `Deleting`.

`NodeModelStatus` is the per-node value written into the node's ConfigMap entry and node label,
in OME's spelling.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from modelferry.spec.meta import Int, OpenWire, Str


class ModelState(StrEnum):
    """`status.state` of a BaseModel, ClusterBaseModel or FineTunedWeight."""

    CREATING = "Creating"
    IMPORTING = "Importing"
    IN_TRANSIT = "In_Transit"
    IN_TRAINING = "In_Training"
    READY = "Ready"
    FAILED = "Failed"
    UPDATING = "Updating"
    DELETING = "Deleting"


class NodeModelStatus(StrEnum):
    """A model's state on one node, as OME's agent writes it to the node ConfigMap and label."""

    READY = "Ready"
    UPDATING = "Updating"
    FAILED = "Failed"
    DELETED = "Deleted"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(OpenWire):
    """One observation about the resource, shaped like Kubernetes' `metav1.Condition`."""

    type: Str = Field(min_length=1, description="CamelCase condition type, e.g. Ready or Downloaded.")
    status: ConditionStatus
    reason: Str | None = Field(default=None, description="CamelCase machine-readable reason.")
    message: Str | None = None
    last_transition_time: datetime | None = Field(default=None, alias="lastTransitionTime")
    observed_generation: Int | None = Field(default=None, alias="observedGeneration", ge=0)


class ModelStatus(OpenWire):
    """Observed state; written only through the status subresource."""

    state: ModelState = Field(description="Overall lifecycle state (OME's LifeCycleState plus ours).")
    lifecycle: Str | None = Field(default=None, description="Deprecated, Experiment, Public or Internal.")
    nodes_ready: list[Str] | None = Field(default=None, alias="nodesReady")
    nodes_failed: list[Str] | None = Field(default=None, alias="nodesFailed")
    conditions: list[Condition] | None = None
    observed_generation: Int | None = Field(default=None, alias="observedGeneration", ge=0)
