"""`spec` of BaseModel and ClusterBaseModel (OME's `BaseModelSpec`), field for field.

The field set is OME v1beta1's, including the fields the model agent fills in from the model's
`config.json` (modelType, modelArchitecture, modelParameterSize, maxTokens, modelConfiguration).
Free-text fields stay free text (OME's CRD puts no enum on capabilities, serving modes or
quantization, and its own model catalogue uses capability names outside its Go enum).

`modelConfiguration` is an object in OME's CRD, but some tools write it as a JSON string; both
are accepted and kept as given. `model_configuration_object()` gives the object either way.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema, field_validator

from modelferry.spec.meta import ATOMIC_MAP, CRD_DEFAULT, Bool, ClosedWire, Int32, Int64, Str, StrMap
from modelferry.spec.storage import StorageSpec

# Untyped + preserve-unknown-fields is the structural-schema way to say "any JSON value"; it is
# the only way the API server accepts both the object and the JSON-string form.
_ANY_JSON = WithJsonSchema(
    {
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "Model configuration: an object, or the same object as a JSON string.",
    }
)


class ModelFormat(ClosedWire):
    """Format of the stored weights, e.g. safetensors; used to pick a serving runtime."""

    name: Str
    version: Str | None = None
    operator: Str | None = Field(
        default=None,
        description="Equal, GreaterThan or GreaterThanOrEqual.",
        json_schema_extra={CRD_DEFAULT: "Equal"},
    )
    weight: Int64 | None = Field(default=None, json_schema_extra={CRD_DEFAULT: 1})


class ModelFramework(ClosedWire):
    """Library the model is written for, e.g. transformers."""

    name: Str
    version: Str | None = None
    operator: Str | None = Field(
        default=None,
        description="Equal, GreaterThan or GreaterThanOrEqual.",
        json_schema_extra={CRD_DEFAULT: "Equal"},
    )
    weight: Int64 | None = Field(default=None, json_schema_extra={CRD_DEFAULT: 1})


class DiffusionComponent(ClosedWire):
    library: Str | None = None
    type: Str | None = None


class DiffusionPipeline(ClosedWire):
    """Components of a diffusion pipeline (OME's DiffusionPipelineSpec)."""

    class_name: Str | None = Field(default=None, alias="className")
    scheduler: DiffusionComponent | None = None
    text_encoder: DiffusionComponent | None = Field(default=None, alias="textEncoder")
    tokenizer: DiffusionComponent | None = None
    transformer: DiffusionComponent | None = None
    vae: DiffusionComponent | None = None
    additional_components: dict[Str, DiffusionComponent] | None = Field(
        default=None, alias="additionalComponents", json_schema_extra=ATOMIC_MAP
    )


class BaseModelSpec(ClosedWire):
    """Desired state of a BaseModel or ClusterBaseModel."""

    # OME's ModelExtensionSpec, inlined.
    display_name: Str | None = Field(default=None, alias="displayName")
    version: Str | None = None
    disabled: Bool | None = None
    vendor: Str | None = None
    compartment_id: Str | None = Field(default=None, alias="compartmentID")

    model_format: ModelFormat | None = Field(default=None, alias="modelFormat")
    model_framework: ModelFramework | None = Field(default=None, alias="modelFramework")
    model_type: Str | None = Field(default=None, alias="modelType", description="config.json model_type.")
    model_architecture: Str | None = Field(default=None, alias="modelArchitecture")
    quantization: Str | None = Field(default=None, description="e.g. fp8, fbgemm_fp8, int4.")
    model_parameter_size: Str | None = Field(
        default=None, alias="modelParameterSize", description="Human-readable size, e.g. 7B."
    )
    model_capabilities: list[Str] | None = Field(default=None, alias="modelCapabilities")
    api_capabilities: list[Str] | None = Field(default=None, alias="apiCapabilities")
    model_configuration: Annotated[dict[str, Any] | str | None, _ANY_JSON] = Field(
        default=None, alias="modelConfiguration"
    )
    storage: StorageSpec
    serving_mode: list[Str] | None = Field(default=None, alias="servingMode")
    max_tokens: Int32 | None = Field(default=None, alias="maxTokens", ge=1)
    diffusion_pipeline: DiffusionPipeline | None = Field(default=None, alias="diffusionPipeline")
    additional_metadata: StrMap | None = Field(default=None, alias="additionalMetadata")

    @field_validator("model_configuration", mode="plain")
    @classmethod
    def _object_or_json_string(cls, value: Any) -> dict[str, Any] | str | None:
        if value is None or isinstance(value, dict):
            return value
        if isinstance(value, str):
            _json_object(value)
            return value
        raise ValueError("must be an object or a JSON string holding an object")

    def model_configuration_object(self) -> dict[str, Any] | None:
        """`modelConfiguration` as an object, whichever form it was given in."""
        if isinstance(self.model_configuration, str):
            return _json_object(self.model_configuration)
        return self.model_configuration


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"is a string but not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError("is a JSON string but not of an object")
    return value
