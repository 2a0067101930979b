"""What the object-store backends (s3, oci) share, without importing either SDK: a stable
revision id for a listing, and a ranged body that must be exactly as long as was asked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from activities.storage.base import RemoteFile
from modelferry.errors import SourceUnavailableError


def listing_revision(files: tuple[RemoteFile, ...]) -> str:
    """A stable id of what was listed: sha256 over (name, size, etag), sorted by name."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(f"{f.name}\0{f.size}\0{f.etag or ''}\n".encode())
    return digest.hexdigest()


def exact_range(
    chunks: Iterable[bytes], *, start: int, end: int, announced: int | str | None, what: str
) -> Iterator[bytes]:
    """Yield a ranged body, failing (retryably) when the server announces or sends another length
    than [start, end) — a short read must never pass for a complete part."""
    if announced is not None and int(announced) != end - start:
        raise SourceUnavailableError(
            f"{what}: the server sent {announced} bytes for a {end - start}-byte range"
        )
    received = 0
    for chunk in chunks:
        received += len(chunk)
        yield chunk
    if received != end - start:
        raise SourceUnavailableError(f"{what}: the body ended after {received} bytes")
