"""List and watch one resource type, and hand every change to the asyncio side, in order.

The official client is synchronous, so each informer runs one thread that only does I/O: it lists,
then watches from the list's resourceVersion, resumes a broken or ended watch from the last
resourceVersion it saw (an event's or a BOOKMARK's, so nothing is replayed), relists on 410 Gone,
and backs off while the resource is missing (a CRD not installed yet: logged once) or the API
server is unreachable. It posts what it read to the event loop with `call_soon_threadsafe`.

The asyncio side owns the store (the last object seen per key), so a relist is reconciled against
it without locks: objects gone since become DELETED, changed ones MODIFIED (a new uid under the same
name becomes DELETED then ADDED), new ones ADDED. Every `resync_seconds` it re-delivers each stored
object as RESYNC, so whatever a consumer missed is offered again. Consumers get `(EventType, obj)`
through a plain callback and must not block in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from modelferry.errors import KubeForbiddenError, KubeGoneError, KubeNotFoundError
from watcher.decide import EventType
from watcher.kube import BOOKMARK, Listing, ResourceType

log = logging.getLogger(__name__)

StoreKey = tuple[str, str]  # (namespace or "", name)


class WatchStreamLike(Protocol):
    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]: ...
    def close(self) -> None: ...


class ListWatch(Protocol):
    """What an informer needs from the API (implemented by `watcher.kube.KubeClient`)."""

    def list_objects(self, resource: ResourceType) -> Listing: ...

    def watch_objects(
        self, resource: ResourceType, *, resource_version: str, timeout_seconds: int
    ) -> WatchStreamLike: ...


def store_key(obj: Mapping[str, Any]) -> StoreKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _meta(obj: Mapping[str, Any], field: str) -> str:
    return str((obj.get("metadata") or {}).get(field) or "")


def diff_listing(
    store: Mapping[StoreKey, Mapping[str, Any]], items: Iterable[dict[str, Any]]
) -> list[tuple[EventType, dict[str, Any]]]:
    """The events that turn `store` into `items` (a fresh list); unchanged objects yield nothing."""
    events: list[tuple[EventType, dict[str, Any]]] = []
    listed: dict[StoreKey, dict[str, Any]] = {store_key(item): item for item in items}
    for key, gone in store.items():
        if key not in listed:
            events.append((EventType.DELETED, dict(gone)))
    for key, new in listed.items():
        old = store.get(key)
        if old is None:
            events.append((EventType.ADDED, new))
        elif _meta(old, "uid") != _meta(new, "uid"):
            events.append((EventType.DELETED, dict(old)))
            events.append((EventType.ADDED, new))
        elif _meta(old, "resourceVersion") != _meta(new, "resourceVersion"):
            events.append((EventType.MODIFIED, new))
    return events


@dataclass(frozen=True)
class _Listed:
    items: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True)
class _Watched:
    type: EventType
    obj: dict[str, Any]


@dataclass(frozen=True)
class _Bookmark:
    resource_version: str


class Informer:
    """One list/watch loop for `resource`; `await run()` until cancelled."""

    def __init__(
        self,
        *,
        source: ListWatch,
        resource: ResourceType,
        on_event: Callable[[EventType, dict[str, Any]], None],
        resync_seconds: float = 300.0,
        watch_timeout_seconds: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.resource = resource
        self._source = source
        self._on_event = on_event
        self._resync_seconds = resync_seconds
        self._watch_timeout = watch_timeout_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._store: dict[StoreKey, dict[str, Any]] = {}
        self._halt = threading.Event()
        self._stream: WatchStreamLike | None = None
        self._stream_lock = threading.Lock()
        self.synced = asyncio.Event()  # set once the first list was delivered
        # Observability (and what tests look at):
        self.resource_version = ""  # the newest resourceVersion delivered, from any source
        self.bookmark_resource_version = ""
        self.lists = 0  # 1 after the first list; more after each 410 relist
        self.watches = 0  # how many watch requests were opened

    @property
    def store(self) -> Mapping[StoreKey, Mapping[str, Any]]:
        return self._store

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_Listed | _Watched | _Bookmark] = asyncio.Queue()
        self._halt.clear()
        thread = threading.Thread(
            target=self._pump, args=(loop, inbox), name=f"informer-{self.resource.plural}", daemon=True
        )
        thread.start()
        resync = asyncio.create_task(self._resync_loop())
        try:
            while True:
                self._handle(await inbox.get())
        finally:
            self._halt.set()
            with self._stream_lock:
                stream = self._stream
            if stream is not None:
                stream.close()
            resync.cancel()
            # The thread is a daemon and never posts after the halt; joining briefly just keeps
            # tests from leaking threads. A list in flight may outlast it; that is harmless.
            await asyncio.shield(asyncio.to_thread(thread.join, 2.0))

    # --- the asyncio side -------------------------------------------------------------------

    def _handle(self, message: _Listed | _Watched | _Bookmark) -> None:
        if isinstance(message, _Bookmark):
            self.bookmark_resource_version = self.resource_version = message.resource_version
            return
        if isinstance(message, _Listed):
            events = diff_listing(self._store, message.items)
            self._store = {store_key(item): item for item in message.items}
            self.lists += 1
            self.resource_version = message.resource_version
            for event_type, obj in events:
                self._on_event(event_type, obj)
            self.synced.set()
            return
        key = store_key(message.obj)
        if message.type is EventType.DELETED:
            self._store.pop(key, None)
        else:
            self._store[key] = message.obj
        self.resource_version = _meta(message.obj, "resourceVersion") or self.resource_version
        self._on_event(message.type, message.obj)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._resync_seconds)
            if not self.synced.is_set():
                continue
            for obj in list(self._store.values()):
                self._on_event(EventType.RESYNC, obj)

    # --- the I/O thread ---------------------------------------------------------------------

    def _pump(self, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any]) -> None:
        def post(message: _Listed | _Watched | _Bookmark) -> None:
            if self._halt.is_set():
                return
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, message)
            except RuntimeError:  # the loop is closed
                self._halt.set()

        resource_version = ""
        failures = 0
        missing_logged = False
        what = f"{self.resource.kind} ({self.resource.plural})"
        while not self._halt.is_set():
            try:
                if not resource_version:
                    listing = self._source.list_objects(self.resource)
                    resource_version = listing.resource_version
                    if missing_logged:
                        log.info("%s is available now", what)
                    missing_logged = False
                    post(_Listed(listing.items, resource_version))
                for kind, obj, version in self._watch_once(resource_version):
                    resource_version = version or resource_version
                    post(_Bookmark(resource_version) if kind == BOOKMARK else _Watched(EventType(kind), obj))
                failures = 0  # the server ended the watch (its timeout): resume at once
            except KubeGoneError:
                log.info("%s: resourceVersion %s is too old; relisting", what, resource_version)
                resource_version = ""
            except KubeNotFoundError as error:
                resource_version = ""
                if not missing_logged:
                    log.warning("%s not found (CRD not installed?); retrying with backoff: %s", what, error)
                    missing_logged = True
                failures = self._back_off(failures)
            except Exception as error:
                if self._halt.is_set():
                    break
                level = logging.ERROR if isinstance(error, KubeForbiddenError) else logging.WARNING
                log.log(level, "%s: list/watch failed; retrying with backoff: %s", what, error)
                failures = self._back_off(failures)

    def _watch_once(self, resource_version: str) -> Iterator[tuple[str, dict[str, Any], str]]:
        stream = self._source.watch_objects(
            self.resource, resource_version=resource_version, timeout_seconds=self._watch_timeout
        )
        self.watches += 1
        with self._stream_lock:
            self._stream = stream
        try:
            if self._halt.is_set():
                return
            for kind, obj in stream:
                if self._halt.is_set():
                    return
                obj.setdefault("kind", self.resource.kind)
                if kind not in (BOOKMARK, "ADDED", "MODIFIED", "DELETED"):
                    log.debug("ignoring watch event of type %s", kind)
                    continue
                yield kind, obj, _meta(obj, "resourceVersion")
        finally:
            with self._stream_lock:
                self._stream = None
            with contextlib.suppress(Exception):
                stream.close()

    def _back_off(self, failures: int) -> int:
        delay = min(self._backoff_max, self._backoff_initial * (2**failures))
        self._halt.wait(delay)
        return failures + 1
