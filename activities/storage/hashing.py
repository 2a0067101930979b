"""Digests computed while a file is written, in one pass, whatever order its parts arrive in.

A source promises some of: SHA-256 (Hugging Face LFS), a git blob SHA-1 (Hugging Face non-LFS
files), an MD5 (OCI `content-md5`, S3 single-part ETag), or a composite multipart MD5 (S3/OCI
multipart uploads: the MD5 of the concatenated binary MD5s of each upload part, then `-N`).
`StreamDigests` feeds one ordered byte stream into exactly the digests the source promises.

Sequential digests need bytes in file order, but ranged parts are written out of order.
`OrderedHasher` follows the *contiguous written prefix* of the file:

- fast path: a part writer that has just written the bytes at exactly the hash position hands
  them over in memory (`offer`), so a file fetched as one stream is hashed with no read-back;
- otherwise the file's coordinator reads back bytes that are already written but not yet hashed
  (`catch_up`), from the page cache, in fixed-size blocks, while the download continues.

Either way every byte is hashed once, in order, while the file is being fetched; when the last
part lands only the tail not yet hashed remains. Memory stays bounded (one read-back block per
file). A resumed file starts hashing at offset 0 and reads its already-present ranges back from
disk, so its digest is exactly as trustworthy as a fresh download's.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from activities.storage.base import Buffer, RemoteFile

if TYPE_CHECKING:
    from activities.storage.parts import RangeSet

# Small enough that a block read back is still in the CPU cache when it is hashed: with 8 MiB
# blocks the pull spent more kernel time reading back than receiving (bench/README.md).
READ_BACK_BLOCK = 256 * 1024


def expected_digests(remote: RemoteFile) -> dict[str, str]:
    """The digests `remote` promises, by kind (`sha256`, `git_sha1`, `md5`, `multipart_md5`)."""
    expected: dict[str, str] = {}
    if remote.sha256:
        expected["sha256"] = remote.sha256.lower()
    if remote.git_sha1:
        expected["git_sha1"] = remote.git_sha1.lower()
    if remote.md5:
        expected["md5"] = remote.md5.lower()
    # Without the upload part size the part boundaries are unknown, so the value cannot be checked.
    if remote.multipart_md5 and remote.multipart_part_size:
        expected["multipart_md5"] = remote.multipart_md5.lower()
    return expected


def digest_mismatches(expected: dict[str, str], got: dict[str, str]) -> list[tuple[str, str, str]]:
    """(kind, expected, got) for every promised digest that differs."""
    return [(kind, want, got.get(kind, "")) for kind, want in expected.items() if got.get(kind) != want]


class _MultipartMd5:
    """MD5 per upload part over exact part boundaries, combined as S3 and OCI do."""

    def __init__(self, part_size: int) -> None:
        self._part_size = part_size
        self._part_digests: list[bytes] = []
        self._current = hashlib.md5(usedforsecurity=False)
        self._in_part = 0

    def update(self, data: Buffer) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), self._part_size - self._in_part)
            self._current.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self._part_size:
                self._part_digests.append(self._current.digest())
                self._current = hashlib.md5(usedforsecurity=False)
                self._in_part = 0

    def hexdigest(self) -> str:
        digests = list(self._part_digests)
        if self._in_part or not digests:
            digests.append(self._current.digest())
        combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(digests)}"


class StreamDigests:
    """The digests one file promises, fed by a single in-order stream of its bytes."""

    def __init__(self, remote: RemoteFile, *, kinds: Sequence[str] | None = None) -> None:
        wanted = set(kinds if kinds is not None else expected_digests(remote))
        self._hashers: dict[str, hashlib._Hash | _MultipartMd5] = {}
        if "sha256" in wanted:
            self._hashers["sha256"] = hashlib.sha256()
        if "git_sha1" in wanted:
            git = hashlib.sha1(usedforsecurity=False)
            git.update(b"blob %d\0" % remote.size)
            self._hashers["git_sha1"] = git
        if "md5" in wanted:
            self._hashers["md5"] = hashlib.md5(usedforsecurity=False)
        if "multipart_md5" in wanted and remote.multipart_part_size:
            self._hashers["multipart_md5"] = _MultipartMd5(remote.multipart_part_size)
        self.position = 0

    @property
    def empty(self) -> bool:
        return not self._hashers

    def update(self, data: Buffer) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)
        self.position += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {kind: hasher.hexdigest() for kind, hasher in self._hashers.items()}


def hash_file(path: os.PathLike[str] | str, remote: RemoteFile, *, kinds: Sequence[str]) -> dict[str, str]:
    """Digests of a file already on disk (used only to re-check files kept from an earlier run)."""
    digests = StreamDigests(remote, kinds=kinds)
    buffer = bytearray(READ_BACK_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digests.update(view[:n])
    return digests.hexdigests()


class OrderedHasher:
    """Hashes a file being written out of order by following its contiguous written prefix.

    `written` is the file's RangeSet of bytes already on disk (part writers add to it *before*
    offering the same bytes). One lock serialises digest updates; writers never wait for it.
    """

    def __init__(self, *, fd: int, size: int, digests: StreamDigests, written: RangeSet) -> None:
        self._fd = fd
        self._size = size
        self._digests = digests
        self._written = written
        self._lock = threading.Lock()
        self._buffer: bytearray | None = None
        self.read_back_bytes = 0  # hashed from disk rather than in memory (for tests and tuning)

    @property
    def position(self) -> int:
        return self._digests.position

    @property
    def complete(self) -> bool:
        return self._digests.position >= self._size

    def offer(self, offset: int, chunks: Sequence[Buffer]) -> None:
        """Hash freshly written `chunks` in memory if they start exactly at the hash position."""
        if self._digests.empty or not self._lock.acquire(blocking=False):
            return
        try:
            if self._digests.position == offset:
                for chunk in chunks:
                    self._digests.update(chunk)
        finally:
            self._lock.release()

    def catch_up(self, *, limit: int = 64 * 1024 * 1024) -> int:
        """Read back and hash up to `limit` written-but-unhashed bytes; returns how many."""
        if self._digests.empty:
            # Nothing to hash: only track the position, so `complete` means "all bytes written".
            self._digests.position = min(self._size, self._written.covered_end(self._digests.position))
            return 0
        done = 0
        with self._lock:
            if self._buffer is None:
                self._buffer = bytearray(READ_BACK_BLOCK)
            view = memoryview(self._buffer)
            while done < limit:
                position = self._digests.position
                available = min(self._written.covered_end(position), self._size) - position
                if available <= 0:
                    break
                n = os.preadv(self._fd, [view[: min(available, READ_BACK_BLOCK)]], position)
                if n <= 0:
                    raise OSError(f"short read-back at offset {position} while hashing")
                self._digests.update(view[:n])
                done += n
                self.read_back_bytes += n
        return done

    def release(self) -> None:
        """Drop the read-back buffer (the file is done or abandoned)."""
        self._buffer = None

    def hexdigests(self) -> dict[str, str]:
        return self._digests.hexdigests()
