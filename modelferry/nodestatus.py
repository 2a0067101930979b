"""What a node reports about a model, in exactly OME's formats.

- A ConfigMap per node (name = node name, in the agent namespace, label
  `models.ome/basemodel-status: "true"`) with one key per model (`{namespace}_{name}` for a
  BaseModel, `{name}` for a ClusterBaseModel) whose value is JSON
  `{"name", "status": Ready|Updating|Failed|Deleted, "config": {...parsed metadata...}}`.
- A node label `models.ome/<model uid>=Ready|Updating|Failed`.

Pure functions: the activity reads the ConfigMap, applies these, and writes with conflict retries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelferry.messages import ModelRef
from modelferry.names import CONFIGMAP_STATUS_LABEL, configmap_key, node_label_key
from modelferry.spec.status import NodeModelStatus

__all__ = ["NodeModelStatus", "entry_key", "entry_value"]


def entry_key(ref: ModelRef) -> str:
    return configmap_key(kind=ref.kind, namespace=ref.namespace, name=ref.name)


def entry_value(*, ref: ModelRef, status: NodeModelStatus, config: Mapping[str, Any] | None) -> str:
    body: dict[str, Any] = {"name": ref.name, "status": status.value}
    if config:
        body["config"] = dict(config)
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def with_entry(
    data: Mapping[str, str] | None,
    *,
    ref: ModelRef,
    status: NodeModelStatus,
    config: Mapping[str, Any] | None,
) -> dict[str, str]:
    """The ConfigMap data after setting this model's entry. A status change without new metadata
    keeps the config already recorded (an Updating entry for a re-download keeps the old config)."""
    out = dict(data or {})
    key = entry_key(ref)
    if config is None and key in out:
        try:
            previous = json.loads(out[key]).get("config")
        except (ValueError, AttributeError):
            previous = None
        config = previous if isinstance(previous, dict) else None
    out[key] = entry_value(ref=ref, status=status, config=config)
    return out


def without_entry(data: Mapping[str, str] | None, *, ref: ModelRef) -> dict[str, str]:
    out = dict(data or {})
    out.pop(entry_key(ref), None)
    return out


def configmap_labels() -> dict[str, str]:
    return {CONFIGMAP_STATUS_LABEL: "true"}


def node_label_patch(*, model_uid: str, status: NodeModelStatus | None) -> dict[str, Any]:
    """A strategic-merge patch for the node; `None` removes the label. Deleted removes it too:
    OME's scheduler only knows Ready/Updating/Failed."""
    value = None if status in (None, NodeModelStatus.DELETED) else status.value  # type: ignore[union-attr]
    return {"metadata": {"labels": {node_label_key(model_uid): value}}}
