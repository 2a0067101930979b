"""What a node reports about a model, in the documented formats and in OME's current ones.

OME's seed documents and its code today disagree, and a drop-in must satisfy both readers:

- documented: a ConfigMap per node (name = node name, in the agent namespace, label
  `models.ome/basemodel-status: "true"`) with one key per model (`{namespace}_{name}` for a
  BaseModel, `{name}` for a ClusterBaseModel) whose value is JSON
  `{"name", "status": Ready|Updating|Failed|Deleted, "config": {...parsed metadata...}}`, and a
  node label `models.ome/<model uid>=Ready|Updating|Failed`.
- OME's code: the same ConfigMap, keyed `{namespace}.basemodel.{name}` / `clusterbasemodel.{name}`
  with a `ModelEntry` value (`name`, `status`, `config` holding only `ModelConfig`'s fields and
  types, `progress` while a download runs), and a node label `models.ome.io/{namespace}.basemodel.{name}` /
  `models.ome.io/clusterbasemodel.{name}` that InferenceService pods select on. Names are in
  `modelferry.names`. OME names no FineTunedWeight: one gets only the documented formats.

While a node downloads, both entries carry a `progress` object (`messages.NodeProgress`: OME's
`DownloadProgress` field names; the documented entry also keeps `etaSeconds`); any write without
one, a final Ready or Failed included, drops it.

A `ReportFormat` picks which are written; every write also clears the formats not picked, and a
removal clears all of them, so switching formats never strands an entry or a label.

Pure functions: the activity reads the ConfigMap, applies these, and writes with conflict retries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelferry.messages import ModelRef, NodeProgress
from modelferry.names import (
    CONFIGMAP_KEY_MAX,
    CONFIGMAP_STATUS_LABEL,
    NODE_ANNOTATION,
    OME_LABEL_DOMAIN,
    ModelKind,
    ReportFormat,
    configmap_key,
    node_label_key,
    ome_configmap_key,
    ome_node_label_key,
)
from modelferry.spec.status import NodeModelStatus

__all__ = [
    "NodeModelStatus",
    "ReportFormat",
    "entry_key",
    "entry_keys",
    "entry_value",
    "ome_entry_key",
    "ome_entry_value",
]

_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


def entry_key(ref: ModelRef) -> str:
    return configmap_key(kind=ref.kind, namespace=ref.namespace, name=ref.name)


def _has_ome_names(ref: ModelRef) -> bool:
    if ref.kind is ModelKind.CLUSTER_BASE_MODEL:
        return True
    return ref.kind is ModelKind.BASE_MODEL and bool(ref.namespace)


def ome_entry_key(ref: ModelRef) -> str | None:
    """OME's ConfigMap key for this model; None for what OME does not report (FineTunedWeight)."""
    if not _has_ome_names(ref):
        return None
    return ome_configmap_key(kind=ref.kind, namespace=ref.namespace, name=ref.name)


def ome_label_key(ref: ModelRef) -> str | None:
    """OME's node label for this model; None for what OME does not report (FineTunedWeight)."""
    if not _has_ome_names(ref):
        return None
    return ome_node_label_key(kind=ref.kind, namespace=ref.namespace, name=ref.name)


def entry_value(
    *,
    ref: ModelRef,
    status: NodeModelStatus,
    config: Mapping[str, Any] | None,
    progress: NodeProgress | None = None,
) -> str:
    """The documented entry: the parsed metadata as it is, and the download's progress if one runs."""
    body: dict[str, Any] = {"name": ref.name, "status": status.value}
    if config:
        body["config"] = dict(config)
    if progress is not None:
        body["progress"] = progress.model_dump(by_alias=True, exclude_none=True)
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


# --- OME's ModelEntry / ModelConfig -------------------------------------------------------------
#
# OME's controller decodes an entry into typed Go structs and skips the node's report when that
# fails, so a value of the wrong type would cost a node, not a field. Each field is therefore
# shaped to its Go type, and empty values are left out as Go's `omitempty` leaves them out.


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _texts(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [v for v in value if isinstance(v, str) and v] or None


def _int32(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _INT32_MAX
    return value if ok else None


def _name_version(value: Any) -> dict[str, str] | None:
    """A `map[string]string` of the `name` and `version` OME reads from a format or framework."""
    if not isinstance(value, Mapping):
        return None
    out = {k: value[k] for k in ("name", "version") if _text(value.get(k))}
    return out or None


# ModelConfig's JSON name -> the shaper for its Go type, in ModelConfig's field order. Our metadata
# uses the same names (it follows OME's spec fields, whose JSON names ModelConfig reuses); our
# extra keys (parameterCount, dtype) have no ModelConfig field and are left out.
_OME_MODEL_CONFIG: dict[str, Callable[[Any], Any]] = {
    "modelType": _text,
    "modelArchitecture": _text,
    "modelFramework": _name_version,
    "modelFormat": _name_version,
    "modelParameterSize": _text,
    "maxTokens": _int32,
    "modelCapabilities": _texts,
    "apiCapabilities": _texts,
    "quantization": _text,
}


def ome_model_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our parsed metadata as OME's `ModelConfig` JSON: its field names and types, empties omitted."""
    out: dict[str, Any] = {}
    for key, shape in _OME_MODEL_CONFIG.items():
        value = shape((config or {}).get(key))
        if value is not None:
            out[key] = value
    return out


def _uint(limit: int) -> Callable[[Any], int | None]:
    def shape(value: Any) -> int | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
        return value if ok else None

    return shape


def _float64(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# DownloadProgress's JSON name -> the shaper for its Go type, in its field order (no omitempty
# there, but a missing field decodes as zero, so a field we cannot shape is left out).
_OME_DOWNLOAD_PROGRESS: dict[str, Callable[[Any], Any]] = {
    "phase": _string,
    "totalBytes": _uint(_UINT64_MAX),
    "completedBytes": _uint(_UINT64_MAX),
    "totalFiles": _uint(_UINT32_MAX),
    "completedFiles": _uint(_UINT32_MAX),
    "speedBytesPerSec": _float64,
    "lastUpdated": _string,
}


def ome_download_progress(progress: NodeProgress | Mapping[str, Any]) -> dict[str, Any]:
    """A progress as OME's `DownloadProgress` JSON: its fields and types only (no etaSeconds)."""
    wire = progress.model_dump(by_alias=True) if isinstance(progress, NodeProgress) else progress
    out: dict[str, Any] = {}
    for key, shape in _OME_DOWNLOAD_PROGRESS.items():
        value = shape(wire.get(key))
        if value is not None:
            out[key] = value
    return out


def ome_entry_value(
    *,
    ref: ModelRef,
    status: NodeModelStatus,
    config: Mapping[str, Any] | None,
    progress: NodeProgress | Mapping[str, Any] | None = None,
) -> str:
    """OME's `ModelEntry` JSON, fields in its struct order. `progress` (OME's `DownloadProgress`:
    phase, totalBytes, completedBytes, totalFiles, completedFiles, speedBytesPerSec, lastUpdated)
    is optional there and omitted when None."""
    body: dict[str, Any] = {"name": ref.name, "status": status.value}
    shaped = ome_model_config(config)
    if shaped:
        body["config"] = shaped
    if progress is not None:
        body["progress"] = ome_download_progress(progress)
    return json.dumps(body, separators=(",", ":"))


def entry_keys(ref: ModelRef) -> list[str]:
    """Every key this model's entry may have, documented first."""
    ome = ome_entry_key(ref)
    return [entry_key(ref)] + ([ome] if ome is not None else [])


def _recorded_config(data: Mapping[str, str], ref: ModelRef) -> dict[str, Any] | None:
    for key in entry_keys(ref):
        try:
            previous = json.loads(data[key]).get("config")
        except (KeyError, ValueError, AttributeError):
            continue
        if isinstance(previous, dict):
            return previous
    return None


def with_entry(
    data: Mapping[str, str] | None,
    *,
    ref: ModelRef,
    status: NodeModelStatus,
    config: Mapping[str, Any] | None,
    formats: ReportFormat = ReportFormat.BOTH,
    progress: NodeProgress | None = None,
) -> dict[str, str]:
    """The ConfigMap data after setting this model's entry in `formats` (and dropping it from the
    others). A status change without new metadata keeps the config already recorded (an Updating
    entry for a re-download keeps the old config), whichever format recorded it. The entry carries
    `progress` only when given: every other write drops it."""
    out = without_entry(data, ref=ref)
    if config is None:
        config = _recorded_config(data or {}, ref)
    docs_key = entry_key(ref)
    # A documented key past Kubernetes' limit would make the API refuse the whole ConfigMap, and
    # with it every other model's entry on the node: it is left out (OME's key is always valid).
    if formats.writes_docs and len(docs_key) <= CONFIGMAP_KEY_MAX:
        out[docs_key] = entry_value(ref=ref, status=status, config=config, progress=progress)
    ome_key = ome_entry_key(ref)
    if formats.writes_ome and ome_key is not None:
        out[ome_key] = ome_entry_value(ref=ref, status=status, config=config, progress=progress)
    return out


def entry_status(data: Mapping[str, str] | None, *, ref: ModelRef) -> str | None:
    """The status this model's entry records, whichever format holds it; None without an entry."""
    for key in entry_keys(ref):
        try:
            status = json.loads((data or {})[key]).get("status")
        except (KeyError, ValueError, AttributeError):
            continue
        if isinstance(status, str):
            return status
    return None


def with_progress(
    data: Mapping[str, str] | None,
    *,
    ref: ModelRef,
    status: NodeModelStatus,
    config: Mapping[str, Any] | None,
    progress: NodeProgress,
    formats: ReportFormat = ReportFormat.BOTH,
) -> dict[str, str]:
    """`with_entry` with `progress`, but only over an entry that still records `status`: a progress
    report never creates an entry (a removed model stays removed) nor overwrites another status
    (a late report never hides the Ready or Failed that ended the download)."""
    if entry_status(data, ref=ref) != status.value:
        return dict(data or {})
    return with_entry(data, ref=ref, status=status, config=config, formats=formats, progress=progress)


def without_entry(data: Mapping[str, str] | None, *, ref: ModelRef) -> dict[str, str]:
    """The ConfigMap data without this model's entry, in every format."""
    out = dict(data or {})
    for key in entry_keys(ref):
        out.pop(key, None)
    return out


def configmap_labels() -> dict[str, str]:
    return {CONFIGMAP_STATUS_LABEL: "true"}


def report_node(configmap: Mapping[str, Any]) -> str:
    """The node a report ConfigMap speaks for: its own name, or for an overflow ConfigMap
    (`modelferry.reportsplit`) the node its annotation names."""
    meta = configmap.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(NODE_ANNOTATION) or meta.get("name", ""))


def _label_value(status: NodeModelStatus | None) -> str | None:
    # Deleted removes the label: OME's readers only know Ready/Updating/Failed.
    return None if status is None or status is NodeModelStatus.DELETED else status.value


def node_label_patch(*, model_uid: str, status: NodeModelStatus | None) -> dict[str, Any]:
    """A strategic-merge patch for the documented label only; `None` removes it, as does Deleted."""
    return {"metadata": {"labels": {node_label_key(model_uid): _label_value(status)}}}


def model_labels_patch(
    *, ref: ModelRef, status: NodeModelStatus | None, formats: ReportFormat = ReportFormat.BOTH
) -> dict[str, Any]:
    """A strategic-merge patch setting this model's node labels in `formats` and removing the
    others; `None` (or Deleted) removes them all. The documented label needs the uid: without one
    it is left alone. The patch's label map is empty when there is nothing to write."""
    value = _label_value(status)
    labels: dict[str, str | None] = {}
    if ref.uid:
        labels[node_label_key(ref.uid)] = value if formats.writes_docs else None
    ome = ome_label_key(ref)
    if ome is not None:
        labels[ome] = value if formats.writes_ome else None
    return {"metadata": {"labels": labels}}


# A node label modelferry wrote for a model it placed there, in either format (`model_labels_patch`).
_MODEL_LABEL_PREFIXES = (node_label_key(""), f"{OME_LABEL_DOMAIN}/")
# Failed and Updating count too: a failed or running update leaves the previous version served.
_HELD_VALUES = frozenset(s.value for s in NodeModelStatus if s is not NodeModelStatus.DELETED)


def holds_models(labels: Mapping[str, str]) -> bool:
    """True when the node's labels report at least one model modelferry placed on it."""
    return any(k.startswith(_MODEL_LABEL_PREFIXES) and v in _HELD_VALUES for k, v in labels.items())


def nodes_holding_models(nodes: Iterable[tuple[str, Mapping[str, str]]]) -> list[str]:
    """The names, sorted, of the nodes (name, labels) that hold at least one model."""
    return sorted(name for name, labels in nodes if name and holds_models(labels))
