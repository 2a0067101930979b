"""Keeping the store on disk so `modelferry dev --home` finds its objects after a restart.

The whole store is one JSON file, replaced atomically (write a unique temporary file beside it,
fsync, rename; the temporary file is removed whatever happens). Writes are debounced: a burst of
changes costs one write shortly after it ends, and stopping the server always writes once more.

The store holds Secrets, so every file written here is created owner-only (0600, a directory we
create 0700) by the `open` call itself: there is no moment, not even before a chmod, when another
user could read it. A state file left by an older version is tightened when a server starts on it.
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

FILE_MODE = 0o600
DIR_MODE = 0o700


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, the file owner-only from its creation (the umask can only narrow it).

    A missing directory is created 0700; an existing one is left as it is (it may be shared, like
    /tmp), the file's own mode being what keeps it private.
    """
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # mode: the last one only
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tighten(path: Path) -> None:
    """Make an existing state file, and temporary files a killed writer left beside it, owner-only."""
    for found in [path, *path.parent.glob(f".{path.name}.*.incomplete")]:
        try:
            mode = found.stat().st_mode
            if mode & 0o077:
                os.chmod(found, mode & 0o700)
                log.warning("%s was open to other users; it is owner-only now", found)
        except FileNotFoundError:
            pass


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
        tighten(self._path)
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
