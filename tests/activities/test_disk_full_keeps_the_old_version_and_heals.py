"""A disk that fills up, before or during a transfer, on a real small filesystem (a tmpfs):
the failure is retryable with the free space measured afresh on each try, no partial file is
left behind, the previous version stays served, and the update succeeds once space is freed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.storage.diskspace import RESERVE_BYTES
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import MEMORY_MODEL_PATH as PATH
from tests.activities.node_work import deliver as deliver_model
from tests.storage.fakes import MemoryBackend

pytestmark = pytest.mark.faults

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "disk"
    root.mkdir()
    size = 2 * RESERVE_BYTES + 24 * MiB
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def settings(small_disk: Path) -> Settings:
    # One file at a time: space is allocated per file as it starts, so filling the disk after the
    # first file makes the next one hit ENOSPC mid-download.
    return load_settings(environ={}, overrides={"node.root": str(small_disk), "download.concurrency": 1})


def deliver(settings: Settings) -> str:
    return deliver_model(settings, INPUT)


def served(settings: Settings) -> bytes:
    link = settings.node.root / PATH.lstrip("/")
    return b"".join((link / name).read_bytes() for name in sorted(FILES))


FILES = ("w1.bin", "w2.bin", "w3.bin")


def model(fill_byte: bytes, **kwargs) -> MemoryBackend:
    return MemoryBackend({name: fill_byte * 3 * MiB for name in FILES}, revision="main", **kwargs)


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".parts.jsonl"))]


def fill(root: Path, *, leave: int) -> Path:
    filler = root / "filler"
    free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        f.truncate(0)
        chunk = b"\0" * MiB
        for _ in range(max(0, (free - leave) // MiB)):
            f.write(chunk)
    return filler


def test_disk_filled_mid_download_keeps_old_version_leaves_no_partial_and_heals(settings, source, small_disk):
    source["backend"] = model(b"A")
    deliver(settings)
    update = model(b"B", chunk=256 * 1024)
    filler: list[Path] = []

    def fill_once(served_bytes: int) -> None:
        if served_bytes >= 4 * MiB and not filler:
            filler.append(fill(small_disk, leave=0))

    update.on_bytes = fill_once
    source["backend"] = update
    with pytest.raises(ApplicationError) as caught:
        deliver(settings)
    assert caught.value.type == "InsufficientDiskSpaceError" and not caught.value.non_retryable
    assert served(settings) == b"A" * 9 * MiB
    assert partial_files(small_disk) == []

    filler[0].unlink()
    source["backend"] = model(b"B")
    deliver(settings)
    assert served(settings) == b"B" * 9 * MiB


def test_no_room_before_the_first_byte_is_retryable_and_says_what_is_free_now(settings, source, small_disk):
    filler = fill(small_disk, leave=RESERVE_BYTES + 4 * MiB)
    source["backend"] = model(b"A")
    messages = []
    for _ in range(2):
        with pytest.raises(ApplicationError) as caught:
            deliver(settings)
        assert caught.value.type == "InsufficientDiskSpaceError" and not caught.value.non_retryable
        messages.append(caught.value.message)
        with open(filler, "r+b") as f:  # someone frees 2 MiB between the tries
            f.truncate(max(0, os.path.getsize(filler) - 2 * MiB))
    assert messages[0] != messages[1], "the free space in the message is measured on each try"
    filler.unlink()
    deliver(settings)
    assert served(settings) == b"A" * 9 * MiB
