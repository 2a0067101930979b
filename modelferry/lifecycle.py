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

_DELIVERY_KEYS = ("storageUri", "path", "parameters", "storageKey", "key", "downloadPolicy")


def delivery_fingerprint(spec: Mapping[str, Any]) -> str:
    storage = spec.get("storage") or {}
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


def spec_metadata(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata a spec already carries."""
    return {k: spec[k] for k in METADATA_SPEC_FIELDS if not is_empty(spec.get(k))}


def fill_empty_spec_fields(spec: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields to set: parsed values only where the spec has none (never overwrite)."""
    return {
        key: metadata[key]
        for key in METADATA_SPEC_FIELDS
        if not is_empty(metadata.get(key)) and is_empty(spec.get(key))
    }
