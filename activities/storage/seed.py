"""Seed a new model directory from another version's files, so a download fetches only the rest.

A repair (continuous verification found some files of the served version damaged) builds a new
version directory instead of writing into the live one. Every file of the damaged version that
is not reported damaged is hard-linked into the new directory (copied where a link is refused,
e.g. another filesystem), after its size is checked against the listing and its manifest record
against the listing's digests. Each seeded file goes into the new directory's journal with its
record, exactly as an interrupted download would have left it, so the engine's own plan keeps it
(or re-hashes it, when its mtime moved) and fetches only what is missing: no transfer code here.

The damaged version is only ever read. A hard link shares the inode, but nothing writes into a
verified file: the engine replaces a file by renaming a new one over the name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from activities.storage.base import ModelListing, RemoteFile
from activities.storage.hashing import expected_digests
from activities.storage.manifest import FileRecord, StateLayout, read_journal, read_manifest, write_journal
from activities.storage.plan import validate_listing
from activities.storage.transfer import ensure_dir_inside

log = logging.getLogger(__name__)

# Errors on which a hard link is impossible but a copy works: another filesystem, a filesystem
# without links, the link count at its limit, a protected_hardlinks refusal.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


@dataclass(frozen=True, slots=True)
class SeedResult:
    linked: list[str]
    copied: list[str]
    skipped: list[str]  # left for the download: damaged, changed at the source, or unusable


def record_agrees(record: FileRecord, remote: RemoteFile, *, same_revision: bool) -> bool:
    """The record proves the listed content: its size, and every digest the source promises (the
    etag, or the revision, when it promises none)."""
    if record.size != remote.size:
        return False
    expected = expected_digests(remote)
    have = {k: v.lower() for k, v in record.digests().items()}
    if expected:
        return all(have.get(kind) == value for kind, value in expected.items())
    if remote.etag and record.etag:
        return remote.etag == record.etag
    return same_revision


def seed_from_version(
    *, source: Path, dest: Path, listing: ModelListing, damaged: Collection[str], describe: str
) -> SeedResult:
    """Link (or copy) every trustworthy file of `source` that `listing` still names into `dest`,
    and journal them; `damaged` files are left for the download."""
    manifest = read_manifest(StateLayout(source).manifest)
    entries = validate_listing(listing)
    if manifest is None:
        log.warning("%s has no readable manifest; the repair fetches every file", source)
        return SeedResult(linked=[], copied=[], skipped=[e.remote.name for e in entries])
    dest.mkdir(parents=True, exist_ok=True)
    state = StateLayout(dest)
    if state.manifest.exists():
        return SeedResult(linked=[], copied=[], skipped=[])  # complete already (an earlier attempt)
    ensure_dir_inside(dest, state.state_dir)
    journal_revision, journal = read_journal(state.journal)
    records = dict(journal) if journal_revision == listing.revision else {}
    old = {r.name: r for r in manifest.files}
    source_real = source.resolve()
    same_revision = manifest.revision == listing.revision
    linked: list[str] = []
    copied: list[str] = []
    skipped: list[str] = []
    for entry in entries:
        name = entry.remote.name
        if name in records:
            continue  # seeded or fetched by an earlier attempt
        record = old.get(name)
        src = source.joinpath(*entry.path.parts)
        target = dest.joinpath(*entry.path.parts)
        if (
            name in damaged
            or record is None
            or not record_agrees(record, entry.remote, same_revision=same_revision)
            or not _usable(src, source_real, size=entry.remote.size)
            or os.path.lexists(target)
        ):
            skipped.append(name)
            continue
        ensure_dir_inside(dest, target.parent)
        (linked if _link_or_copy(src, target, scratch=state.partial_dir) else copied).append(name)
        placed = target.stat()
        if record.mtime_ns is None or record.mtime_ns == src.stat().st_mtime_ns:
            records[name] = dataclasses.replace(
                record, etag=entry.remote.etag or record.etag, mtime_ns=placed.st_mtime_ns
            )
        # else: touched since it was verified; without a record the engine re-hashes it
    write_journal(state.journal, revision=listing.revision, source=describe, records=records.values())
    return SeedResult(linked=linked, copied=copied, skipped=skipped)


def _usable(src: Path, source_real: Path, *, size: int) -> bool:
    """A regular file (not a symlink) of the listed size, reached without leaving `source`."""
    try:
        st = src.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return False
    return Path(os.path.realpath(src.parent)).is_relative_to(source_real)


def _link_or_copy(src: Path, target: Path, *, scratch: Path) -> bool:
    """Hard-link `src` at `target` (True), or copy it there atomically (False) through `scratch`
    (the partial-file directory, which the engine clears, so a crash mid-copy leaves nothing)."""
    try:
        os.link(src, target, follow_symlinks=False)
        return True
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = scratch / f"seed-{uuid.uuid4().hex}.tmp"
    try:
        shutil.copy2(src, tmp, follow_symlinks=False)  # keeps the mtime the record names
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return False
