"""Decide, before any byte moves, what a download must do: check names, keep, fetch, remove.

Pure decisions over what the source listed and what the model directory already holds:

- every name must be a safe relative path (no absolute, `..`, empty segment, control character),
  must not fall inside our `.modelferry/` state directory, must be listed once, and must not be
  both a file and a directory; any violation refuses the whole listing (UnsafePathError);
- a file is *kept* when a record of an earlier verified download (the manifest, or the journal of
  an interrupted run) promises the same content (same size and digests; etag, or the revision,
  when the source has no digest) and the file on disk still has that record's size and mtime.
  A file whose mtime changed, or one with no record at all, is kept only if hashing it from disk
  gives exactly the digests the source promises;
- everything else is *fetched*;
- *stale* files are those our own records list but the new listing does not. They are removed
  after the new files are verified. Files no record of ours lists are never touched.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from activities.storage.base import DownloadOptions, ModelListing, RemoteFile
from activities.storage.diskspace import allocated_bytes
from activities.storage.hashing import digest_mismatches, expected_digests, hash_file
from activities.storage.manifest import FileRecord, Manifest, StateLayout, read_journal, read_manifest
from modelferry.errors import UnsafePathError
from modelferry.names import STATE_DIR_NAME
from modelferry.storage_uri import safe_relative_path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    remote: RemoteFile
    path: PurePosixPath


@dataclass(slots=True)
class Plan:
    entries: list[Entry]
    kept: dict[str, FileRecord] = field(default_factory=dict)
    fetch: list[Entry] = field(default_factory=list)
    stale: list[FileRecord] = field(default_factory=list)
    previous: Manifest | None = None
    records_changed: bool = False  # a kept file's record differs from the manifest's

    @property
    def up_to_date(self) -> bool:
        """Nothing to fetch, remove or rewrite: the directory already is this listing."""
        return (
            not self.fetch
            and not self.stale
            and not self.records_changed
            and self.previous is not None
            and len(self.kept) == len(self.previous.files)
        )

    def needed_bytes(self, layout: StateLayout) -> int:
        """Bytes still to allocate: what is fetched, minus what resumable partials already hold."""
        total = 0
        for entry in self.fetch:
            held = allocated_bytes(layout.partial_paths(entry.path).data)
            total += max(0, entry.remote.size - min(held, entry.remote.size))
        return total


def fetch_order(entries: list[Entry], *, multipart_threshold: int) -> list[Entry]:
    """Small files first, then the large ones largest first.

    Large files go longest-first so the last to finish is a short one. Small files go before
    them: behind the large files they would each wait for a file worker until a large file had
    been hashed and fsynced, and they take next to nothing up front.
    """
    return sorted(entries, key=lambda e: (e.remote.size > multipart_threshold, -e.remote.size, e.remote.name))


def validate_listing(listing: ModelListing) -> list[Entry]:
    """Check every name before any byte is written; UnsafePathError names the offending entry."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for remote in listing.files:
        path = safe_relative_path(remote.name)
        if path.parts[0] == STATE_DIR_NAME:
            raise UnsafePathError(f"object name '{remote.name}': {STATE_DIR_NAME}/ is reserved for our state")
        if remote.name in seen:
            raise UnsafePathError(f"object name '{remote.name}': listed twice")
        if remote.size < 0:
            raise UnsafePathError(f"object name '{remote.name}': negative size {remote.size}")
        seen.add(remote.name)
        entries.append(Entry(remote=remote, path=path))
    for entry in entries:
        for parent in entry.path.parents:
            if str(parent) in seen:
                raise UnsafePathError(
                    f"object name '{entry.remote.name}': '{parent}' is listed as a file and a directory"
                )
    return entries


def make_plan(
    layout: StateLayout, listing: ModelListing, entries: list[Entry], *, options: DownloadOptions
) -> Plan:
    previous = read_manifest(layout.manifest)
    known: dict[str, tuple[FileRecord, str]] = {}
    if previous is not None:
        known.update((r.name, (r, previous.revision)) for r in previous.files)
    journal_revision, journal = read_journal(layout.journal)
    known.update((name, (r, journal_revision)) for name, r in journal.items())

    plan = Plan(entries=entries, previous=previous)
    previous_records = {r.name: r for r in previous.files} if previous else {}
    for entry in entries:
        record = _keepable(layout.root, entry, known.get(entry.remote.name), listing.revision, options)
        if record is None:
            plan.fetch.append(entry)
            continue
        plan.kept[entry.remote.name] = record
        if previous_records.get(record.name) != record:
            plan.records_changed = True
    listed = {e.remote.name for e in entries}
    for name, (record, _) in sorted(known.items()):
        if name not in listed:
            plan.stale.append(record)
    if previous is not None and previous.revision != listing.revision:
        plan.records_changed = True
    return plan


def _keepable(
    root: Path, entry: Entry, known: tuple[FileRecord, str] | None, revision: str, options: DownloadOptions
) -> FileRecord | None:
    """The record to keep `entry` under, or None when it must be fetched."""
    remote = entry.remote
    target = root.joinpath(*entry.path.parts)
    try:
        st = target.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != remote.size or not _inside(root, target):
        return None
    expected = expected_digests(remote)
    if known is not None:
        record, record_revision = known
        same = _same_content(record, remote, expected, same_revision=record_revision == revision)
        if same is False:
            return None
        unchanged = not options.verify_existing or record.mtime_ns == st.st_mtime_ns
        if same and unchanged and not options.rehash_existing:
            return replace(record, etag=remote.etag or record.etag)
    if not expected:
        return None  # nothing to check the bytes against: fetch them again
    got = hash_file(target, remote, kinds=list(expected))
    if digest_mismatches(expected, got):
        log.info("%s: on-disk content differs from the source; fetching it", remote.name)
        return None
    return FileRecord(name=remote.name, size=remote.size, etag=remote.etag, mtime_ns=st.st_mtime_ns, **got)


def _same_content(
    record: FileRecord, remote: RemoteFile, expected: dict[str, str], *, same_revision: bool
) -> bool | None:
    """True/False when the record proves/disproves `remote`'s content; None when it cannot tell."""
    if record.size != remote.size:
        return False
    have = record.digests()
    if expected:
        if any(have.get(kind) not in (None, value) for kind, value in expected.items()):
            return False
        return True if all(kind in have for kind in expected) else None
    if remote.etag and record.etag:
        return remote.etag == record.etag
    return True if same_revision else None


def _inside(root: Path, target: Path) -> bool:
    return Path(os.path.realpath(target.parent)).is_relative_to(root.resolve())
