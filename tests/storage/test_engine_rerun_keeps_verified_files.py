"""Re-runs: a complete directory transfers nothing; changes are fetched, verified, then swapped in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.storage.engine import download_model
from modelferry.errors import PersistentChecksumMismatchError
from tests.storage.conftest import model_bytes, partial_files, visible_files
from tests.storage.fakes import Corrupt, MemoryBackend

FILES = {"a.bin": model_bytes(600_000, seed=1), "b/c.txt": b"cee", "d.bin": model_bytes(40_000, seed=2)}


def test_rerun_over_complete_directory_transfers_zero_bytes(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    manifest_mtime = (dest / ".modelferry/manifest.json").stat().st_mtime_ns
    served = backend.bytes_served
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == 0 and backend.bytes_served == served
    assert (dest / ".modelferry/manifest.json").stat().st_mtime_ns == manifest_mtime
    assert {r.name for r in result.files} == set(FILES)


def test_touched_file_is_rehashed_not_refetched(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    os.utime(dest / "a.bin", ns=(1, 1))
    served = backend.bytes_served
    assert download_model(backend, dest, options=fast_options).bytes_transferred == 0
    assert backend.bytes_served == served


def test_rehash_finds_a_corrupted_file_and_refetches_only_it(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    path = dest / "d.bin"
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"\0\0\0")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot keeps the mtime
    fast_options.rehash_existing = True
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == len(FILES["d.bin"])
    assert visible_files(dest) == FILES


def test_digestless_files_are_refetched_only_when_the_revision_changes(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES), digests=())
    download_model(backend, dest, options=fast_options)
    assert download_model(backend, dest, options=fast_options).bytes_transferred == 0
    backend.revision = "rev-2"
    assert download_model(backend, dest, options=fast_options).bytes_transferred == sum(
        map(len, FILES.values())
    )


def test_new_revision_fetches_changes_and_removes_only_our_stale_files(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    (dest / "b" / "notes-by-a-user.txt").write_text("mine")
    backend.files = {"a.bin": FILES["a.bin"], "d.bin": model_bytes(40_000, seed=9), "e.txt": b"new"}
    backend.revision = "rev-2"
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == 40_000 + 3
    assert visible_files(dest) == {**backend.files, "b/notes-by-a-user.txt": b"mine"}
    assert result.revision == "rev-2"


def test_a_changed_file_replaces_the_old_one_only_after_verification(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    backend.files = {**FILES, "d.bin": model_bytes(40_000, seed=7)}
    backend.revision = "rev-2"
    backend.fail("d.bin", Corrupt(), Corrupt())
    with pytest.raises(PersistentChecksumMismatchError):
        download_model(backend, dest, options=fast_options)
    assert (dest / "d.bin").read_bytes() == FILES["d.bin"]  # the old, good file is untouched
    assert not (dest / ".modelferry/manifest.json").exists()  # but the directory is not "complete"
    assert partial_files(dest) == []
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == 40_000  # a.bin and b/c.txt were kept via the journal
    assert visible_files(dest) == backend.files
