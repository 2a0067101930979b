"""Watch plumbing: a bounded event history per kind and one unbounded-but-policed queue per watcher.

Writers record events under the store lock and only *offer* them to watcher queues, which never
blocks, so a slow watch client cannot hold up writes. A watcher whose backlog grows past its limit
is closed, as a real API server closes unresponsive watchers; its client re-watches from the last
resourceVersion it saw (or gets 410 Gone and relists).

The history keeps the last `window` events per storage key. A watch that asks for events after a
resourceVersion older than that window answers 410 Gone, which is how clients learn to relist.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import gone


@dataclass(frozen=True)
class StoredEvent:
    """A change to one object: `obj` is the new state (the last state for DELETED)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


@dataclass(frozen=True)
class Bookmark:
    """Everything up to `rv` has been delivered to this watcher."""

    rv: int
    initial_events_end: bool = False


class Closed:
    """Queue marker: the watch must end (server stopping, kind removed, watcher too slow)."""


CLOSED = Closed()
WatchItem = StoredEvent | Bookmark | Closed


class Watcher:
    """One watch request: its queue and its selector (applied when events are read, not written)."""

    def __init__(self, *, matcher: Callable[[dict[str, Any]], bool], max_backlog: int) -> None:
        self._queue: queue.SimpleQueue[WatchItem] = queue.SimpleQueue()
        self._matcher = matcher
        self._max_backlog = max_backlog
        self.closed = False

    def offer(self, item: WatchItem) -> None:
        if self.closed:
            return
        if isinstance(item, Closed) or self._queue.qsize() >= self._max_backlog:
            self.closed = True
            item = CLOSED
        self._queue.put(item)

    def next(self, timeout: float) -> WatchItem | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def translate(self, event: StoredEvent) -> tuple[str, dict[str, Any]] | None:
        """The event this watcher sees: an object entering the selector is ADDED, one leaving it
        is DELETED, one outside it before and after is not seen at all."""
        now = self._matcher(event.obj)
        if event.type != "MODIFIED":
            return (event.type, event.obj) if now else None
        before = event.old is not None and self._matcher(event.old)
        if before and now:
            return ("MODIFIED", event.obj)
        if now:
            return ("ADDED", event.obj)
        if before:
            return ("DELETED", event.obj)
        return None


class EventLog:
    """The last `window` events of one storage key; events at or below `floor` may be missing."""

    def __init__(self, *, window: int, floor: int) -> None:
        self._events: deque[StoredEvent] = deque(maxlen=max(1, window))
        self.floor = floor

    def append(self, event: StoredEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self.floor = self._events[0].rv
        self._events.append(event)

    def since(self, rv: int, *, current: int) -> list[StoredEvent]:
        if rv < self.floor:
            raise gone(f"too old resource version: {rv} ({self.floor + 1})")
        return [e for e in self._events if e.rv > rv] if rv < current else []


class WatchHub:
    """Histories and live watchers per storage key. Not locked itself: the store calls it under
    its own lock, which is what makes "replay history, then register" atomic."""

    def __init__(self, *, window: int, floor: int = 0) -> None:
        self._window = window
        self.floor = floor  # before this resourceVersion nothing is known (a restored store)
        self._logs: dict[str, EventLog] = {}
        self._watchers: dict[str, set[Watcher]] = {}

    def _log(self, storage_key: str) -> EventLog:
        log = self._logs.get(storage_key)
        if log is None:
            # A kind with no history yet had no events since `floor`: nothing is missing.
            log = self._logs[storage_key] = EventLog(window=self._window, floor=self.floor)
        return log

    def record(self, storage_key: str, event: StoredEvent) -> None:
        self._log(storage_key).append(event)
        for watcher in self._watchers.get(storage_key, ()):
            watcher.offer(event)

    def history_since(self, storage_key: str, rv: int, *, current: int) -> list[StoredEvent]:
        return self._log(storage_key).since(rv, current=current)

    def add(self, storage_key: str, watcher: Watcher) -> None:
        self._watchers.setdefault(storage_key, set()).add(watcher)

    def remove(self, storage_key: str, watcher: Watcher) -> None:
        self._watchers.get(storage_key, set()).discard(watcher)

    def close_kind(self, storage_key: str) -> None:
        for watcher in self._watchers.pop(storage_key, set()):
            watcher.offer(CLOSED)

    def close_all(self) -> None:
        for storage_key in list(self._watchers):
            self.close_kind(storage_key)
