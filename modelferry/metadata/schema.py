"""The result types of metadata parsing.

`ModelMetadata` is what goes onto an OME `BaseModel`/`ClusterBaseModel` spec: dumped with
`by_alias=True` its keys are exactly modelType, modelArchitecture, parameterCount,
modelParameterSize, maxTokens, dtype, quantization, modelCapabilities, modelFramework and
modelFormat. Everything the caller may want to know about *how* those values were found (family
known or not, exact or estimated count, warnings) lives on `ParseResult`, beside the metadata, so
it can never leak into the resource.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Capability names, as OME's model catalogue (config/models/*.yaml) and its serving chart use
# them. OME's Go enum still lists legacy names; `LEGACY_CAPABILITY_NAMES` maps ours onto those.
TEXT_TO_TEXT = "TEXT_TO_TEXT"
IMAGE_TEXT_TO_TEXT = "IMAGE_TEXT_TO_TEXT"
VIDEO_TEXT_TO_TEXT = "VIDEO_TEXT_TO_TEXT"
AUDIO_TEXT_TO_TEXT = "AUDIO_TEXT_TO_TEXT"
AUDIO_TO_TEXT = "AUDIO_TO_TEXT"
TEXT_TO_IMAGE = "TEXT_TO_IMAGE"
TEXT_TO_EMBEDDING = "TEXT_TO_EMBEDDING"
IMAGE_TEXT_TO_EMBEDDING = "IMAGE_TEXT_TO_EMBEDDING"
RERANK = "RERANK"
REWARD_SCORING = "REWARD_SCORING"

# Our name -> the legacy OME name(s) an older cluster may expect (CHAT is added separately, only
# when `ParseResult.chat_tuned` is True).
LEGACY_CAPABILITY_NAMES: dict[str, tuple[str, ...]] = {
    TEXT_TO_TEXT: ("TEXT_GENERATION",),
    IMAGE_TEXT_TO_TEXT: ("TEXT_GENERATION", "VISION"),
    VIDEO_TEXT_TO_TEXT: ("VISION",),
    TEXT_TO_EMBEDDING: ("EMBEDDING",),
    IMAGE_TEXT_TO_EMBEDDING: ("EMBEDDING", "VISION"),
    RERANK: ("RERANK",),
}

ParameterSource = Literal["safetensors", "estimate", "none"]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel, extra="forbid")


class ModelFramework(_Wire):
    name: str
    version: str | None = None


class ModelFormat(_Wire):
    name: str
    version: str | None = None


class ModelMetadata(_Wire):
    """What parsing a model directory contributes to an OME model spec."""

    model_type: str | None = None
    model_architecture: str | None = None
    parameter_count: int | None = Field(default=None, ge=0)
    model_parameter_size: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    dtype: str | None = None
    quantization: str | None = None
    model_capabilities: list[str] = Field(default_factory=list)
    model_framework: ModelFramework
    model_format: ModelFormat


class ParseResult(BaseModel):
    """`metadata` plus how it was obtained. Only `metadata` belongs on a resource."""

    model_config = ConfigDict(frozen=True)

    metadata: ModelMetadata
    family: str | None = None  # the parser family used, e.g. "llama", "deepseek"; None if unknown
    family_known: bool = False
    parameter_source: ParameterSource = "none"
    warnings: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()  # config keys the estimate derived or assumed (each also a warning)
    chat_tuned: bool | None = None  # True/False only on a clear name signal; None when unknown
    quantization_method: str | None = None  # quant_method exactly as the config spells it
    weight_dtypes: dict[str, int] = Field(default_factory=dict)  # safetensors dtype -> parameters
    weight_files: tuple[str, ...] = ()

    def legacy_capabilities(self) -> list[str]:
        """The capabilities in OME's legacy vocabulary (TEXT_GENERATION, CHAT, VISION, ...)."""
        out: list[str] = []
        for cap in self.metadata.model_capabilities:
            for name in LEGACY_CAPABILITY_NAMES.get(cap, ()):
                if name not in out:
                    out.append(name)
        if self.chat_tuned and "TEXT_GENERATION" in out:
            out.append("CHAT")
        return out
