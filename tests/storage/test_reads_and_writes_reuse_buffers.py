"""The data path: reads into one reused buffer with adaptive sizes, writes in bounded slices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import activities.storage.base as base
import activities.storage.transfer as transfer
from activities.storage.base import MIN_READ_BYTES, READ_BUFFER_BYTES, read_into_reused_buffer


class Source:
    """A `readinto` over bytes that fills at most `cap` per call and records what was asked."""

    def __init__(self, data: bytes, *, cap: int | None = None) -> None:
        self.data = data
        self.position = 0
        self.cap = cap
        self.asked: list[int] = []

    def readinto(self, view: memoryview) -> int:
        self.asked.append(len(view))
        n = min(len(view), len(self.data) - self.position, self.cap or len(view))
        view[:n] = self.data[self.position : self.position + n]
        self.position += n
        return n


def test_chunks_are_views_of_one_buffer_and_add_up_to_the_length() -> None:
    data = os.urandom(5 * READ_BUFFER_BYTES + 123)
    source = Source(data + b"more than asked for")
    received, buffers = bytearray(), set()
    for view in read_into_reused_buffer(source.readinto, len(data)):
        assert isinstance(view, memoryview)
        buffers.add(id(view.obj))
        received += view
    assert bytes(received) == data
    assert len(buffers) == 1  # no allocation per chunk


def test_reads_grow_while_fast_and_shrink_when_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    source = Source(os.urandom(20 * READ_BUFFER_BYTES))
    chunks = read_into_reused_buffer(source.readinto, 20 * READ_BUFFER_BYTES)
    for _ in range(8):  # fast reads: the size doubles up to the buffer
        next(chunks)
    assert source.asked[0] == MIN_READ_BYTES
    assert source.asked[-1] == READ_BUFFER_BYTES
    slow = source.readinto

    def slow_readinto(view: memoryview) -> int:
        clock[0] += 2.0  # a slow link: each read takes 2 s
        return slow(view)

    source.readinto = slow_readinto  # type: ignore[method-assign]
    chunks = read_into_reused_buffer(source.readinto, 10 * READ_BUFFER_BYTES)
    for _ in range(4):
        next(chunks)
    assert source.asked[-4:] == [MIN_READ_BYTES] * 4  # never above the floor while slow


def test_a_short_source_ends_the_chunks_early() -> None:
    source = Source(b"x" * 1000, cap=300)
    got = b"".join(bytes(v) for v in read_into_reused_buffer(source.readinto, 5000))
    assert got == b"x" * 1000


def test_writes_are_sliced_and_survive_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwrite = os.pwrite
    sizes: list[int] = []

    def short_pwrite(fd: int, data: memoryview, offset: int) -> int:
        sizes.append(len(data))
        return real_pwrite(fd, data[: max(1, len(data) // 2)], offset)  # the kernel may write less

    monkeypatch.setattr(transfer.os, "pwrite", short_pwrite)
    chunks = [os.urandom(3 * transfer.WRITE_SLICE + 7), os.urandom(10)]
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        transfer.write_all(fd, chunks, 100)
    finally:
        os.close(fd)
    assert path.read_bytes()[100:] == b"".join(chunks)
    assert max(sizes) == transfer.WRITE_SLICE
