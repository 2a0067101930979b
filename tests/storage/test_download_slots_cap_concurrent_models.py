"""`download_slots(n)` caps how many models one process downloads at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from activities.storage import engine
from activities.storage.engine import DownloadCancelledError, download_model, download_slots
from tests.storage.fakes import MemoryBackend


class _SlowBackend(MemoryBackend):
    active = 0
    peak = 0
    guard = threading.Lock()

    def list_files(self):
        with _SlowBackend.guard:
            _SlowBackend.active += 1
            _SlowBackend.peak = max(_SlowBackend.peak, _SlowBackend.active)
        time.sleep(0.15)
        with _SlowBackend.guard:
            _SlowBackend.active -= 1
        return super().list_files()


@pytest.fixture(autouse=True)
def _restore_slots():
    yield
    download_slots(engine.DEFAULT_DOWNLOAD_SLOTS)


def test_one_slot_serialises_models(tmp_path: Path, fast_options) -> None:
    download_slots(1)
    threads = [
        threading.Thread(
            target=download_model,
            args=(_SlowBackend({"a": b"a"}), tmp_path / f"m{i}"),
            kwargs={"options": fast_options},
        )
        for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert _SlowBackend.peak == 1
    assert all((tmp_path / f"m{i}" / "a").exists() for i in range(3))


def test_waiting_for_a_slot_can_be_cancelled(tmp_path: Path, fast_options) -> None:
    download_slots(1)
    with engine._download_slot(threading.Event()):  # the only slot is taken
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(DownloadCancelledError):
            download_model(MemoryBackend({"a": b"a"}), tmp_path / "m", options=fast_options, cancel=cancel)


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        download_slots(0)


def test_two_downloads_into_one_directory_do_not_interleave(tmp_path: Path, fast_options) -> None:
    download_slots(4)
    data = {"w.bin": bytes(range(256)) * 8000, "c.json": b"{}"}
    backends = [MemoryBackend(dict(data), chunk=4096) for _ in range(2)]
    results = []
    threads = [
        threading.Thread(
            target=lambda b=b: results.append(download_model(b, tmp_path / "m", options=fast_options))
        )
        for b in backends
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r.bytes_transferred for r in results) == [0, sum(map(len, data.values()))]
    assert (tmp_path / "m" / "w.bin").read_bytes() == data["w.bin"]
