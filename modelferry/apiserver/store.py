"""The object store: every object of every kind, one global resourceVersion, and the write rules
a real API server applies (server-set metadata, optimistic concurrency, generation, the status
subresource, finalizers, graceful namespace and CRD deletion, owner-reference cascades).

One re-entrant lock serialises writes, as etcd's single revision counter does. Stored objects are
never modified in place: every write stores a fresh dict, so readers can serialise what they got
after releasing the lock. Cascades (CRD, namespace, owners) live in `cascade.py`.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from typing import Any

from . import cascade, errors
from .crds import crd_resource_types
from .patch import PatchError
from .resources import CRD_STORAGE_KEY, NAMESPACE_STORAGE_KEY, ResourceRegistry, ResourceType
from .rules import (
    SERVER_META,
    admit_custom,
    assign_name,
    checked_body,
    defaults_on_update,
    prepare_new,
    spec_of,
    validate,
    without,
)
from .seed import PROTECTED_NAMESPACES
from .watchhub import Bookmark, StoredEvent, Watcher, WatchHub

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]  # (namespace or "", name)
Matcher = Callable[[dict[str, Any]], bool]


def present(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as seen through one served version (CRD versions share one storage)."""
    return obj if obj.get("apiVersion") == rt.api_version else {**obj, "apiVersion": rt.api_version}


def _sort_key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


class Store:
    """Objects are addressed as `(rt, namespace, name)` everywhere; that triple stays positional,
    as in the API paths it mirrors, and every further argument is keyword-only."""

    def __init__(self, *, watch_window: int = 100, max_watch_backlog: int = 10_000) -> None:
        self.lock = threading.RLock()
        self.registry = ResourceRegistry()
        self._objects: dict[str, dict[ObjectKey, dict[str, Any]]] = {}
        self._uids: set[str] = set()
        self._rv = 0
        self._hub = WatchHub(window=watch_window)
        self._max_backlog = max_watch_backlog
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called (under the lock, so keep it cheap) after every committed change."""
        self._listeners.append(callback)

    @property
    def resource_version(self) -> int:
        return self._rv

    # --- low level ----------------------------------------------------------------------------

    def bucket(self, storage_key: str) -> dict[ObjectKey, dict[str, Any]]:
        return self._objects.setdefault(storage_key, {})

    def storage_keys(self) -> list[str]:
        return list(self._objects)

    def owner_exists(self, uid: str) -> bool:
        return uid in self._uids

    @staticmethod
    def key(rt: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        return (namespace or "" if rt.namespaced else "", name)

    def lookup(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.bucket(rt.storage_key).get(self.key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def _stamp(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def commit(
        self, rt: ResourceType, event_type: str, obj: dict[str, Any], *, old: dict[str, Any] | None
    ) -> None:
        """Store `obj` (or drop it for DELETED) under a fresh resourceVersion and tell watchers."""
        self._stamp(obj)
        meta = obj["metadata"]
        key = self.key(rt, meta.get("namespace"), meta["name"])
        if event_type == "DELETED":
            self.bucket(rt.storage_key).pop(key, None)
            self._uids.discard(meta.get("uid", ""))
        else:
            self.bucket(rt.storage_key)[key] = obj
            self._uids.add(meta["uid"])
        self._hub.record(rt.storage_key, StoredEvent(self._rv, event_type, obj, old))
        for callback in self._listeners:
            callback()

    # --- reads --------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            return present(rt, self.lookup(rt, namespace, name))

    def list(self, rt: ResourceType, *, matcher: Matcher) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            items = [present(rt, o) for o in self.bucket(rt.storage_key).values() if matcher(o)]
            return sorted(items, key=_sort_key), self._rv

    def watch(
        self, rt: ResourceType, *, matcher: Matcher, resource_version: str | None, send_initial_events: bool
    ) -> Watcher:
        """Register a watcher, queueing either the current state (as ADDED) or the history after
        `resource_version`; a version older than the kept history raises 410 Gone."""
        with self.lock:
            watcher = Watcher(matcher=matcher, max_backlog=self._max_backlog)
            if send_initial_events or resource_version in (None, "", "0"):
                for obj in sorted(self.bucket(rt.storage_key).values(), key=_sort_key):
                    if matcher(obj):
                        watcher.offer(StoredEvent(int(obj["metadata"]["resourceVersion"]), "ADDED", obj))
                if send_initial_events:
                    watcher.offer(Bookmark(self._rv, initial_events_end=True))
            else:
                for event in self._hub.history_since(
                    rt.storage_key, _parse_rv(resource_version), current=self._rv
                ):
                    watcher.offer(event)
            self._hub.add(rt.storage_key, watcher)
            return watcher

    def unwatch(self, rt: ResourceType, watcher: Watcher) -> None:
        with self.lock:
            self._hub.remove(rt.storage_key, watcher)

    def bookmark(self, watcher: Watcher) -> None:
        """Queue a bookmark behind every event already queued, so its version is safe to resume from."""
        with self.lock:
            watcher.offer(Bookmark(self._rv))

    def close_watches(self) -> None:
        with self.lock:
            self._hub.close_all()

    # --- create ---------------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Create an object; `strict` refuses fields a CRD schema does not know (else pruned)."""
        with self.lock:
            obj = self._new_object(rt, namespace, body, strict=strict)
            if not dry_run:
                self.commit(rt, "ADDED", obj, old=None)
                self._after_write(rt, obj)
            return obj

    def _new_object(
        self, rt: ResourceType, namespace: str | None, body: Any, *, strict: bool
    ) -> dict[str, Any]:
        obj = checked_body(rt, body)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise errors.bad_request("a namespace is required for namespaced resources")
            self._check_namespace_open(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if rt.custom:
            self._check_crd_open(rt)
        bucket = self.bucket(rt.storage_key)
        name = assign_name(rt, meta, taken=lambda n: self.key(rt, namespace, n) in bucket)
        if self.key(rt, namespace, name) in bucket:
            raise errors.already_exists(rt.plural, rt.group, name)
        prepare_new(rt, obj)
        return admit_custom(rt, obj, old=None, strict=strict)

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.bucket(NAMESPACE_STORAGE_KEY).get(("", namespace))
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                "namespaces",
                "",
                namespace,
                why=f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def crd_for(self, storage_key: str) -> dict[str, Any] | None:
        group, plural = storage_key.split("/", 1)
        return self.bucket(CRD_STORAGE_KEY).get(("", f"{plural}.{group}"))

    def _check_crd_open(self, rt: ResourceType) -> None:
        crd = self.crd_for(rt.storage_key)
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise errors.method_not_allowed(
                "create not allowed while custom resource definition is terminating"
            )

    # --- update and patch -----------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            existing = self.lookup(rt, namespace, name)
            new = checked_body(rt, body)
            meta = new["metadata"]
            if meta.get("name") not in (None, "", name):
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
                )
            if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            return self.replace(rt, existing, new, subresource=subresource, dry_run=dry_run, strict=strict)

    def replace(
        self,
        rt: ResourceType,
        existing: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Write `new` over `existing` with every update rule; a no-op writes nothing (as etcd)."""
        old_meta, meta = existing["metadata"], new["metadata"]
        name = old_meta["name"]
        if meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise errors.conflict(rt.plural, rt.group, name, why=errors.STALE_OBJECT)
        if meta.get("uid") not in (None, "", old_meta["uid"]):
            raise errors.uid_mismatch(rt.plural, rt.group, name, wanted=meta["uid"], actual=old_meta["uid"])
        if subresource == "status":
            result = {**copy.deepcopy(without(existing, "status")), "apiVersion": rt.api_version}
            if "status" in new:
                result["status"] = new["status"]
        else:
            result = new
            for field in (*SERVER_META, "name", "namespace"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            meta.pop("selfLink", None)
            if rt.status_subresource:
                result.pop("status", None)
                if "status" in existing:
                    result["status"] = copy.deepcopy(existing["status"])
            validate(rt, result, existing=existing)
            defaults_on_update(rt, result, existing)
        result = admit_custom(rt, result, old=existing, strict=strict)
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if without(result, "apiVersion") == without(existing, "apiVersion"):
            return present(rt, existing)
        if rt.generation and spec_of(rt, result) != spec_of(rt, existing):
            result["metadata"]["generation"] = int(old_meta.get("generation") or 0) + 1
        if dry_run:
            return result
        if old_meta.get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            self.remove(rt, existing)  # the last finalizer is gone: the deletion completes
            return result
        self.commit(rt, "MODIFIED", result, old=existing)
        self._after_write(rt, result)
        return result

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch_fn: Callable[[dict[str, Any]], Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        create: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Apply `patch_fn` to the current object and write the result with the update rules.
        With `create` (server-side apply), a missing object is created from it instead.
        Returns the object and whether it was created."""
        with self.lock:
            existing = self.bucket(rt.storage_key).get(self.key(rt, namespace, name))
            if existing is None:
                if create is None:
                    raise errors.not_found(rt.plural, rt.group, name)
                return self.create(rt, namespace, create, dry_run=dry_run, strict=strict), True
            try:
                patched = patch_fn(present(rt, existing))
            except PatchError as e:
                raise errors.unprocessable(str(e)) from None
            new = checked_body(rt, patched)
            written = self.replace(rt, existing, new, subresource=subresource, dry_run=dry_run, strict=strict)
            return written, False

    def _after_write(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == CRD_STORAGE_KEY:
            key = f"{obj['spec']['group']}/{obj['spec']['names']['plural']}"
            self.registry.replace_storage_key(key, crd_resource_types(obj))

    # --- delete ---------------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete or start deleting; returns the object and whether it is gone already."""
        with self.lock:
            existing = self.lookup(rt, namespace, name)
            meta = existing["metadata"]
            pre = preconditions or {}
            # A failed delete precondition names the Kind in details.kind, as a real server does.
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.uid_mismatch(
                    rt.plural, rt.group, name, wanted=pre["uid"], actual=meta["uid"], kind=rt.kind
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name, why=errors.STALE_OBJECT, kind=rt.kind)
            if rt.storage_key == NAMESPACE_STORAGE_KEY and name in PROTECTED_NAMESPACES:
                raise errors.forbidden(rt.plural, rt.group, name, why="this namespace may not be deleted")
            if dry_run:
                return present(rt, existing), not meta.get("finalizers")
            obj, gone = cascade.delete_object(self, rt, existing)
            return present(rt, obj), gone

    def remove(self, rt: ResourceType, existing: dict[str, Any]) -> dict[str, Any]:
        """Drop an object for good (DELETED event), then run what its removal sets off."""
        gone = copy.deepcopy(existing)
        self.commit(rt, "DELETED", gone, old=existing)
        cascade.after_removal(self, rt, gone)
        return gone

    def drop_kind(self, storage_key: str) -> None:
        """Stop serving a CRD's kind: forget its objects and types, end its watches."""
        self._objects.pop(storage_key, None)
        self.registry.remove_storage_key(storage_key)
        self._hub.close_kind(storage_key)

    # --- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            objects = {k: list(b.values()) for k, b in self._objects.items() if b}
            return {"format": 1, "resourceVersion": self._rv, "objects": objects}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a snapshot into an empty store; watch history starts at its resourceVersion."""
        with self.lock:
            objects = state.get("objects") or {}
            for crd in objects.get(CRD_STORAGE_KEY, []):
                self.registry.add(crd_resource_types(crd))
            for storage_key, items in objects.items():
                if self.registry.any_version(storage_key) is None:
                    log.warning("dropping %d stored objects of %s: no CRD serves it", len(items), storage_key)
                    continue
                bucket = self.bucket(storage_key)
                for obj in items:
                    bucket[_sort_key(obj)] = obj
                    self._uids.add(obj["metadata"]["uid"])
            self._rv = int(state.get("resourceVersion", 0))
            self._hub.floor = self._rv


def _parse_rv(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None
