"""The download engine: one model from any `StorageBackend` into a verified model directory.

`download_model` is the only entry point. In order, it:

1. takes one of the process-wide download slots (`download_slots(n)`, the `--num-download-worker`
   cap), so a node never runs more model downloads at once than configured;
2. lists the source (retrying temporary errors) unless a listing is given;
3. refuses unsafe names before any byte is written (`plan.validate_listing`);
4. locks the model directory (`.modelferry/lock`, flock) so two downloads never interleave;
5. decides what to keep, fetch and remove (`plan.make_plan`): a re-run over a complete
   directory transfers nothing, a re-run over a partial one fetches only what is missing;
6. checks free space for the bytes still needed (InsufficientDiskSpaceError "needs X, Y free",
   retryable: space can be freed; a disk that fills mid-transfer also removes the partial files);
7. fetches files `options.concurrency` at a time, largest first, each in ranged parts
   (`transfer.fetch_file`), verifying digests computed while writing; each fetched file is a
   `download file` span, a child of the span current when `download_model` was called (files
   kept from an earlier run are not fetched and have none);
8. removes stale files of its own earlier downloads, then writes `.modelferry/manifest.json`
   last: the directory is complete exactly when that file exists.

While files are in flight, the manifest is absent and `.modelferry/journal.json` lists the files
already verified, so an interrupted run (cancel, crash, SIGKILL) resumes where it stopped: whole
files from the journal, partial files from their part checkpoints. On cancel the engine returns
within about a tenth of a second and raises DownloadCancelledError (retryable). On failure it
raises the first error, preferring a permanent one; retryable failures leave resumable state.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import context as otel_context

from activities.storage.base import DownloadOptions, DownloadProgress, ModelListing, StorageBackend
from activities.storage.diskspace import check_free_space
from activities.storage.manifest import (
    FileRecord,
    StateLayout,
    fsync_dir,
    remove_file,
    write_journal,
    write_manifest,
)
from activities.storage.plan import Entry, Plan, fetch_order, make_plan, validate_listing
from activities.storage.progress import ProgressTracker
from activities.storage.transfer import (
    TICK,
    StopRequested,
    TransferContext,
    backoff_delay,
    ensure_dir_inside,
    fetch_file,
)
from modelferry.errors import InsufficientDiskSpaceError, TemporaryError, UnsafePathError, is_retryable
from modelferry.storage_uri import safe_relative_path

log = logging.getLogger(__name__)

DEFAULT_DOWNLOAD_SLOTS = 5  # settings.download.num_download_worker's default (OME's)
LOCK_FILE_NAME = "lock"
JOURNAL_INTERVAL = 1.0  # seconds between journal rewrites; a lost entry costs a re-hash, not data


class DownloadCancelledError(TemporaryError):
    """The download was cancelled; what was written stays on disk and a re-run resumes it."""


@dataclass(frozen=True, slots=True)
class DownloadResult:
    revision: str
    files: tuple[FileRecord, ...]
    total_bytes: int
    bytes_transferred: int
    manifest_path: Path
    elapsed: float


# --- the process-wide cap on concurrent model downloads ----------------------------------------

_slots_lock = threading.Lock()
_slots = threading.BoundedSemaphore(DEFAULT_DOWNLOAD_SLOTS)


def download_slots(n: int) -> None:
    """Allow `n` concurrent model downloads in this process (downloads already running keep theirs)."""
    global _slots
    if n < 1:
        raise ValueError(f"download slots must be at least 1, got {n}")
    with _slots_lock:
        _slots = threading.BoundedSemaphore(n)


@contextlib.contextmanager
def _download_slot(cancel: threading.Event) -> Iterator[None]:
    with _slots_lock:
        slots = _slots
    while not slots.acquire(timeout=TICK):
        if cancel.is_set():
            raise DownloadCancelledError("cancelled while waiting for a download slot")
    try:
        yield
    finally:
        slots.release()


# --- the engine -------------------------------------------------------------------------------


def download_model(
    backend: StorageBackend,
    dest_dir: Path,
    *,
    options: DownloadOptions,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    listing: ModelListing | None = None,
) -> DownloadResult:
    """Download the model `backend` serves into `dest_dir`, verified and resumable."""
    started = time.monotonic()
    cancel = cancel or threading.Event()
    with _download_slot(cancel):
        if listing is None:
            listing = list_with_retries(backend, options=options, cancel=cancel)
        entries = validate_listing(listing)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        layout = StateLayout(dest)
        with _directory_lock(layout, cancel):
            return _download_locked(
                backend,
                layout,
                listing=listing,
                entries=entries,
                options=options,
                on_progress=on_progress,
                cancel=cancel,
                started=started,
            )


def _download_locked(
    backend: StorageBackend,
    layout: StateLayout,
    *,
    listing: ModelListing,
    entries: list[Entry],
    options: DownloadOptions,
    on_progress: Callable[[DownloadProgress], None] | None,
    cancel: threading.Event,
    started: float,
) -> DownloadResult:
    plan = make_plan(layout, listing, entries, options=options)
    tracker = ProgressTracker(
        bytes_total=listing.total_bytes, files_total=len(entries), on_progress=on_progress
    )
    if plan.up_to_date:
        for record in plan.kept.values():
            tracker.file_kept(record.size)
        tracker.maybe_emit(force=True)
        return DownloadResult(
            revision=listing.revision,
            files=tuple(sorted(plan.kept.values(), key=lambda r: r.name)),
            total_bytes=listing.total_bytes,
            bytes_transferred=0,
            manifest_path=layout.manifest,
            elapsed=time.monotonic() - started,
        )
    run = _ModelRun(backend=backend, layout=layout, listing=listing, plan=plan, tracker=tracker)
    try:
        check_free_space(layout.root, needed=plan.needed_bytes(layout))
        return run.execute(options=options, cancel=cancel, started=started)
    except InsufficientDiskSpaceError:
        # A full disk keeps no half-written file: partial bytes are given back (verified whole
        # files stay, and the retry that follows once space is freed reuses them).
        if layout.partial_dir.is_dir() and not layout.partial_dir.is_symlink():
            shutil.rmtree(layout.partial_dir, ignore_errors=True)
        raise


@contextlib.contextmanager
def _directory_lock(layout: StateLayout, cancel: threading.Event) -> Iterator[None]:
    """One download per model directory at a time (another process, or another thread here)."""
    ensure_dir_inside(layout.root, layout.state_dir)
    fd = os.open(layout.state_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel.wait(TICK):
                    raise DownloadCancelledError(
                        f"cancelled while another download into {layout.root} was running"
                    ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def list_with_retries(
    backend: StorageBackend, *, options: DownloadOptions, cancel: threading.Event
) -> ModelListing:
    failures = 0
    while True:
        try:
            return backend.list_files()
        except Exception as error:
            failures += 1
            if not is_retryable(error) or failures > options.retries:
                raise
            retry_after = error.retry_after if isinstance(error, TemporaryError) else None
            delay = backoff_delay(failures, options=options, retry_after=retry_after)
            log.info(
                "listing %s: %s; retry %d/%d in %.2fs",
                backend.describe(),
                error,
                failures,
                options.retries,
                delay,
            )
            if cancel.wait(delay):
                raise DownloadCancelledError(f"cancelled while listing {backend.describe()}") from error


class _ModelRun:
    """One execution of a plan: file workers, the monitor loop, and the final bookkeeping."""

    def __init__(
        self,
        *,
        backend: StorageBackend,
        layout: StateLayout,
        listing: ModelListing,
        plan: Plan,
        tracker: ProgressTracker,
    ) -> None:
        self.backend = backend
        self.layout = layout
        self.listing = listing
        self.plan = plan
        self.tracker = tracker
        self.lock = threading.Lock()
        self.records: dict[str, FileRecord] = dict(plan.kept)
        self.queue: list[Entry] = []  # what no file worker has taken yet; filled by execute()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._journal_at = 0.0
        self._journal_dirty = False

    def execute(self, *, options: DownloadOptions, cancel: threading.Event, started: float) -> DownloadResult:
        layout = self.layout
        # Remember what is verified before the manifest (the old completeness marker) goes away.
        self._write_journal()
        if layout.manifest.exists():
            remove_file(layout.manifest)
            fsync_dir(layout.state_dir)
        for record in self.plan.kept.values():
            self.tracker.file_kept(record.size)
        self.queue = fetch_order(self.plan.fetch, multipart_threshold=options.multipart_threshold)
        ctx = TransferContext(
            backend=self.backend,
            dest=layout.root,
            layout=layout,
            revision=self.listing.revision,
            options=options,
            progress=self.tracker,
            stop=self.stop,
            cancel=cancel,
            # The caller's context, so each file's span (made in a worker thread) is its child.
            trace_parent=otel_context.get_current(),
        )
        workers = [
            threading.Thread(target=self._worker, args=(ctx,), name=f"file-worker-{i}", daemon=True)
            for i in range(min(max(1, options.concurrency), len(self.queue)))
        ]
        for worker in workers:
            worker.start()
        try:
            while alive := [w for w in workers if w.is_alive()]:
                alive[0].join(TICK)
                self.tracker.maybe_emit()
        finally:
            self.stop.set()
            with self.lock:
                if self._journal_dirty:
                    self._write_journal()
        self.tracker.maybe_emit(force=True)
        if self.errors:
            raise min(self.errors, key=is_retryable)  # a permanent error first: it says what to fix
        if self.queue or len(self.records) < len(self.plan.entries):
            raise DownloadCancelledError(
                f"download of {self.backend.describe()} cancelled; {len(self.records)} of "
                f"{len(self.plan.entries)} files done, the rest resumes on the next run"
            )
        self._remove_stale()
        if layout.partial_dir.is_dir() and not layout.partial_dir.is_symlink():
            shutil.rmtree(layout.partial_dir, ignore_errors=True)
        write_manifest(
            layout.manifest,
            revision=self.listing.revision,
            source=self.backend.describe(),
            files=self.records.values(),
        )
        remove_file(layout.journal)
        return DownloadResult(
            revision=self.listing.revision,
            files=tuple(sorted(self.records.values(), key=lambda r: r.name)),
            total_bytes=self.listing.total_bytes,
            bytes_transferred=self.tracker.bytes_transferred,
            manifest_path=layout.manifest,
            elapsed=time.monotonic() - started,
        )

    def _worker(self, ctx: TransferContext) -> None:
        while not ctx.stopping():
            with self.lock:
                if not self.queue:
                    return
                entry = self.queue.pop(0)
            try:
                record = fetch_file(ctx, entry.remote, entry.path)
            except StopRequested:
                return
            except BaseException as error:
                log.warning("%s: %s", entry.remote.name, error)
                with self.lock:
                    self.errors.append(error)
                self.stop.set()
                return
            with self.lock:
                self.records[record.name] = record
                self._journal_dirty = True
                if time.monotonic() - self._journal_at >= JOURNAL_INTERVAL:
                    self._write_journal()

    def _write_journal(self) -> None:
        """Rewrite the journal of verified files (callers hold `self.lock` or run alone)."""
        try:
            self.layout.state_dir.mkdir(exist_ok=True)
            write_journal(
                self.layout.journal,
                revision=self.listing.revision,
                source=self.backend.describe(),
                records=list(self.records.values()),
            )
            self._journal_at, self._journal_dirty = time.monotonic(), False
        except OSError as error:  # the journal only saves re-verification; never fail for it
            log.warning("could not write %s: %s", self.layout.journal, error)

    def _remove_stale(self) -> None:
        """Delete files our earlier download placed that the new listing no longer has."""
        root = self.layout.root
        root_real = root.resolve()
        for record in self.plan.stale:
            try:
                path = safe_relative_path(record.name)
            except UnsafePathError:
                continue
            target = root.joinpath(*path.parts)
            if not target.parent.resolve().is_relative_to(root_real):
                continue
            if target.is_file() and not target.is_symlink():
                target.unlink()
                log.info("removed %s: no longer part of %s", record.name, self.backend.describe())
            parent = target.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
