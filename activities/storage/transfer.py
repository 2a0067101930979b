"""Fetch one file: ranged parts in flight, retries, stall detection, hashing while writing.

Each file has a *coordinator* (the engine's file worker thread) and up to
`multipart_concurrency` *part attempts*, each a daemon thread streaming one byte range from the
backend into the partial file with `pwrite`. The coordinator never touches the network, so it
stays responsive: it starts attempts, reaps them, retries failed parts (exponential backoff with
full jitter, or the source's `Retry-After`), aborts an attempt that saw no byte for
`stall_timeout`, hashes the contiguous written prefix (see `hashing.py`) and checkpoints the
written ranges (see `parts.py`).

An aborted attempt may still be blocked inside the backend (a stalled socket read ends only at
the backend's read timeout). It is *abandoned*: it holds no lock while it waits, and before
every write it takes its part's lock and checks the abandoned flag, so once the coordinator has
abandoned it (under the same lock) it can never write again. That is what makes it safe to
retry the part at once on a new connection, and to close the file when the run stops.

Each file is one OpenTelemetry span, `download file`, a child of `TransferContext.trace_parent`
(the span current where the download was asked for: the activity's). Its attributes say what the
fetch cost: `modelferry.file.name`, `.size`, `.bytes_fetched` (less than the size after a resume;
more after a refetch), `.parts` (ranges requested, retries not counted), `.part_retries`,
`.attempts` (2 after a checksum mismatch), `.digests` (the kinds verified while writing) and
`modelferry.source.scheme`. A failed file records its exception and has status ERROR; a file
interrupted because the download stops (cancel, or another file failed) has
`modelferry.file.interrupted` and no error. With no tracer provider installed the span is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from activities.storage.base import Buffer, DownloadOptions, RemoteFile, SourceFailover, StorageBackend
from activities.storage.diskspace import disk_full_error
from activities.storage.hashing import OrderedHasher, StreamDigests, digest_mismatches, expected_digests
from activities.storage.manifest import FileRecord, StateLayout, fsync_dir
from activities.storage.parts import (
    CheckpointLog,
    PartialPaths,
    RangeSet,
    discard_partial,
    file_identity,
    load_checkpoint,
    split_ranges,
)
from activities.storage.progress import ProgressTracker
from modelferry.errors import (
    ChecksumMismatchError,
    PersistentChecksumMismatchError,
    SourceUnavailableError,
    TemporaryError,
    UnsafePathError,
    is_retryable,
)

log = logging.getLogger(__name__)

WRITE_BATCH = 1024 * 1024  # bytes gathered before writing; bounds memory and loss per attempt
# The page cache sizes its folios by the length of each write call. On a VM whose balloon reports
# free memory back to the host, 1 MiB writes land in large folios the host must fault in again and
# cost ~4x the kernel time of 64 KiB writes (bench/README.md); elsewhere 64 KiB costs no more.
WRITE_SLICE = 64 * 1024
# Append a checkpoint after this much new progress (from the writing thread: one write() call) or
# after CHECKPOINT_INTERVAL with any progress: what a SIGKILL can lose per file.
CHECKPOINT_BYTES = 4 * 1024 * 1024
CHECKPOINT_INTERVAL = 1.0
MAX_RETRY_AFTER = 600.0  # a Retry-After beyond this is treated as this (then retried or failed)
TICK = 0.1  # the coordinator's longest sleep: bounds stall detection and cancel latency

tracer = trace.get_tracer("modelferry.storage")  # a proxy: follows whatever provider is set later


class StopRequested(Exception):
    """Internal: the model download is stopping (cancel, or another file failed)."""


@dataclass(frozen=True, slots=True)
class TransferContext:
    """What every file of one model download shares."""

    backend: StorageBackend
    dest: Path
    layout: StateLayout
    revision: str
    options: DownloadOptions
    progress: ProgressTracker
    stop: threading.Event  # set when another file failed
    cancel: threading.Event  # the caller's cancel
    trace_parent: otel_context.Context | None = None  # the parent of each file's span

    def stopping(self) -> bool:
        return self.stop.is_set() or self.cancel.is_set()


@dataclass(slots=True)
class _FileStats:
    """What one file's fetch cost, over all its attempts (its span's attributes)."""

    bytes_fetched: int = 0
    parts: int = 0
    part_retries: int = 0
    attempts: int = 0


@dataclass(eq=False)
class _Part:
    start: int
    end: int
    cursor: int
    failures: int = 0  # consecutive attempts that failed without writing a byte
    not_before: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class _Attempt:
    part: _Part
    last_progress: float
    abandoned: bool = False
    finished: bool = False
    made_progress: bool = False
    error: BaseException | None = None


def backoff_delay(failures: int, *, options: DownloadOptions, retry_after: float | None) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(failures-1))]; the source's Retry-After wins."""
    if retry_after is not None:
        return min(max(0.0, retry_after), MAX_RETRY_AFTER)
    cap = min(options.backoff_max, options.backoff_base * (2 ** max(0, failures - 1)))
    return random.uniform(0.0, cap)


def fetch_file(ctx: TransferContext, remote: RemoteFile, name: PurePosixPath) -> FileRecord:
    """Fetch, verify and place one file; a first checksum mismatch is retried from scratch once.

    A mismatch in bytes a failover source fed (a peer: `SourceFailover`) is that source's fault:
    it is dropped and the file fetched again without counting the try.
    """
    stats = _FileStats()
    with tracer.start_as_current_span(
        "download file", context=ctx.trace_parent, record_exception=False, set_status_on_exception=False
    ) as span:
        span.set_attributes(
            {
                "modelferry.file.name": remote.name,
                "modelferry.file.size": remote.size,
                "modelferry.file.digests": sorted(expected_digests(remote)),
                "modelferry.source.scheme": ctx.backend.scheme,
            }
        )
        try:
            return _fetch_verified(ctx, remote, name, stats, span)
        except StopRequested:
            span.set_attribute("modelferry.file.interrupted", True)
            raise
        except BaseException as error:
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
            raise
        finally:
            span.set_attributes(
                {
                    "modelferry.file.bytes_fetched": stats.bytes_fetched,
                    "modelferry.file.parts": stats.parts,
                    "modelferry.file.part_retries": stats.part_retries,
                    "modelferry.file.attempts": stats.attempts,
                }
            )


def _fetch_verified(
    ctx: TransferContext, remote: RemoteFile, name: PurePosixPath, stats: _FileStats, span: trace.Span
) -> FileRecord:
    paths = ctx.layout.partial_paths(name)
    attempt = 0
    while attempt < 2:
        attempt += 1
        stats.attempts += 1
        try:
            return _FileTransfer(ctx, remote, name, paths, stats).run()
        except ChecksumMismatchError as error:
            span.add_event("checksum mismatch", {"modelferry.error": error.message})
            discard_partial(paths)
            ctx.progress.file_reset(remote.name)
            if isinstance(ctx.backend, SourceFailover) and ctx.backend.checksum_failed(remote):
                log.warning("%s; fetching it again from another source", error.message)
                attempt -= 1
                continue
            if attempt == 2:
                detail = error.message.removeprefix(f"{remote.name}: ")
                raise PersistentChecksumMismatchError(
                    f"{remote.name}: {detail} again after a fresh download from "
                    f"{ctx.backend.describe()}; the source's bytes do not match what it promises"
                ) from error
            log.warning("%s; fetching it again from scratch", error.message)
        except StopRequested:
            raise
        except BaseException as error:
            if not is_retryable(error):
                # Retrying cannot help, so the partial bytes are worth nothing: leave no trace.
                discard_partial(paths)
                ctx.progress.file_reset(remote.name)
            raise
    raise AssertionError("unreachable")


class _FileTransfer:
    def __init__(
        self,
        ctx: TransferContext,
        remote: RemoteFile,
        name: PurePosixPath,
        paths: PartialPaths,
        stats: _FileStats,
    ):
        self.ctx = ctx
        self.stats = stats
        self.remote = remote
        self.name = name
        self.paths = paths
        self.options = ctx.options
        self.wake = threading.Event()
        self.fd = -1
        self.checkpoints: CheckpointLog | None = None
        self._count_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def run(self) -> FileRecord:
        remote, ctx = self.remote, self.ctx
        ensure_dir_inside(ctx.dest, self.paths.data.parent)
        identity = file_identity(remote, revision=ctx.revision)
        expected = expected_digests(remote)
        done = load_checkpoint(self.paths, identity=identity, size=remote.size, has_digest=bool(expected))
        self.written = RangeSet(done)
        self.fd = os.open(self.paths.data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self.checkpoints = CheckpointLog(self.paths, identity=identity, size=remote.size, done=done)
            self._prepare_file(fresh=not done)
            ctx.progress.file_started(remote.name, on_disk=self.written.total())
            self.hasher = OrderedHasher(
                fd=self.fd, size=remote.size, digests=StreamDigests(remote), written=self.written
            )
            try:
                self._run_parts()
            except BaseException:
                self._checkpoint(wait=True)
                raise
            while not self.hasher.complete:
                if not self.hasher.catch_up():
                    raise OSError(f"{remote.name}: written ranges end before the file does")
            got = self.hasher.hexdigests()
            self.hasher.release()
            wrong = digest_mismatches(expected, got)
            if wrong:
                kind, want, have = wrong[0]
                raise ChecksumMismatchError(f"{remote.name}: {kind} expected {want}, got {have}")
            os.fsync(self.fd)
        except OSError as error:
            full = disk_full_error(error, where=ctx.dest)
            if full is None:
                raise
            raise full from error
        finally:
            os.close(self.fd)
            with self._checkpoint_lock:
                if self.checkpoints is not None:
                    self.checkpoints.close()
        target = place_file(ctx.dest, self.name, self.paths.data)
        discard_partial(PartialPaths(data=self.paths.data, checkpoint=self.paths.checkpoint))
        ctx.progress.file_done(remote.name, remote.size)
        return FileRecord(
            name=remote.name, size=remote.size, etag=remote.etag, mtime_ns=target.stat().st_mtime_ns, **got
        )

    def _prepare_file(self, *, fresh: bool) -> None:
        if os.fstat(self.fd).st_size != self.remote.size:
            os.ftruncate(self.fd, self.remote.size)
        if fresh and self.remote.size:
            # Reserve the blocks now so a full disk fails here, not after gigabytes.
            with contextlib.suppress(OSError):  # EOPNOTSUPP/EINVAL on some filesystems: fine
                os.posix_fallocate(self.fd, 0, self.remote.size)

    # --- the coordinator loop -----------------------------------------------------------------

    def _run_parts(self) -> None:
        opts = self.options
        multipart = self.remote.size > opts.multipart_threshold
        gaps = self.written.gaps(self.remote.size)
        pending = [
            _Part(start=s, end=e, cursor=s)
            for s, e in split_ranges(gaps, part_size=opts.part_size, multipart=multipart)
        ]
        self.stats.parts += len(pending)
        width = max(1, opts.multipart_concurrency if multipart else 1)
        running: list[_Attempt] = []
        try:
            while pending or running:
                self.wake.clear()
                if self.ctx.stopping():
                    raise StopRequested
                now = time.monotonic()
                for attempt in list(running):
                    failure = self._reap(attempt, now)
                    if attempt.finished or failure is not None:
                        running.remove(attempt)
                    if failure is not None:
                        self._schedule_retry(attempt.part, failure, attempt.made_progress, pending, now)
                ready = [p for p in pending if p.not_before <= now]
                for part in ready[: max(0, width - len(running))]:
                    pending.remove(part)
                    running.append(self._start(part))
                hashed = self.hasher.catch_up()
                if self._unsaved and now - self._saved_at >= CHECKPOINT_INTERVAL:
                    self._checkpoint()
                if not hashed and (pending or running):  # nothing left: no reason to sleep a TICK
                    waits = [p.not_before - now for p in pending if p.not_before > now]
                    self.wake.wait(min([TICK, *waits]))
        finally:
            for attempt in running:
                self._abandon(attempt)

    def _reap(self, attempt: _Attempt, now: float) -> BaseException | None:
        """The attempt's failure, if it finished with an error or stalled; None otherwise."""
        if attempt.finished:
            return attempt.error
        idle = now - attempt.last_progress
        if idle > self.options.stall_timeout:
            self._abandon(attempt)
            part = attempt.part
            return SourceUnavailableError(
                f"{self.remote.name}: no bytes for {idle:.1f}s at offset {part.cursor} "
                f"(stall timeout {self.options.stall_timeout:g}s); retrying the part"
            )
        return None

    def _schedule_retry(
        self, part: _Part, error: BaseException, made_progress: bool, pending: list[_Part], now: float
    ) -> None:
        if not is_retryable(error):
            raise error
        part.failures = 1 if made_progress else part.failures + 1
        if part.failures > self.options.retries:
            raise error
        self.stats.part_retries += 1
        retry_after = error.retry_after if isinstance(error, TemporaryError) else None
        delay = backoff_delay(part.failures, options=self.options, retry_after=retry_after)
        log.info(
            "%s bytes %d-%d: %s; retry %d/%d in %.2fs",
            self.remote.name,
            part.cursor,
            part.end,
            error,
            part.failures,
            self.options.retries,
            delay,
        )
        part.not_before = now + delay
        pending.append(part)
        pending.sort(key=lambda p: p.start)

    def _note_written(self, size: int) -> None:
        with self._count_lock:
            self.stats.bytes_fetched += size
            self._unsaved += size
            due = self._unsaved >= CHECKPOINT_BYTES
        if due:
            self._checkpoint()

    def _checkpoint(self, *, wait: bool = False) -> None:
        """Save the written ranges; skipped when another thread is saving (unless `wait`)."""
        if not self._checkpoint_lock.acquire(blocking=wait):
            return
        try:
            with self._count_lock:
                self._unsaved = 0
            done = self.written.ranges()
            with contextlib.suppress(OSError):  # a lost checkpoint costs a re-fetch, never correctness
                if self.checkpoints is not None:
                    self.checkpoints.save(done)
            self._saved_at = time.monotonic()
        finally:
            self._checkpoint_lock.release()

    # --- part attempts (daemon threads) -------------------------------------------------------

    def _start(self, part: _Part) -> _Attempt:
        attempt = _Attempt(part=part, last_progress=time.monotonic())
        name = f"part:{self.remote.name}@{part.cursor}"
        thread = threading.Thread(target=self._attempt_main, args=(attempt,), name=name, daemon=True)
        thread.start()
        return attempt

    def _abandon(self, attempt: _Attempt) -> None:
        with attempt.part.lock:
            attempt.abandoned = True

    def _attempt_main(self, attempt: _Attempt) -> None:
        part = attempt.part
        try:
            chunks = self.ctx.backend.read_range(self.remote, part.cursor, part.end)
            try:
                batch: list[bytes] = []
                size = 0
                for chunk in chunks:
                    if attempt.abandoned or self.ctx.stopping():
                        return
                    attempt.last_progress = time.monotonic()
                    if not chunk:
                        continue
                    if not isinstance(chunk, bytes):
                        # A view of a buffer the backend reuses: written before the next read.
                        if batch:
                            self._write(attempt, batch, size)
                            batch, size = [], 0
                        self._write(attempt, [chunk], len(chunk))
                        continue
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= WRITE_BATCH:
                        self._write(attempt, batch, size)
                        batch, size = [], 0
                if batch:
                    self._write(attempt, batch, size)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()
            if part.cursor != part.end and not attempt.abandoned:
                raise SourceUnavailableError(
                    f"{self.remote.name}: the source ended the range early at byte {part.cursor} of "
                    f"{part.start}-{part.end}"
                )
        except BaseException as error:
            attempt.error = error
        finally:
            attempt.finished = True
            self.wake.set()

    def _write(self, attempt: _Attempt, batch: Sequence[Buffer], size: int) -> None:
        part = attempt.part
        with part.lock:
            if attempt.abandoned:
                return
            if part.cursor + size > part.end:
                raise SourceUnavailableError(
                    f"{self.remote.name}: the source sent more bytes than asked for ({part.start}-{part.end})"
                )
            write_all(self.fd, batch, part.cursor)
            self.written.add(part.cursor, part.cursor + size)
            self.hasher.offer(part.cursor, batch)
            part.cursor += size
        attempt.made_progress = True
        self.ctx.progress.written(self.remote.name, size)
        self._note_written(size)
        # No wake-up per write: the coordinator runs at least every TICK anyway, and only a part
        # that *finishes* can make the hashed prefix jump (the frontier part is hashed in-line).


def write_all(fd: int, chunks: Sequence[Buffer], offset: int) -> None:
    """pwrite every byte of `chunks` at `offset`, at most WRITE_SLICE bytes per call."""
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            n = os.pwrite(fd, view[:WRITE_SLICE], offset)
            offset += n
            view = view[n:]


def ensure_dir_inside(root: Path, directory: Path) -> None:
    """Create `directory` under `root`, refusing any existing symlink on the way that leads out."""
    root_real = root.resolve()
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            if not current.resolve().is_relative_to(root_real):
                raise UnsafePathError(f"{current}: a symlink on the way leads outside {root}")
        elif not current.exists():
            current.mkdir(exist_ok=True)  # another file worker may create it at the same moment
        if not current.is_dir():
            raise UnsafePathError(f"{current}: exists and is not a directory")


def place_file(dest: Path, name: PurePosixPath, partial: Path) -> Path:
    """Atomically move a verified partial file to `dest/name` and make the rename durable."""
    target = dest.joinpath(*name.parts)
    ensure_dir_inside(dest, target.parent)
    if target.is_dir() and not target.is_symlink():
        raise UnsafePathError(f"{target}: a directory is in the way of the model file {name}")
    os.replace(partial, target)
    fsync_dir(target.parent)
    return target
