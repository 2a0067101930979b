"""Verify a downloaded model version against its manifest before it is activated.

The engine hashed every byte while writing; this check makes sure nothing changed since: every
listed file exists as a regular file inside the directory, with the listed size, and a file whose
mtime differs from the one recorded at verification time is re-hashed against its digests.
`deep=True` re-hashes everything (continuous verification).

`verify_model_dir` makes one `verify file` span per file, a child of the current span (the verify
activity's): `modelferry.file.name`, `.size` and `.rehashed`; a file that fails has status ERROR.
Continuous verification calls `file_problem` directly and makes none: it runs outside any
delivery's trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace

from activities.storage.manifest import FileRecord, StateLayout, read_manifest
from modelferry.errors import IntegrityError, PermanentError

_CHUNK = 4 * 1024 * 1024

tracer = trace.get_tracer("modelferry.verify")


class VerificationFailedError(IntegrityError, PermanentError):
    """A version that was complete no longer matches its manifest."""


@dataclass(frozen=True)
class VerifyReport:
    files: int
    total_bytes: int
    rehashed: int


def _digests_of(path: Path, record: FileRecord, heartbeat: Callable[[], None] | None) -> dict[str, str]:
    wanted = record.digests()
    hashers: dict[str, hashlib._Hash] = {}
    if "sha256" in wanted:
        hashers["sha256"] = hashlib.sha256()
    if "md5" in wanted:
        hashers["md5"] = hashlib.md5(usedforsecurity=False)
    if "git_sha1" in wanted:
        h = hashlib.sha1(usedforsecurity=False)
        h.update(b"blob %d\0" % record.size)
        hashers["git_sha1"] = h
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
            if heartbeat:
                heartbeat()
    return {k: h.hexdigest() for k, h in hashers.items()}


def file_problem(
    directory: Path,
    record: FileRecord,
    *,
    root: Path | None = None,
    deep: bool = False,
    rehash_changed: bool = True,
    heartbeat: Callable[[], None] | None = None,
) -> tuple[str | None, bool]:
    """What is wrong with one listed file of `directory` (None when nothing), and whether it was
    re-hashed. `deep` hashes it whatever its mtime says; `rehash_changed=False` never hashes
    unless `deep` (stat calls only). Continuous verification asks this of every file;
    `verify_model_dir` stops at the first problem. An unreadable file raises OSError."""
    root = root or directory.resolve()
    path = directory / record.name
    resolved = path.resolve()
    if root not in resolved.parents or path.is_symlink() or not path.is_file():
        return f"{record.name} is missing or not a regular file", False
    stat = path.stat()
    if stat.st_size != record.size:
        return f"{record.name} has {stat.st_size} bytes, manifest says {record.size}", False
    changed = record.mtime_ns is not None and stat.st_mtime_ns != record.mtime_ns
    if not (deep or (rehash_changed and changed)):
        return None, False
    got = _digests_of(path, record, heartbeat)
    for kind, expected in record.digests().items():
        if kind in got and got[kind] != expected.lower():
            return f"{record.name} {kind} is {got[kind]}, expected {expected}", True
    return None, True


def verify_model_dir(
    directory: Path, *, heartbeat: Callable[[], None] | None = None, deep: bool = False
) -> VerifyReport:
    manifest = read_manifest(StateLayout(directory).manifest)
    if manifest is None:
        raise VerificationFailedError(f"{directory}: no complete manifest; the download did not finish")
    root = directory.resolve()
    rehashed = 0
    for record in manifest.files:
        with tracer.start_as_current_span("verify file") as span:
            span.set_attributes({"modelferry.file.name": record.name, "modelferry.file.size": record.size})
            problem, hashed = file_problem(directory, record, root=root, deep=deep, heartbeat=heartbeat)
            span.set_attribute("modelferry.file.rehashed", hashed)
            rehashed += hashed
            if problem is not None:
                raise VerificationFailedError(f"{directory}: {problem}")
        if heartbeat:
            heartbeat()
    return VerifyReport(files=len(manifest.files), total_bytes=manifest.total_bytes, rehashed=rehashed)
