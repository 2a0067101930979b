"""Test doubles for the watcher: a recording gateway and a small in-memory list/watch source.

`FakeCluster` answers like an API server as far as an informer can tell: a global resourceVersion,
a bounded event history (a watch from a version older than the window raises KubeGoneError, as a
real server answers 410), bookmarks on request, and status patches that do not bump generation.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from modelferry.errors import (
    KubeConflictError,
    KubeGoneError,
    KubeNotFoundError,
    KubeUnavailableError,
    TemporaryError,
)
from modelferry.messages import AdminAction, AdminPlan, AdminRequest, InvalidRevision, ModelRef, ModelRevision
from modelferry.modelstatus import invalid_status, merge_transition_times
from modelferry.names import ModelKind
from watcher.kube import Listing, ResourceType


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class RecordingGateway:
    """Records every call; `down` names models whose calls fail as if Temporal were unreachable.

    With `statuses` (a backend's status writer) it also stands in for the model's workflow on
    `mark_invalid`: it writes the InvalidSpec status the workflow writes for a resource it never
    delivered (`modelstatus.invalid_status`, stamped as the status activity stamps it)."""

    calls: list[tuple[str, ModelRef, Any]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)  # raised, in order, before succeeding
    down: set[str] = field(default_factory=set)
    attempts: int = 0
    statuses: Any = None

    def _maybe_fail(self, ref: ModelRef) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        if ref.name in self.down:
            raise TemporaryError(f"temporal unavailable for {ref.name}")

    async def apply_model(self, *, ref: ModelRef, revision: ModelRevision) -> None:
        self._maybe_fail(ref)
        self.calls.append(("apply", ref, revision))

    async def mark_invalid(self, *, ref: ModelRef, invalid: InvalidRevision) -> None:
        self._maybe_fail(ref)
        self.calls.append(("invalid", ref, invalid))
        if self.statuses is not None:
            status = invalid_status(None, generation=invalid.generation, message=invalid.message)
            stamped = merge_transition_times(None, status, now="2026-11-22T12:00:00Z")
            # Stands in for the model workflow, the one writer of status.
            await asyncio.to_thread(self.statuses.patch_model_status, ref, stamped)

    async def delete_model(self, *, ref: ModelRef) -> None:
        self._maybe_fail(ref)
        self.calls.append(("delete", ref, None))

    async def placement_changed(self, *, ref: ModelRef, reason: str) -> None:
        self._maybe_fail(ref)
        self.calls.append(("placement", ref, reason))

    async def admin_action(self, *, ref: ModelRef, action: AdminAction, request: AdminRequest) -> AdminPlan:
        self._maybe_fail(ref)
        self.calls.append(("admin", ref, (action, request)))
        return AdminPlan(action=action, nodes=list(request.nodes))

    def of(self, verb: str) -> list[tuple[str, ModelRef, Any]]:
        return [c for c in self.calls if c[0] == verb]


class _Stream:
    def __init__(self, cluster: FakeCluster, plural: str, rv: int, timeout: float) -> None:
        self._cluster, self._plural, self._rv, self._timeout = cluster, plural, rv, timeout
        self.closed = False

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        c = self._cluster
        with c.cond:
            if c.history and self._rv < c.history[0][0] - 1:
                raise KubeGoneError("too old resource version", status=410)
            bookmark = str(c.rv) if c.bookmarks else None
        if bookmark:
            yield "BOOKMARK", {"kind": "Bookmark", "metadata": {"resourceVersion": bookmark}}
        while not self.closed:
            with c.cond:  # never yield while holding the lock
                pending = [h for h in c.history if h[0] > self._rv and h[1] == self._plural]
                if not pending and not c.cond.wait(timeout=self._timeout):
                    return  # the server's watch timeout
            for rv, _, kind, obj in pending:
                self._rv = rv
                yield kind, copy.deepcopy(obj)

    def close(self) -> None:
        self.closed = True
        with self._cluster.cond:
            self._cluster.cond.notify_all()


class FakeCluster:
    def __init__(self, *, window: int = 1000, bookmarks: bool = False) -> None:
        self.cond = threading.Condition()
        self.rv = 1
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.window = window
        self.bookmarks = bookmarks
        self.missing: set[str] = set()  # plurals whose "CRD" is not installed
        self.list_calls: dict[str, int] = {}
        self.watch_calls: dict[str, int] = {}
        self.fail_watches = 0  # the next N watch requests fail as if the server were down
        self.status_patches: list[tuple[ModelKind, str | None, str, dict[str, Any]]] = []
        self.watch_timeout_scale = 1.0  # tests shrink the server-side watch timeout
        self.streams: list[_Stream] = []

    def drop_watches(self, *, refuse_next: int = 0) -> None:
        """Break every open watch, as a connection reset would, and refuse the next reconnects."""
        with self.cond:
            self.fail_watches = refuse_next
            streams, self.streams = self.streams, []
        for stream in streams:
            stream.close()

    # --- writes -----------------------------------------------------------------------------

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            meta = obj["metadata"]
            key = (plural, meta.get("namespace") or "", meta["name"])
            kind = "MODIFIED" if key in self.objects else "ADDED"
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = stored
            self._record(plural, kind, stored)
            return stored

    def remove(self, plural: str, name: str, namespace: str | None = None) -> None:
        with self.cond:
            obj = self.objects.pop((plural, namespace or "", name))
            self.rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record(plural, "DELETED", gone)

    def _record(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, plural, kind, copy.deepcopy(obj)))
        del self.history[: max(0, len(self.history) - self.window)]
        self.cond.notify_all()

    # --- ListWatch --------------------------------------------------------------------------

    def list_objects(self, resource: ResourceType) -> Listing:
        with self.cond:
            self.list_calls[resource.plural] = self.list_calls.get(resource.plural, 0) + 1
            if resource.plural in self.missing:
                raise KubeNotFoundError(f"the server could not find {resource.plural}", status=404)
            items = [copy.deepcopy(o) for (p, _, _), o in self.objects.items() if p == resource.plural]
            return Listing(items=items, resource_version=str(self.rv))

    def watch_objects(
        self, resource: ResourceType, *, resource_version: str, timeout_seconds: int
    ) -> _Stream:
        with self.cond:
            self.watch_calls[resource.plural] = self.watch_calls.get(resource.plural, 0) + 1
            if self.fail_watches:
                self.fail_watches -= 1
                raise KubeUnavailableError("connection refused")
            stream = _Stream(
                self, resource.plural, int(resource_version), timeout_seconds * self.watch_timeout_scale
            )
            self.streams.append(stream)
            return stream

    # --- what the model workflow's status activity does (activities.kube.KubeClient) --------

    def patch_model_status(self, ref: ModelRef, status: dict[str, Any]) -> dict[str, Any]:
        kind, namespace, name, body = ref.kind, ref.namespace, ref.name, {"status": status}
        with self.cond:
            obj = self.objects.get((kind.plural, namespace or "", name))
            if obj is None:
                raise KubeNotFoundError(f"{name} not found", status=404)
            self.status_patches.append((kind, namespace, name, body))
            updated = copy.deepcopy(obj)
            updated["status"] = {**(obj.get("status") or {}), **body["status"]}
        return self.put(kind.plural, updated)


class FakeBackend:
    """Cluster operations for behaviour tests, over `FakeCluster` (the embedded API server has a
    twin in conftest): generation bumps on spec changes only, finalizers hold a deletion."""

    name = "fake"

    def __init__(self) -> None:
        self.cluster = FakeCluster()
        self.source: Any = self.cluster
        self.status_writer: Any = self.cluster
        self._uids = 0

    def get(self, kind: ModelKind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.cluster.objects[(kind.plural, namespace or "", name)])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        self._uids += 1
        obj["metadata"].update(uid=f"fake-uid-{self._uids}", generation=1)
        obj.pop("status", None)
        return self.cluster.put(ModelKind(obj["kind"]).plural, obj)

    def update_spec(self, kind: ModelKind, name: str, namespace: str | None, spec: dict[str, Any]) -> None:
        obj = self.get(kind, name, namespace)
        obj["spec"] = spec
        obj["metadata"]["generation"] += 1
        self.cluster.put(kind.plural, obj)

    def write_status(self, kind: ModelKind, name: str, namespace: str | None, status: dict[str, Any]) -> None:
        obj = self.get(kind, name, namespace)
        obj["status"] = status
        self.cluster.put(kind.plural, obj)

    def delete(self, kind: ModelKind, name: str, namespace: str | None = None) -> None:
        obj = self.get(kind, name, namespace)
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-11-22T12:00:00Z"
            self.cluster.put(kind.plural, obj)
        else:
            self.cluster.remove(kind.plural, name, namespace)

    def remove_finalizers(self, kind: ModelKind, name: str, namespace: str | None = None) -> None:
        obj = self.get(kind, name, namespace)
        obj["metadata"]["finalizers"] = []
        if obj["metadata"].get("deletionTimestamp"):
            self.cluster.remove(kind.plural, name, namespace)
        else:
            self.cluster.put(kind.plural, obj)

    def set_node(self, name: str, labels: dict[str, str]) -> None:
        self.cluster.put(
            "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        )

    def remove_node(self, name: str) -> None:
        self.cluster.remove("nodes", name)

    def close(self) -> None:
        pass


class FakeLeases:
    """Leases with optimistic concurrency: replace needs the current resourceVersion (else 409)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = 0
        self.down = False  # every call fails, as with an unreachable API server

    def _check(self) -> None:
        if self.down:
            raise KubeUnavailableError("connection refused")

    def read_lease(self, *, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._check()
            if (namespace, name) not in self.leases:
                raise KubeNotFoundError("lease not found", status=404)
            return copy.deepcopy(self.leases[(namespace, name)])

    def create_lease(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check()
            key = (namespace, body["metadata"]["name"])
            if key in self.leases:
                raise KubeConflictError("already exists", status=409)
            return self._store(key, body)

    def replace_lease(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check()
            current = self.leases.get((namespace, name))
            if current is None:
                raise KubeNotFoundError("lease not found", status=404)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise KubeConflictError("the object has been modified", status=409)
            return self._store((namespace, name), body)

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self._rv)
        self.leases[key] = stored
        return copy.deepcopy(stored)
