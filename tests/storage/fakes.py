"""An in-memory StorageBackend with fault injection, for engine tests that need no network.

Faults are queued per file name and consumed one per `read_range` call, so "the first two
requests for this file fail" is `backend.fail("a.bin", Reset(after=1000), Reset(after=0))`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from activities.storage.base import ModelListing, RemoteFile
from modelferry.errors import SourceUnavailableError


@dataclass(frozen=True)
class Reset:
    """Raise SourceUnavailableError after sending `after` bytes of the range."""

    after: int = 0
    retry_after: float | None = None


@dataclass(frozen=True)
class Raise:
    """Raise `error` before sending anything."""

    error: BaseException


@dataclass(frozen=True)
class Stall:
    """Send `after` bytes, then block for `seconds` (or until the backend is closed)."""

    after: int = 0
    seconds: float = 30.0


@dataclass(frozen=True)
class Corrupt:
    """Send the range with its first byte flipped."""


@dataclass(frozen=True)
class Truncate:
    """End the range `short` bytes early, without an error."""

    short: int = 1


Fault = Reset | Raise | Stall | Corrupt | Truncate


def make_remote(
    name: str, data: bytes, *, digests: tuple[str, ...] = ("sha256",), part_size: int = 0
) -> RemoteFile:
    kwargs: dict[str, object] = {}
    if "sha256" in digests:
        kwargs["sha256"] = hashlib.sha256(data).hexdigest()
    if "git_sha1" in digests:
        kwargs["git_sha1"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if "md5" in digests:
        kwargs["md5"] = hashlib.md5(data).hexdigest()
    if "multipart_md5" in digests:
        parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
        combined = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        kwargs["multipart_md5"] = f"{combined}-{len(parts)}"
        kwargs["multipart_part_size"] = part_size
    if "etag" in digests:
        kwargs["etag"] = hashlib.sha1(data).hexdigest()[:16]
    return RemoteFile(name=name, size=len(data), **kwargs)  # type: ignore[arg-type]


@dataclass
class MemoryBackend:
    files: dict[str, bytes]
    digests: tuple[str, ...] = ("sha256",)
    revision: str = "rev-1"
    chunk: int = 64 * 1024
    part_size: int = 256 * 1024  # the "upload" part size for multipart_md5
    scheme: str = "mem"
    bytes_served: int = 0
    requests: list[tuple[str, int, int]] = field(default_factory=list)
    listings: int = 0
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    promised: dict[str, RemoteFile] = field(default_factory=dict)  # override what list_files says
    extra: list[RemoteFile] = field(default_factory=list)  # listed without data (unsafe names, ...)
    on_bytes: object = None  # callable(total_served) run after each chunk (to cancel mid-way)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def fail(self, name: str, *faults: Fault) -> None:
        self.faults.setdefault(name, []).extend(faults)

    def describe(self) -> str:
        return f"mem://{self.revision}"

    def remote(self, name: str) -> RemoteFile:
        if name in self.promised:
            return self.promised[name]
        return make_remote(name, self.files[name], digests=self.digests, part_size=self.part_size)

    def list_files(self) -> ModelListing:
        self.listings += 1
        files = tuple(self.remote(n) for n in sorted(self.files)) + tuple(self.extra)
        return ModelListing(revision=self.revision, files=files)

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[bytes]:
        with self._lock:
            self.requests.append((file.name, start, end))
            queue = self.faults.get(file.name) or []
            fault = queue.pop(0) if queue else None
        if isinstance(fault, Raise):
            raise fault.error
        data = self.files[file.name][start:end]
        if isinstance(fault, Corrupt) and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if isinstance(fault, Truncate):
            data = data[: max(0, len(data) - fault.short)]
        sent = 0
        for offset in range(0, len(data), self.chunk):
            piece = data[offset : offset + self.chunk]
            if isinstance(fault, Reset | Stall) and sent + len(piece) > fault.after:
                piece = piece[: fault.after - sent]
                if piece:
                    yield self._count(piece)
                if isinstance(fault, Stall):
                    self._closed.wait(fault.seconds)
                    return
                raise SourceUnavailableError(
                    f"{file.name}: connection reset after {fault.after} bytes", retry_after=fault.retry_after
                )
            sent += len(piece)
            yield self._count(piece)

    def _count(self, piece: bytes) -> bytes:
        with self._lock:
            self.bytes_served += len(piece)
            total = self.bytes_served
        if callable(self.on_bytes):
            self.on_bytes(total)
        return piece

    def close(self) -> None:
        self._closed.set()


def with_name(remote: RemoteFile, name: str) -> RemoteFile:
    return replace(remote, name=name)
