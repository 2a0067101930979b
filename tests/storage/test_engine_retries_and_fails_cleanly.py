"""Faults end verified-correct after retries, or clearly failed with nothing corrupt left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from activities.storage.engine import download_model
from modelferry.errors import (
    AccessDeniedError,
    PersistentChecksumMismatchError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from tests.storage.conftest import model_bytes, partial_files, visible_files
from tests.storage.fakes import Corrupt, MemoryBackend, Raise, Reset, Stall, Truncate

BIG = model_bytes(1_200_000, seed=1)
FILES = {"big.bin": BIG, "small.txt": b"small"}


@pytest.mark.parametrize(
    "faults",
    [
        [Reset(after=100_000)],
        [Reset(after=0), Reset(after=70_000), Reset(after=1)],
        [Truncate(short=10)],
        [Corrupt()],
        [Raise(SourceUnavailableError("HTTP 503"))],
    ],
    ids=["reset", "three-resets", "truncated", "corrupt-once", "503"],
)
def test_temporary_faults_end_verified(faults, dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    backend.fail("big.bin", *faults)
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert partial_files(dest) == []


def test_retry_after_is_honoured(dest: Path, fast_options) -> None:
    backend = MemoryBackend({"small.txt": b"x" * 100})
    backend.fail("small.txt", Reset(after=0, retry_after=0.4))
    started = time.monotonic()
    download_model(backend, dest, options=fast_options)
    assert time.monotonic() - started >= 0.4
    assert len(backend.requests) == 2


def test_a_stalled_part_is_aborted_and_retried(dest: Path, fast_options) -> None:
    fast_options.stall_timeout = 0.3
    backend = MemoryBackend(dict(FILES))
    backend.fail("big.bin", Stall(after=50_000, seconds=30))
    started = time.monotonic()
    try:
        download_model(backend, dest, options=fast_options)
        assert time.monotonic() - started < 3
        assert visible_files(dest) == FILES
    finally:
        backend.close()


def test_checksum_wrong_twice_is_permanent_and_leaves_nothing(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    backend.fail("big.bin", *[Corrupt()] * 20)  # every part of both downloads is wrong
    with pytest.raises(PersistentChecksumMismatchError) as caught:
        download_model(backend, dest, options=fast_options)
    message = str(caught.value)
    assert "big.bin" in message and "expected" in message and "got" in message
    assert "big.bin" not in visible_files(dest)
    assert partial_files(dest) == []
    assert not (dest / ".modelferry/manifest.json").exists()


@pytest.mark.parametrize("error", [SourceNotFoundError("404 EntryNotFound"), AccessDeniedError("403")])
def test_permanent_errors_are_not_retried(error, dest: Path, fast_options) -> None:
    backend = MemoryBackend({"small.txt": b"small"})
    backend.fail("small.txt", Raise(error))
    with pytest.raises(type(error)):
        download_model(backend, dest, options=fast_options)
    assert len(backend.requests) == 1
    assert partial_files(dest) == [] and visible_files(dest) == {}


def test_exhausted_retries_fail_temporarily_and_keep_resumable_bytes(dest: Path, fast_options) -> None:
    backend = MemoryBackend({"big.bin": BIG})
    backend.fail("big.bin", *[Reset(after=0)] * 20)
    with pytest.raises(SourceUnavailableError):
        download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == {}
    assert not (dest / ".modelferry/manifest.json").exists()
    backend.faults.clear()
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == {"big.bin": BIG}
