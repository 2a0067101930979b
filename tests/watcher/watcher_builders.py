"""Plain-dict builders for model and node objects, shaped as the API server sends them."""

from __future__ import annotations

from typing import Any

from modelferry.names import API_GROUP_VERSION, FINALIZER, ModelKind


def model_obj(
    name: str = "llama",
    *,
    kind: ModelKind = ModelKind.BASE_MODEL,
    namespace: str | None = "team-a",
    uid: str = "uid-1",
    generation: int = 1,
    uri: str = "hf://meta-llama/Llama-3-8B",
    node_selector: dict[str, str] | None = None,
    node_affinity: dict[str, Any] | None = None,
    disabled: bool | None = None,
    deleting: bool = False,
    finalizer: bool = False,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    resource_version: str = "1",
    spec_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    storage: dict[str, Any] = {"storageUri": uri, "path": f"/raid/models/{name}"}
    if node_selector is not None:
        storage["nodeSelector"] = node_selector
    if node_affinity is not None:
        storage["nodeAffinity"] = node_affinity
    spec: dict[str, Any] = {"storage": storage}
    if kind is ModelKind.FINE_TUNED_WEIGHT:
        spec.update(baseModelRef={"name": "base"}, modelType="LoRA", hyperParameters={})
    if disabled is not None:
        spec["disabled"] = disabled
    spec.update(spec_extra or {})
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid,
        "generation": generation,
        "resourceVersion": resource_version,
    }
    if kind.namespaced:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    if finalizer:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    obj: dict[str, Any] = {
        "apiVersion": API_GROUP_VERSION,
        "kind": kind.value,
        "metadata": meta,
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def node_obj(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}}
