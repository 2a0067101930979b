"""`spec` of FineTunedWeight (OME's `FineTunedWeightSpec`): weights trained on top of a base model.

Required fields follow OME's CRD: baseModelRef, modelType, hyperParameters and storage.
`hyperParameters` and `configuration` are free-form objects (any keys, any values).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from modelferry.spec.meta import Bool, ClosedWire, Str
from modelferry.spec.storage import StorageSpec


class ObjectReference(ClosedWire):
    """A reference by name (and namespace, for a namespaced target)."""

    name: Str = Field(min_length=1)
    namespace: Str | None = None


class FineTunedWeightSpec(ClosedWire):
    """Desired state of a FineTunedWeight."""

    # OME's ModelExtensionSpec, inlined.
    display_name: Str | None = Field(default=None, alias="displayName")
    version: Str | None = None
    disabled: Bool | None = None
    vendor: Str | None = None
    compartment_id: Str | None = Field(default=None, alias="compartmentID")

    base_model_ref: ObjectReference = Field(alias="baseModelRef")
    model_type: Str = Field(alias="modelType", min_length=1, description="e.g. LoRA, Adapter, Distillation.")
    hyper_parameters: dict[str, Any] = Field(alias="hyperParameters")
    configuration: dict[str, Any] | None = None
    storage: StorageSpec
    training_job_ref: ObjectReference | None = Field(default=None, alias="trainingJobRef")
