"""Which spec changes need node work (pure).

Writing parsed metadata back into the spec bumps `metadata.generation`; that must not re-download a
model everywhere. A node's delivery depends only on where the bytes come from and where they go,
so nodes are re-delivered when this fingerprint changes, not on every generation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# A typed spec (messages.ModelSpec) or its wire JSON; None for a cleanup-only revision.
SpecLike = BaseModel | Mapping[str, Any] | None


def wire_spec(spec: SpecLike) -> Mapping[str, Any]:
    """The spec as OME's JSON (camelCase, `key` for the Secret): what the messages carry on the
    wire and what the fingerprint hashes."""
    if spec is None:
        return {}
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return spec


_DELIVERY_KEYS = ("storageUri", "path", "parameters", "storageKey", "key", "downloadPolicy")


def delivery_fingerprint(spec: SpecLike) -> str:
    storage = wire_spec(spec).get("storage") or {}
    relevant = {k: storage.get(k) for k in _DELIVERY_KEYS if storage.get(k) is not None}
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Spec fields that describe the model's content. The parser fills them when the resource leaves
# them empty, and with parsing skipped they are what the node's ConfigMap entry reports.
METADATA_SPEC_FIELDS = (
    "modelType",
    "modelArchitecture",
    "modelParameterSize",
    "maxTokens",
    "modelCapabilities",
    "modelFormat",
    "modelFramework",
    "quantization",
)


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or value == 0


def spec_metadata(spec: SpecLike) -> dict[str, Any]:
    """The metadata a spec already carries."""
    wire = wire_spec(spec)
    return {k: wire[k] for k in METADATA_SPEC_FIELDS if not is_empty(wire.get(k))}


def fill_empty_spec_fields(spec: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields to set: parsed values only where the spec has none (never overwrite)."""
    return {
        key: metadata[key]
        for key in METADATA_SPEC_FIELDS
        if not is_empty(metadata.get(key)) and is_empty(spec.get(key))
    }
