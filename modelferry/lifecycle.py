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


# The storage keys each fingerprint version hashes. A new version is added, never an old one
# changed: outcomes recorded under an older version are compared with that version's keys
# (`fingerprint_matches`), so changing the keys does not re-download every model.
_DELIVERY_KEYS: dict[int, tuple[str, ...]] = {
    1: ("storageUri", "path", "parameters", "storageKey", "key", "downloadPolicy"),
}
FINGERPRINT_VERSION = 1  # what `delivery_fingerprint` computes by default


def delivery_fingerprint(spec: SpecLike, *, version: int = FINGERPRINT_VERSION) -> str:
    """16 hex digits; version 1 has no prefix (what outcomes recorded before versioning hold),
    later versions read `v<N>:<hex>`."""
    keys = _DELIVERY_KEYS[version]
    storage = wire_spec(spec).get("storage") or {}
    relevant = {k: storage.get(k) for k in keys if storage.get(k) is not None}
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return digest if version == 1 else f"v{version}:{digest}"


def fingerprint_version(fingerprint: str) -> int | None:
    """The version a recorded fingerprint was computed with; None when this code does not know it."""
    prefix, sep, _ = fingerprint.partition(":")
    if not sep:
        return 1
    if prefix.startswith("v") and prefix[1:].isdigit() and int(prefix[1:]) in _DELIVERY_KEYS:
        return int(prefix[1:])
    return None


def fingerprint_matches(recorded: str, spec: SpecLike) -> bool:
    """True when `spec` needs no new delivery over what `recorded` delivered, whichever fingerprint
    version recorded it."""
    version = fingerprint_version(recorded)
    return version is not None and recorded == delivery_fingerprint(spec, version=version)


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
    return refresh_parsed_fields(spec, metadata, filled={})[0]


# What the API server adds to a `modelFormat` / `modelFramework` the parser wrote (OME's CRD
# defaults): a value differing from what was written only by these is still the parser's.
_SERVER_DEFAULTS = {"operator": "Equal", "weight": 1}


def _same_as_written(current: Any, written: Any) -> bool:
    if isinstance(current, Mapping) and isinstance(written, Mapping):
        added = {k: v for k, v in current.items() if k not in written}
        return all(_SERVER_DEFAULTS.get(k) == v for k, v in added.items()) and all(
            current.get(k) == v for k, v in written.items()
        )
    return bool(current == written)


def refresh_parsed_fields(
    spec: Mapping[str, Any], metadata: Mapping[str, Any], *, filled: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec fields to set, the record of what the parser filled afterwards).

    `filled` is the record kept on the resource: each field the parser wrote, with the value it
    wrote. A field still holding that value is the parser's and takes the newly parsed value; a
    field a user set (empty before, or changed since the parser wrote it) is never touched; an
    empty field takes the parsed value and joins the record.
    """
    fill: dict[str, Any] = {}
    record: dict[str, Any] = {}
    for key in METADATA_SPEC_FIELDS:
        parsed = metadata.get(key)
        current = spec.get(key)
        ours = key in filled and _same_as_written(current, filled[key])
        if is_empty(parsed):
            if ours:
                record[key] = current  # the parser saw nothing new; what it wrote stays (and stays ours)
            continue
        if is_empty(current) or ours:
            if current != parsed:
                fill[key] = parsed
            record[key] = parsed
    return fill, record
