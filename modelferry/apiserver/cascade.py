"""Deletions that set off others, done at once where a real cluster's controllers do them a little
later: finalizers holding an object, a CRD taking its objects with it, a namespace emptying itself
before it goes, and dependents following their owners (background propagation).

Called by the store with its lock held; every step is an ordinary store write, so watchers see
the same MODIFIED/DELETED sequence a real cluster produces.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .crds import CLEANUP_FINALIZER, terminating_status
from .meta import now_rfc3339
from .resources import CRD_STORAGE_KEY, NAMESPACE_STORAGE_KEY, ResourceType

if TYPE_CHECKING:
    from .store import Store


def delete_object(store: Store, rt: ResourceType, existing: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Delete now, or mark as deleting while finalizers (or namespace contents) remain.
    Returns the object as it now stands and whether it is gone."""
    meta = existing["metadata"]
    is_namespace = rt.storage_key == NAMESPACE_STORAGE_KEY
    if not meta.get("finalizers") and not is_namespace:
        return store.remove(rt, existing), True
    if meta.get("deletionTimestamp"):
        return existing, False
    marked = _mark_deleting(store, rt, existing)
    if rt.storage_key == CRD_STORAGE_KEY:
        _drain(store, _crd_storage_key(marked), namespace=None)
        _finish_crd(store, _crd_storage_key(marked))
    elif is_namespace:
        _drain_namespace(store, meta["name"])
        _finish_namespace(store, meta["name"])
    current = store.bucket(rt.storage_key).get(store.key(rt, meta.get("namespace"), meta["name"]))
    return (current, False) if current is not None else (marked, True)


def _mark_deleting(store: Store, rt: ResourceType, existing: dict[str, Any]) -> dict[str, Any]:
    """Set deletionTimestamp (bumping generation, as a real server does) and show Terminating."""
    marked = copy.deepcopy(existing)
    meta = marked["metadata"]
    meta["deletionTimestamp"] = now_rfc3339()
    meta["deletionGracePeriodSeconds"] = 0
    if meta.get("generation"):
        meta["generation"] += 1
    if rt.storage_key == CRD_STORAGE_KEY:
        marked["status"] = terminating_status(marked.get("status") or {})
    elif rt.storage_key == NAMESPACE_STORAGE_KEY:
        marked["status"] = {**(marked.get("status") or {}), "phase": "Terminating"}
    store.commit(rt, "MODIFIED", marked, old=existing)
    return marked


def after_removal(store: Store, rt: ResourceType, gone: dict[str, Any]) -> None:
    """What an object's removal completes: its CRD's kind, its terminating CRD or namespace,
    its dependents."""
    if rt.storage_key == CRD_STORAGE_KEY:
        _unserve(store, _crd_storage_key(gone))
    if rt.custom:
        _finish_crd(store, rt.storage_key)
    if rt.namespaced:
        _finish_namespace(store, gone["metadata"].get("namespace", ""))
    _collect_dependents(store, gone["metadata"].get("uid", ""))


def _crd_storage_key(crd: dict[str, Any]) -> str:
    return f"{crd['spec']['group']}/{crd['spec']['names']['plural']}"


def _unserve(store: Store, storage_key: str) -> None:
    """A removed CRD's kind goes; objects left (its finalizer was removed by hand) go with it."""
    rt = store.registry.any_version(storage_key)
    if rt is not None:
        for obj in list(store.bucket(storage_key).values()):
            store.commit(rt, "DELETED", copy.deepcopy(obj), old=obj)
    store.drop_kind(storage_key)


def _drain(store: Store, storage_key: str, *, namespace: str | None) -> None:
    rt = store.registry.any_version(storage_key)
    if rt is None:
        return
    bucket = store.bucket(storage_key)
    for key, obj in list(bucket.items()):
        if (namespace is None or key[0] == namespace) and bucket.get(key) is obj:
            delete_object(store, rt, obj)


def _finish_crd(store: Store, storage_key: str) -> None:
    """Once a deleting CRD has no objects left, drop its cleanup finalizer (which removes it)."""
    crd = store.crd_for(storage_key)
    if crd is None or not crd["metadata"].get("deletionTimestamp") or store.bucket(storage_key):
        return
    if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
        return
    updated = copy.deepcopy(crd)
    updated["metadata"]["finalizers"] = [f for f in crd["metadata"]["finalizers"] if f != CLEANUP_FINALIZER]
    crd_rt = store.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    assert crd_rt is not None
    store.replace(crd_rt, crd, updated, subresource=None, dry_run=False)


def _namespaced_keys(store: Store) -> list[str]:
    return [
        k for k in store.storage_keys() if (rt := store.registry.any_version(k)) is not None and rt.namespaced
    ]


def _drain_namespace(store: Store, namespace: str) -> None:
    for storage_key in _namespaced_keys(store):
        _drain(store, storage_key, namespace=namespace)


def _finish_namespace(store: Store, namespace: str) -> None:
    """Remove a terminating namespace once nothing is left in it (and no finalizer holds it)."""
    ns = store.bucket(NAMESPACE_STORAGE_KEY).get(("", namespace))
    if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
        return
    if any(key[0] == namespace for k in _namespaced_keys(store) for key in store.bucket(k)):
        return
    ns_rt = store.registry.get("", "v1", "namespaces")
    assert ns_rt is not None
    store.remove(ns_rt, ns)


def _collect_dependents(store: Store, uid: str) -> None:
    """Background propagation: delete objects whose owners are all gone, one of them `uid`."""
    if not uid:
        return
    for storage_key in store.storage_keys():
        rt = store.registry.any_version(storage_key)
        if rt is None:
            continue
        bucket = store.bucket(storage_key)
        for key, obj in list(bucket.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs) or bucket.get(key) is not obj:
                continue
            if not any(store.owner_exists(r.get("uid", "")) for r in refs):
                delete_object(store, rt, obj)
