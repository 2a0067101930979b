"""The three OME model resources as whole objects: apiVersion, kind, metadata, spec, status.

`BaseModel` is namespaced; `ClusterBaseModel` and `FineTunedWeight` are cluster-scoped, as in
OME. The classes only check types; build them from untrusted input with
`modelferry.spec.parse.parse_resource`, which also applies the cross-field rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from modelferry.names import SKIP_CONFIG_PARSING_ANNOTATIONS, ModelKind
from modelferry.spec.basemodel import BaseModelSpec
from modelferry.spec.finetuned import FineTunedWeightSpec
from modelferry.spec.meta import ClosedWire, ObjectMeta
from modelferry.spec.status import ModelStatus
from modelferry.spec.storage import StorageSpec

ApiVersion = Literal["ome.io/v1beta1"]


class _Resource(ClosedWire):
    api_version: ApiVersion = Field(default="ome.io/v1beta1", alias="apiVersion")
    kind: str  # narrowed to a Literal by each subclass
    metadata: ObjectMeta
    spec: BaseModelSpec | FineTunedWeightSpec
    status: ModelStatus | None = None

    @property
    def model_kind(self) -> ModelKind:
        return ModelKind(self.kind)

    @property
    def storage(self) -> StorageSpec:
        return self.spec.storage

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as OME stores it (camelCase, `key` for the secret key, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class BaseModelResource(_Resource):
    """A model available to one namespace."""

    kind: Literal["BaseModel"] = "BaseModel"
    spec: BaseModelSpec


class ClusterBaseModelResource(_Resource):
    """A model available to the whole cluster."""

    kind: Literal["ClusterBaseModel"] = "ClusterBaseModel"
    spec: BaseModelSpec


class FineTunedWeightResource(_Resource):
    """Fine-tuned weights (LoRA, adapters, ...) on top of a base model; cluster-scoped."""

    kind: Literal["FineTunedWeight"] = "FineTunedWeight"
    spec: FineTunedWeightSpec


ModelResource = BaseModelResource | ClusterBaseModelResource | FineTunedWeightResource

RESOURCE_CLASSES: dict[ModelKind, type[ModelResource]] = {
    ModelKind.BASE_MODEL: BaseModelResource,
    ModelKind.CLUSTER_BASE_MODEL: ClusterBaseModelResource,
    ModelKind.FINE_TUNED_WEIGHT: FineTunedWeightResource,
}


def skip_config_parsing(resource: ModelResource) -> bool:
    """True when either skip-config-parsing annotation (OME's new or old key) is "true"."""
    annotations = resource.metadata.annotations or {}
    return any(annotations.get(key, "").lower() == "true" for key in SKIP_CONFIG_PARSING_ANNOTATIONS)
