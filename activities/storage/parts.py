"""Byte ranges of a file being fetched, and the checkpoint that lets a later run resume it.

A file being fetched lives at `<model>/.modelferry/partial/<name>.partial` (the model directory
itself only ever holds verified files). Beside it, `<name>.parts.json` records which byte ranges
are already written. The engine rewrites that sidecar atomically (temporary file + rename) every
few MiB per file, so a killed process loses at most a few MiB per file in flight, not whole parts.

A checkpoint is trusted only for the same file version (its *identity*: size, digests, etag, and
for digest-less files the listing revision) and, for files without any digest to catch bad
bytes, only within the same boot: a process kill keeps written pages in the page cache, while a
crash of the machine may lose pages the sidecar already counted. Files with a digest keep their
checkpoint across reboots because every byte is hashed again on resume anyway.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from activities.storage.base import RemoteFile
from activities.storage.hashing import expected_digests

CHECKPOINT_FORMAT = 1
Range = tuple[int, int]  # [start, end)


class RangeSet:
    """A thread-safe set of disjoint, merged half-open byte ranges."""

    def __init__(self, ranges: list[Range] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._lock = threading.Lock()
        for start, end in ranges or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        with self._lock:
            # Merge with every range that overlaps or touches [start, end).
            i = bisect.bisect_left(self._ends, start)
            j = bisect.bisect_right(self._starts, end)
            if i < j:
                start = min(start, self._starts[i])
                end = max(end, self._ends[j - 1])
            self._starts[i:j] = [start]
            self._ends[i:j] = [end]

    def covered_end(self, position: int) -> int:
        """The end of the range containing `position`, or `position` if it is not covered."""
        with self._lock:
            i = bisect.bisect_right(self._starts, position) - 1
            if i >= 0 and self._ends[i] > position:
                return self._ends[i]
            return position

    def total(self) -> int:
        with self._lock:
            return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def ranges(self) -> list[Range]:
        with self._lock:
            return list(zip(self._starts, self._ends, strict=True))

    def gaps(self, size: int) -> list[Range]:
        """The ranges of [0, size) not covered."""
        missing: list[Range] = []
        position = 0
        for start, end in self.ranges():
            if start > position:
                missing.append((position, min(start, size)))
            position = max(position, end)
        if position < size:
            missing.append((position, size))
        return [(s, e) for s, e in missing if e > s]


def split_ranges(gaps: list[Range], *, part_size: int, multipart: bool) -> list[Range]:
    """Cut the missing ranges into parts of at most `part_size` (one part per gap otherwise)."""
    if not multipart:
        return list(gaps)
    parts: list[Range] = []
    for start, end in gaps:
        for offset in range(start, end, part_size):
            parts.append((offset, min(offset + part_size, end)))
    return parts


def file_identity(remote: RemoteFile, *, revision: str) -> str:
    """What must not change for a checkpoint to stay valid for `remote`."""
    digests = expected_digests(remote)
    parts = [f"size={remote.size}"] + [f"{k}={v}" for k, v in sorted(digests.items())]
    if remote.etag:
        parts.append(f"etag={remote.etag}")
    if not digests and not remote.etag:
        parts.append(f"revision={revision}")  # nothing else identifies the bytes
    return ";".join(parts)


@functools.cache
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class PartialPaths:
    data: Path  # <state>/partial/<name>.partial
    checkpoint: Path  # <state>/partial/<name>.parts.json


def load_checkpoint(paths: PartialPaths, *, identity: str, size: int, has_digest: bool) -> list[Range]:
    """The ranges a previous run wrote, or [] (and the stale partial removed) if not trustworthy."""
    try:
        data = json.loads(paths.checkpoint.read_text())
        ok = (
            data.get("format") == CHECKPOINT_FORMAT
            and data.get("identity") == identity
            and data.get("size") == size
            and (has_digest or data.get("boot_id") == boot_id())
            and paths.data.is_file()
            and paths.data.stat().st_size == size
        )
        ranges = [(int(s), int(e)) for s, e in data.get("done", [])] if ok else []
        if any(not 0 <= s < e <= size for s, e in ranges):
            ok = False
    except (OSError, ValueError, TypeError, AttributeError):
        ok, ranges = False, []
    if not ok:
        discard_partial(paths)
        return []
    return ranges


def save_checkpoint(paths: PartialPaths, *, identity: str, size: int, done: list[Range]) -> None:
    """Atomically replace the sidecar (no fsync: see the module docstring for why that is safe)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "identity": identity,
        "size": size,
        "boot_id": boot_id(),
        "done": [[s, e] for s, e in done],
    }
    tmp = paths.checkpoint.with_name(paths.checkpoint.name + ".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")))
    os.replace(tmp, paths.checkpoint)


def discard_partial(paths: PartialPaths) -> None:
    for path in (paths.data, paths.checkpoint, paths.checkpoint.with_name(paths.checkpoint.name + ".tmp")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
