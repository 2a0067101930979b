"""Where a model lives on a node: versioned directories behind one stable path.

`storage.path` (say `/raid/models/llama`) is what serving runtimes mount, so it must always point
at a complete, verified model. Each source revision is downloaded into its own directory in a
sibling store, and `storage.path` is a symlink swapped atomically (rename) once the new version is
verified:

    /raid/models/.modelferry-versions/llama/<version-id>/   complete when .modelferry/manifest.json exists
    /raid/models/llama -> .modelferry-versions/llama/<version-id>

A version is identified by its content (`content_version_id`: the source's identity, its revision
string and every file's name, size and digests), so a source that reports the same revision for
other bytes (an object-store prefix rewritten in place, a pvc directory, a mirror) gets a new
directory beside the old one, never a write into the live one.

A rollback re-points the link at an older version that is still on disk; a delete removes the
link and the store. Pure path arithmetic lives here; the file operations are in activities.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelferry.storage_uri import HuggingFaceUri, OciUri, PvcUri, S3Uri, StorageUri, VendorUri

VERSIONS_DIR_NAME = ".modelferry-versions"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_VERSION_ID = 64


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """Paths of one model on one node (host paths, already under the node root)."""

    link: Path  # storage.path as seen on this host
    store: Path  # holds one directory per version

    def version_dir(self, version_id: str) -> Path:
        return self.store / version_id

    def link_target(self, version_id: str) -> str:
        """The symlink's target, relative so it survives the models root being mounted elsewhere."""
        return str(PurePosixPath(VERSIONS_DIR_NAME) / self.link.name / version_id)


def host_path(*, node_root: Path, storage_path: str) -> Path:
    """Map an absolute `storage.path` onto the node root (`/` in a cluster, a directory in dev)."""
    pure = PurePosixPath(storage_path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"storage.path {storage_path!r} must be absolute without '..'")
    return node_root.joinpath(*pure.parts[1:])


def model_layout(*, node_root: Path, storage_path: str) -> ModelLayout:
    link = host_path(node_root=node_root, storage_path=storage_path)
    if link.parent == link:
        raise ValueError(f"storage.path {storage_path!r} cannot be a filesystem root")
    return ModelLayout(link=link, store=link.parent / VERSIONS_DIR_NAME / link.name)


def version_id_for(revision: str) -> str:
    """A directory-safe, bounded name for a source revision (HF commit sha, listing digest)."""
    cleaned = _UNSAFE.sub("_", revision).strip("._") or "unversioned"
    if len(cleaned) <= _MAX_VERSION_ID:
        return cleaned
    digest = hashlib.sha256(revision.encode()).hexdigest()[:16]
    return f"{cleaned[: _MAX_VERSION_ID - 17]}-{digest}"


_CONTENT_ID_VERSION = "v1"  # bump only with a migration: every version directory name depends on it
_READABLE_PREFIX = 40


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What identifies one file's content: its name, size and every digest the source gave."""

    name: str
    size: int
    digests: tuple[tuple[str, str], ...] = ()  # (kind, hex) pairs, e.g. ("sha256", "ab12...")


def source_identity(uri: StorageUri) -> str:
    """Where the bytes come from, without the revision (that is part of the version id itself)."""
    if isinstance(uri, HuggingFaceUri):
        return f"hf:{uri.repo_id}"
    if isinstance(uri, S3Uri):
        return f"s3:{uri.endpoint or ''}/{uri.bucket}/{uri.prefix}"
    if isinstance(uri, OciUri):
        return f"oci:{uri.namespace}/{uri.bucket}/{uri.prefix}"
    if isinstance(uri, PvcUri):
        return f"pvc:{uri.namespace or ''}:{uri.claim_name}/{uri.sub_path}"
    if isinstance(uri, VendorUri):
        return f"vendor:{uri.vendor}/{uri.resource_type}/{uri.path}"
    raise TypeError(f"unknown storage URI type {type(uri).__name__}")


def content_version_id(*, source: str, revision: str, files: Iterable[FileIdentity]) -> str:
    """`<readable revision prefix>-<16 hex>`: a digest of the source, revision and every file."""
    digest = hashlib.sha256(f"{_CONTENT_ID_VERSION}\0{source}\0{revision}\n".encode())
    for f in sorted(files, key=lambda f: f.name):
        kinds = ",".join(f"{k}={v}" for k, v in sorted(f.digests))
        digest.update(f"{f.name}\0{f.size}\0{kinds}\n".encode())
    readable = version_id_for(revision)[:_READABLE_PREFIX].rstrip("._-") or "unversioned"
    return f"{readable}-{digest.hexdigest()[:16]}"
