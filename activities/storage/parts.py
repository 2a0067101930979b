"""Byte ranges of a file being fetched, and the checkpoint that lets a later run resume it.

A file being fetched lives at `<model>/.modelferry/partial/<name>.partial` (the model directory
itself only ever holds verified files). Beside it, `<name>.parts.jsonl` records which byte ranges
are already written: a header line (format, file identity, size, boot id), then one line per
checkpoint with every range written so far. A checkpoint is one `write` appended to an open file
(a few microseconds), so the engine can take one every few MiB per file; creating and renaming a
sidecar each time cost the download ~20 % of its CPU on a busy ext4 journal. The last line that
parses wins: a line torn by a kill is never valid JSON, so it falls back to the previous one. The
log is rewritten (temporary file and rename) when a transfer starts and whenever it grows past
`COMPACT_BYTES`, so it stays small and never starts with a torn line.

A checkpoint is trusted only for the same file version (its *identity*: size, digests, etag, and
for digest-less files the listing revision) and, for files without any digest to catch bad
bytes, only within the same boot: a process kill keeps written pages in the page cache, while a
crash of the machine may lose pages the log already counted. Files with a digest keep their
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

CHECKPOINT_FORMAT = 2
COMPACT_BYTES = 256 * 1024  # rewrite the log as header + last line beyond this size
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
    checkpoint: Path  # <state>/partial/<name>.parts.jsonl

    @property
    def checkpoint_tmp(self) -> Path:
        return self.checkpoint.with_name(self.checkpoint.name + ".tmp")


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _done_line(done: list[Range]) -> bytes:
    return _encode({"done": [[s, e] for s, e in done]})


def _last_ranges(lines: list[bytes], size: int) -> list[Range]:
    """The ranges of the last line that parses and lies inside [0, size); [] if none does."""
    for line in reversed(lines):
        try:
            ranges = [(int(s), int(e)) for s, e in json.loads(line)["done"]]
        except (ValueError, TypeError, KeyError):
            continue  # torn by a kill, or not ours
        if all(0 <= s < e <= size for s, e in ranges):
            return ranges
    return []


def load_checkpoint(paths: PartialPaths, *, identity: str, size: int, has_digest: bool) -> list[Range]:
    """The ranges a previous run wrote, or [] (and the stale partial removed) if not trustworthy."""
    ranges: list[Range] = []
    try:
        header, *lines = paths.checkpoint.read_bytes().split(b"\n")
        meta = json.loads(header)
        ok = (
            isinstance(meta, dict)
            and meta.get("format") == CHECKPOINT_FORMAT
            and meta.get("identity") == identity
            and meta.get("size") == size
            and (has_digest or meta.get("boot_id") == boot_id())
            and paths.data.is_file()
            and paths.data.stat().st_size == size
        )
        if ok:
            ranges = _last_ranges(lines, size)
    except (OSError, ValueError):
        ok = False
    if not ok:
        discard_partial(paths)
        return []
    return ranges


class CheckpointLog:
    """The open checkpoint log of one partial file; `save` appends, `close` when done.

    Not thread-safe: the caller serialises `save` (the transfer holds a lock around it).
    """

    def __init__(self, paths: PartialPaths, *, identity: str, size: int, done: list[Range]) -> None:
        self._paths = paths
        self._header = _encode(
            {"format": CHECKPOINT_FORMAT, "identity": identity, "size": size, "boot_id": boot_id()}
        )
        self._fd = -1
        self._length = 0
        self._rewrite(done)

    def save(self, done: list[Range]) -> None:
        """Record that `done` is written (no fsync: see the module docstring for why that is safe)."""
        line = _done_line(done)
        if self._length + len(line) > COMPACT_BYTES:
            self._rewrite(done)
            return
        os.write(self._fd, line)
        self._length += len(line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _rewrite(self, done: list[Range]) -> None:
        content = self._header + _done_line(done)
        self._paths.checkpoint_tmp.write_bytes(content)
        os.replace(self._paths.checkpoint_tmp, self._paths.checkpoint)
        self.close()
        self._fd = os.open(self._paths.checkpoint, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._length = len(content)


def discard_partial(paths: PartialPaths) -> None:
    for path in (paths.data, paths.checkpoint, paths.checkpoint_tmp):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
