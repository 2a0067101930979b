"""Kubernetes node affinity as it appears on the wire (camelCase), shared by the spec models and
the placement rules. Only the parts that decide placement are modelled; unknown keys are kept so
a resource round-trips unchanged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class NodeSelectorRequirement(_Wire):
    key: str = Field(min_length=1)
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt (checked by placement)
    values: list[str] | None = None


class NodeSelectorTerm(_Wire):
    match_expressions: list[NodeSelectorRequirement] | None = Field(default=None, alias="matchExpressions")
    match_fields: list[NodeSelectorRequirement] | None = Field(default=None, alias="matchFields")


class NodeSelector(_Wire):
    node_selector_terms: list[NodeSelectorTerm] = Field(alias="nodeSelectorTerms")


class PreferredSchedulingTerm(_Wire):
    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(_Wire):
    required: NodeSelector | None = Field(
        default=None, alias="requiredDuringSchedulingIgnoredDuringExecution"
    )
    # Preferences do not decide placement for a model download; kept for round-tripping.
    preferred: list[PreferredSchedulingTerm] | None = Field(
        default=None, alias="preferredDuringSchedulingIgnoredDuringExecution"
    )
