"""Typed messages between the watcher, workflows and activities.

One model in, one model out (`<Verb><Noun>Input` / `<Verb><Noun>Result`); new fields always get
defaults so running workflows keep replaying. Nothing here ever carries a secret: a spec names the
Secret (`storageKey`), and only the node activity that needs it reads it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelferry.names import ModelKind


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ModelRef(_Message):
    """Identifies one model resource."""

    kind: ModelKind
    name: str
    namespace: str | None = None
    uid: str = ""

    def display(self) -> str:
        if self.namespace and self.kind is not ModelKind.CLUSTER_BASE_MODEL:
            return f"{self.kind.value}/{self.namespace}/{self.name}"
        return f"{self.kind.value}/{self.name}"


class ModelRevision(_Message):
    """A generation of a resource as the watcher saw it: the spec as wire JSON (camelCase)."""

    generation: int
    spec: dict[str, Any]
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str = ""


class NodeOutcome(_Message):
    """Where one node stands for one model."""

    node: str
    state: str  # NodeModelStatus value: Ready | Updating | Failed | Deleted
    reason: str = ""
    message: str = ""
    generation: int = 0
    revision: str = ""  # the source revision on disk (HF commit, listing digest)
    metadata: dict[str, Any] | None = None  # parsed metadata (ModelMetadata by alias)


class ModelWorkflowInput(_Message):
    ref: ModelRef
    revision: ModelRevision
    # Carried over continue_as_new so the new run knows what is already on which node.
    nodes: dict[str, NodeOutcome] = Field(default_factory=dict)
    delete_requested: bool = False
    spec_metadata_written_for: int = 0  # generation whose parsed metadata was written to the spec
