"""Kubernetes node affinity as it appears on the wire (camelCase), shared by the spec models and
the placement rules. Only the parts that decide placement are modelled; unknown keys are kept so
a resource round-trips unchanged. The schema annotations (int32, atomic maps) are OME's CRD's,
which are Kubernetes' own for these types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

_INT32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1, json_schema_extra={"format": "int32"})]


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class NodeSelectorRequirement(_Wire):
    key: str = Field(min_length=1)
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt (checked by placement)
    values: list[str] | None = None


class NodeSelectorTerm(_Wire):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_expressions: list[NodeSelectorRequirement] | None = Field(default=None, alias="matchExpressions")
    match_fields: list[NodeSelectorRequirement] | None = Field(default=None, alias="matchFields")


class NodeSelector(_Wire):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    node_selector_terms: list[NodeSelectorTerm] = Field(alias="nodeSelectorTerms")


class PreferredSchedulingTerm(_Wire):
    weight: _INT32
    preference: NodeSelectorTerm


class NodeAffinity(_Wire):
    required: NodeSelector | None = Field(
        default=None, alias="requiredDuringSchedulingIgnoredDuringExecution"
    )
    # Preferences do not decide placement for a model download; kept for round-tripping.
    preferred: list[PreferredSchedulingTerm] | None = Field(
        default=None, alias="preferredDuringSchedulingIgnoredDuringExecution"
    )
