"""Keeping the store on disk so `modelferry dev --home` finds its objects after a restart.

The whole store is one JSON file, replaced atomically (write a unique temporary file beside it,
fsync, rename; the temporary file is removed whatever happens). Writes are debounced: a burst of
changes costs one write shortly after it ends, and stopping the server always writes once more.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved store, or None when there is none yet. A damaged file is an error, not a reset."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not a saved API server state ({e}); move it away to start empty") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError(f"{path}: unknown state format")
    return state


class DebouncedSaver:
    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]], *, delay: float = 0.2) -> None:
        self._path = path
        self._snapshot = snapshot
        self._delay = delay
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._save_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="modelferry-apiserver-saver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mark_dirty(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        """Stop the writer and save once more, so nothing written before stop is lost."""
        self._stopping.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join()
        self.save()

    def save(self) -> None:
        with self._save_lock:
            # Stored objects are never modified in place, so the snapshot can be encoded unlocked.
            write_atomic(self._path, json.dumps(self._snapshot(), separators=(",", ":")).encode())

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopping.wait(self._delay):
                return
            self._dirty.clear()
            try:
                self.save()
            except OSError:
                log.exception("could not save the API server state to %s", self._path)
