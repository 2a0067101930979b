"""The on-disk state of a model directory: manifest, journal, partial files.

Layout, all inside the model directory `<dest>`:

- `<dest>/<name>`: verified files only; a file appears here by an atomic rename after its bytes
  were hashed and fsynced, so a reader never sees a half-written model file.
- `<dest>/.modelferry/manifest.json`: written *last*, atomically, when every file is verified.
  Its presence is the one signal that the directory is complete; it lists files, sizes, the
  digests that were verified, the revision, the source and the completion time.
- `<dest>/.modelferry/journal.json`: while a download is under way, the files verified so far
  (rewritten after each file), so a resumed run knows which finished files it can trust.
- `<dest>/.modelferry/partial/<name>.partial` and `.parts.jsonl`: files being fetched and their
  checkpoints (see `parts.py`).

A record's digests identify its content, so a file verified under one revision is reused under
another when the source promises the same digests (a new commit that leaves the weights alone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from activities.storage.parts import PartialPaths
from modelferry.names import MANIFEST_FILE_NAME, PARTIAL_SUFFIX, STATE_DIR_NAME

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
JOURNAL_FILE_NAME = "journal.json"
PARTIAL_DIR_NAME = "partial"
CHECKPOINT_SUFFIX = ".parts.jsonl"
DIGEST_KINDS = ("sha256", "git_sha1", "md5", "multipart_md5")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One verified file: what it is (size, verified digests, etag) and how it looked on disk."""

    name: str
    size: int
    sha256: str | None = None
    git_sha1: str | None = None
    md5: str | None = None
    multipart_md5: str | None = None
    etag: str | None = None
    mtime_ns: int | None = None  # a changed mtime means someone touched the file: re-check it

    def digests(self) -> dict[str, str]:
        return {k: v for k in DIGEST_KINDS if (v := getattr(self, k))}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Manifest:
    revision: str
    source: str
    completed_at: str
    files: tuple[FileRecord, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class StateLayout:
    """Where the state files of the model directory `root` live."""

    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR_NAME

    @property
    def manifest(self) -> Path:
        return self.state_dir / MANIFEST_FILE_NAME

    @property
    def journal(self) -> Path:
        return self.state_dir / JOURNAL_FILE_NAME

    @property
    def partial_dir(self) -> Path:
        return self.state_dir / PARTIAL_DIR_NAME

    def partial_paths(self, name: PurePosixPath) -> PartialPaths:
        base = self.partial_dir.joinpath(*name.parts)
        return PartialPaths(
            data=base.with_name(base.name + PARTIAL_SUFFIX),
            checkpoint=base.with_name(base.name + CHECKPOINT_SUFFIX),
        )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write, fsync, rename over `path`, fsync the directory: readers see old or new, never half.
    The temporary file has a unique name and is created afresh (never written through a symlink
    or into another writer's file), and it is removed if anything fails."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(tmp, flags, 0o644), "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest, or None when absent or unreadable (an unreadable one is treated as absent)."""
    data = _read_json(path)
    if data is None:
        return None
    try:
        return Manifest(
            revision=str(data["revision"]),
            source=str(data.get("source", "")),
            completed_at=str(data.get("completed_at", "")),
            files=tuple(FileRecord.from_json(f) for f in data["files"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        log.warning("ignoring malformed manifest %s: %s", path, error)
        return None


def write_manifest(path: Path, *, revision: str, source: str, files: Iterable[FileRecord]) -> Manifest:
    manifest = Manifest(
        revision=revision,
        source=source,
        completed_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        files=tuple(sorted(files, key=lambda f: f.name)),
    )
    write_json_atomic(
        path,
        {
            "format": MANIFEST_FORMAT,
            "complete": True,
            "revision": manifest.revision,
            "source": manifest.source,
            "completed_at": manifest.completed_at,
            "total_bytes": manifest.total_bytes,
            "files": [f.to_json() for f in manifest.files],
        },
    )
    return manifest


def read_journal(path: Path) -> tuple[str, dict[str, FileRecord]]:
    """(revision, records by name) of an interrupted run; ("", {}) when there is none."""
    data = _read_json(path)
    if data is None:
        return "", {}
    try:
        records = {r.name: r for r in (FileRecord.from_json(f) for f in data["files"])}
        return str(data.get("revision", "")), records
    except (KeyError, TypeError, ValueError) as error:
        log.warning("ignoring malformed journal %s: %s", path, error)
        return "", {}


def write_journal(path: Path, *, revision: str, source: str, records: Iterable[FileRecord]) -> None:
    write_json_atomic(
        path,
        {
            "format": MANIFEST_FORMAT,
            "revision": revision,
            "source": source,
            "files": [r.to_json() for r in sorted(records, key=lambda r: r.name)],
        },
    )


def remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None
