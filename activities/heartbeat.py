"""Heartbeats for long synchronous activities.

A background thread sends the latest checkpoint every few seconds, whether or not bytes are moving
(listing a large repository, waiting for a download slot), and turns a cancellation delivered
through the heartbeat response into a `threading.Event` the engine watches. The SDK throttles the
actual sends to 0.8 x heartbeat_timeout, so the server holds a checkpoint at most that old.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from temporalio import activity


class Heartbeater:
    def __init__(self, *, interval: float = 5.0) -> None:
        self.cancel = threading.Event()
        self._details: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._context = contextvars.copy_context()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def update(self, details: Any) -> None:
        with self._lock:
            self._details = details

    def _beat(self) -> None:
        with self._lock:
            details = self._details
        if details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(details)
        if activity.is_cancelled() or activity.is_worker_shutdown():
            self.cancel.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._context.run(self._beat)

    def __enter__(self) -> Heartbeater:
        self._context.run(self._beat)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def last_checkpoint() -> dict[str, Any]:
    """The checkpoint of the previous attempt that reached the server, or {}."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict):
        return dict(details[0])
    return {}
