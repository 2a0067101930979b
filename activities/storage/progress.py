"""Download progress: counters updated by every part writer, snapshots emitted at most 4 per second.

`bytes_done` counts bytes of this model that are on disk (kept files, verified files and the
written ranges of partial ones); `bytes_transferred` counts only what came over the wire in this
run, so a resumed run shows `bytes_transferred < bytes_done`. The rate is a sliding-window rate
of transferred bytes; the ETA divides what is still missing by it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from activities.storage.base import DownloadProgress

EMIT_INTERVAL = 0.25  # seconds; ≤ 4 callbacks per second whatever the file count
RATE_WINDOW = 5.0  # seconds of history behind the rate


class ProgressTracker:
    def __init__(
        self,
        *,
        bytes_total: int,
        files_total: int,
        on_progress: Callable[[DownloadProgress], None] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_progress = on_progress
        self.bytes_total = bytes_total
        self.files_total = files_total
        self._complete_bytes = 0  # files kept or verified
        self._files_done = 0
        self._partial: dict[str, int] = {}  # files in flight: bytes on disk
        self._transferred = 0
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._last_emit = float("-inf")

    # --- updates (any thread) -----------------------------------------------------------------

    def file_kept(self, size: int) -> None:
        with self._lock:
            self._complete_bytes += size
            self._files_done += 1

    def file_started(self, name: str, *, on_disk: int) -> None:
        with self._lock:
            self._partial[name] = on_disk

    def written(self, name: str, n: int) -> None:
        with self._lock:
            self._partial[name] = self._partial.get(name, 0) + n
            self._transferred += n

    def file_reset(self, name: str) -> None:
        """The file's bytes were thrown away (checksum mismatch or stale partial)."""
        with self._lock:
            self._partial[name] = 0

    def file_done(self, name: str, size: int) -> None:
        with self._lock:
            self._partial.pop(name, None)
            self._complete_bytes += size
            self._files_done += 1

    @property
    def bytes_transferred(self) -> int:
        with self._lock:
            return self._transferred

    # --- snapshots (the engine's monitor thread) ---------------------------------------------

    def snapshot(self) -> DownloadProgress:
        now = self._clock()
        with self._lock:
            self._samples.append((now, self._transferred))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
                self._samples.popleft()
            then, before = self._samples[0]
            rate = (self._transferred - before) / (now - then) if now > then else 0.0
            done = self._complete_bytes + sum(self._partial.values())
            remaining = max(0, self.bytes_total - done)
            return DownloadProgress(
                bytes_done=done,
                bytes_total=self.bytes_total,
                files_done=self._files_done,
                files_total=self.files_total,
                bytes_per_second=rate,
                eta_seconds=(remaining / rate) if rate > 0 else (0.0 if remaining == 0 else None),
                partial_bytes=dict(self._partial),
                current_files=tuple(sorted(self._partial)),
                bytes_transferred=self._transferred,
            )

    def maybe_emit(self, *, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = self._clock()
        if not force and now - self._last_emit < EMIT_INTERVAL:
            return
        self._last_emit = now
        self._on_progress(self.snapshot())
