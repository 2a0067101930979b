"""The `pvc://` backend: copy a model out of a PersistentVolumeClaim mounted on this node.

The claim is mounted read-only somewhere local: in a cluster the node worker Job mounts it, in dev
mode `modelferry pull --pvc NAME=DIR` says where. `BackendSettings.pvc_mounts` maps
`namespace:claim` (or, for a URI without a namespace, the bare claim name) to that
directory. The backend lists the regular files under the
URI's sub-path and reads byte ranges with `pread`; the engine does the rest (parallel parts,
verification, atomic placement), exactly as for a remote source.

Safety: a symlink is followed only while it stays inside the mount (one leading outside refuses
the listing: UnsafePathError), directory loops are skipped, sockets and devices are ignored, and
the source's own `.modelferry/` state directory is never copied.

Integrity: sizes always. When the source directory is itself a complete modelferry model (it has
`.modelferry/manifest.json`), the digests recorded there are promised for files of the same size,
so the copy is verified end to end; its revision is reused when every file matches the manifest.
Otherwise the revision is a digest of (name, size, mtime) and each file's etag is `mtime-size`,
so a file changed on the claim never resumes from a checkpoint of its older content.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from activities.storage.base import Buffer, ModelListing, RemoteFile, read_into_reused_buffer
from activities.storage.manifest import StateLayout, read_manifest
from activities.storage.registry import BackendSettings
from modelferry.errors import AccessDeniedError, SourceNotFoundError, SourceUnavailableError, UnsafePathError
from modelferry.names import STATE_DIR_NAME
from modelferry.storage_uri import PvcUri

log = logging.getLogger(__name__)


class PvcBackend:
    scheme = "pvc"

    def __init__(
        self,
        uri: PvcUri,
        *,
        parameters: Mapping[str, str] | None = None,
        secret: Mapping[str, str] | None = None,
        settings: BackendSettings | None = None,
    ) -> None:
        del parameters, secret  # a mounted claim needs neither
        self.uri = uri
        claim = f"{uri.namespace}:{uri.claim_name}" if uri.namespace else uri.claim_name
        mounts = (settings or BackendSettings()).pvc_mounts
        # `namespace:claim` names exactly one claim. A bare mount name says nothing about the
        # namespace, so it serves only a URI that names none (`modelferry pull`): a worker always
        # passes the namespace, and one tenant's `models` is never another's.
        mount = mounts.get(claim)
        if mount is None:
            known = ", ".join(sorted(mounts)) or "none"
            raise SourceNotFoundError(
                f"{self.describe()}: claim {claim} is not mounted on this node (mounted claims: {known})"
            )
        self.root = Path(mount)
        self.base = self.root.joinpath(*PurePosixPath(uri.sub_path).parts) if uri.sub_path else self.root

    def describe(self) -> str:
        claim = f"{self.uri.namespace}:{self.uri.claim_name}" if self.uri.namespace else self.uri.claim_name
        return f"pvc://{claim}/{self.uri.sub_path}"

    def list_files(self) -> ModelListing:
        if not self.root.is_dir():
            raise SourceNotFoundError(f"{self.describe()}: the claim's mount {self.root} does not exist")
        if not self.base.exists():
            raise SourceNotFoundError(f"{self.describe()}: {self.uri.sub_path!r} does not exist in the claim")
        self._inside_root(self.base, self.uri.sub_path or ".")
        if self.base.is_file():
            found = [(self.base.name, self.base)]
            manifest_dir = self.base.parent
        else:
            found = list(self._walk())
            manifest_dir = self.base
        manifest = read_manifest(StateLayout(manifest_dir).manifest)
        recorded = {r.name: r for r in manifest.files} if manifest else {}
        files: list[RemoteFile] = []
        all_match = manifest is not None
        for name, path in sorted(found):
            st = path.stat()
            record = recorded.get(name)
            if record is None or record.size != st.st_size:
                record = None
                all_match = False
            elif record.mtime_ns != st.st_mtime_ns:
                all_match = False
            files.append(
                RemoteFile(
                    name=name,
                    size=st.st_size,
                    sha256=record.sha256 if record else None,
                    md5=record.md5 if record else None,
                    git_sha1=record.git_sha1 if record else None,
                    etag=f"{st.st_mtime_ns}-{st.st_size}",
                )
            )
        if not files:
            raise SourceNotFoundError(f"{self.describe()}: no files under this path")
        if manifest is not None and all_match and len(recorded) == len(files):
            revision = manifest.revision
        else:
            digest = hashlib.sha256()
            for f in files:
                digest.update(f"{f.name}\0{f.size}\0{f.etag}\n".encode())
            revision = digest.hexdigest()
        return ModelListing(revision=revision, files=tuple(files))

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[Buffer]:
        path = self.base if self.base.is_file() else self.base.joinpath(*PurePosixPath(file.name).parts)
        self._inside_root(path, file.name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SourceNotFoundError(f"{self.describe()}: {file.name} disappeared from the claim") from None
        except PermissionError:
            raise AccessDeniedError(f"{self.describe()}: {file.name} is not readable") from None
        position = start

        def read_at_position(view: memoryview) -> int:
            return os.preadv(fd, [view], position)

        try:
            for view in read_into_reused_buffer(read_at_position, end - start):
                position += len(view)
                yield view
            if position < end:
                raise SourceUnavailableError(
                    f"{self.describe()}: {file.name} ended at byte {position}, listed with {file.size}"
                )
        except OSError as error:
            raise SourceUnavailableError(f"{self.describe()}: reading {file.name}: {error}") from None
        finally:
            os.close(fd)

    def close(self) -> None:
        pass

    # --- walking ---------------------------------------------------------------------------------

    def _walk(self) -> Iterator[tuple[str, Path]]:
        visited: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.base, followlinks=True):
            current = Path(dirpath)
            real = os.path.realpath(current)
            rel_dir = current.relative_to(self.base)
            if real in visited:
                dirnames[:] = []  # a directory loop (or two links to one directory)
                continue
            visited.add(real)
            self._inside_root(current, str(rel_dir))
            if current == self.base:
                dirnames[:] = [d for d in dirnames if d != STATE_DIR_NAME]
                filenames = [f for f in filenames if f != STATE_DIR_NAME]
            dirnames.sort()
            for filename in sorted(filenames):
                path = current / filename
                name = (rel_dir / filename).as_posix()
                self._inside_root(path, name)
                try:
                    mode = path.stat().st_mode
                except FileNotFoundError:
                    log.warning("%s: skipping dangling symlink %s", self.describe(), name)
                    continue
                if stat.S_ISREG(mode):
                    yield name, path
                else:
                    log.warning("%s: skipping %s (not a regular file)", self.describe(), name)

    def _inside_root(self, path: Path, name: str) -> None:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(os.path.realpath(self.root)):
            raise UnsafePathError(f"{self.describe()}: {name} is a symlink leading outside the claim")
