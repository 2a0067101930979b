"""The contract between the download engine and a storage backend.

A backend only *lists* a model's files (with whatever checksums the source offers) and *reads byte
ranges*. Everything else — concurrency, ranged parts, retries, hashing while writing, atomic
placement, resume, disk-space checks, progress — lives once in the engine, so every source gets
the same guarantees.

Backends are synchronous and thread-safe: the engine calls `read_range` from several threads.
They raise only the typed errors of `modelferry.errors` (AccessDeniedError, GatedRepoError,
SourceNotFoundError, SourceUnavailableError with `retry_after`, ...), never a client library's
own exception type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

Buffer = bytes | bytearray | memoryview

READ_BUFFER_BYTES = 1024 * 1024  # the largest read into a reused buffer
MIN_READ_BYTES = 64 * 1024  # the first, and smallest, read


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a model at the source.

    `name` is the relative POSIX path the file gets inside the model directory (the backend has
    already stripped any prefix); the engine still refuses unsafe names.
    Checksums are lowercase hex; a backend fills only what the source really provides.
    """

    name: str
    size: int
    sha256: str | None = None  # Hugging Face LFS oid
    md5: str | None = None  # OCI content-md5 / S3 single-part ETag
    git_sha1: str | None = None  # Hugging Face non-LFS oid: sha1(b"blob %d\0" % size + data)
    multipart_md5: str | None = None  # S3 "<hex>-<parts>" ETag or OCI opc-multipart-md5
    multipart_part_size: int | None = None  # the upload part size, when known
    etag: str | None = None  # opaque version tag, sent back as If-Match where supported


@dataclass(frozen=True, slots=True)
class ModelListing:
    """What a backend found: a stable revision id and the files."""

    revision: str  # HF commit sha; for object stores a digest of (name, size, etag) of the listing
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@runtime_checkable
class StorageBackend(Protocol):
    """A source of model files. Create one per model download; `close()` releases clients."""

    scheme: str

    def describe(self) -> str:
        """A one-line, secret-free description for logs and errors (e.g. `hf://org/repo@main`)."""
        ...

    def list_files(self) -> ModelListing:
        """List the model's files. Raises SourceNotFoundError / AccessDeniedError / ..."""
        ...

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[Buffer]:
        """Yield the bytes [start, end) of `file` in chunks. May raise mid-iteration.

        A chunk that is not `bytes` may be a view of a buffer the backend reuses: it is valid only
        until the next chunk is requested (see `read_into_reused_buffer`).
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class SourceFailover(Protocol):
    """What a backend that reads from several sources (peers first, then the origin:
    `storage.peer.PeeredBackend`) adds to `StorageBackend`: the engine tells it a file failed
    its digest, so the sources that fed those bytes are not asked again."""

    def checksum_failed(self, file: RemoteFile) -> bool:
        """Drop the sources that fed bytes of `file`; True when one was dropped, so the engine
        fetches the file again without holding the mismatch against the origin. Each True must
        drop a source for good, so the retries stay bounded."""
        ...


@dataclass(slots=True)
class DownloadOptions:
    """Engine knobs; CLI flags and settings map onto these one to one."""

    concurrency: int = 4  # files of one model in flight
    multipart_concurrency: int = 4  # ranged parts of one large file in flight
    multipart_threshold: int = 200 * 1024 * 1024  # files above this are fetched in ranged parts
    part_size: int = 64 * 1024 * 1024
    retries: int = 3  # per part, with exponential backoff and jitter (OME's --download-retry default)
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    stall_timeout: float = 60.0  # no bytes for this long: abort and retry the part
    verify_existing: bool = True  # check kept files' size/mtime against the manifest before trusting them
    rehash_existing: bool = False  # also re-hash every kept file from disk (slow; finds bit rot)


@dataclass(slots=True)
class DownloadProgress:
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    # bytes on disk per file not yet complete; what a retried attempt can resume from
    partial_bytes: dict[str, int] = field(default_factory=dict)
    current_files: tuple[str, ...] = ()
    bytes_transferred: int = 0  # fetched over the wire in this run (resume makes this < bytes_done)


def read_into_reused_buffer(readinto: Callable[[memoryview], int], length: int) -> Iterator[memoryview]:
    """Yield up to `length` bytes from `readinto` as views of one buffer, reused for every chunk.

    Allocating a fresh object per chunk (what `read1` does) makes the allocator hand memory back
    to the kernel and fault it in again, over and over: on a 2-core machine that churn cost more
    than the hashing did. `readinto` may block until its view is full (http.client's does), so
    reads start small and grow while they come back quickly: a slow source still shows progress
    every second or so (stall detection depends on it), a fast one is read in 1 MiB gulps.
    Stops early when `readinto` returns 0; the caller decides whether that is a truncation.
    """
    buffer = bytearray(min(READ_BUFFER_BYTES, max(length, 0)))
    view = memoryview(buffer)
    want = MIN_READ_BYTES
    remaining = length
    while remaining > 0:
        ask = min(want, remaining)
        started = time.monotonic()
        n = readinto(view[:ask])
        if not n:
            return
        elapsed = time.monotonic() - started
        if n == ask and elapsed < 0.25:
            want = min(READ_BUFFER_BYTES, want * 2)
        elif elapsed > 1.0:
            want = max(MIN_READ_BYTES, want // 2)
        remaining -= n
        yield view[:n]
