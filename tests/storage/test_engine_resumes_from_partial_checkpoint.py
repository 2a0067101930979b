"""Cancel mid-download, then resume: only the missing byte ranges are fetched again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from activities.storage.engine import DownloadCancelledError, download_model
from tests.storage.conftest import model_bytes, visible_files
from tests.storage.fakes import MemoryBackend, Stall

FILES = {
    "big-1.bin": model_bytes(3_000_000, seed=1),
    "big-2.bin": model_bytes(2_000_000, seed=2),
    "small.txt": model_bytes(1000, seed=3),
}
TOTAL = sum(map(len, FILES.values()))


def _on_disk(dest: Path) -> int:
    """Bytes a resumed run may skip: journaled files plus checkpointed ranges."""
    state = dest / ".modelferry"
    done = 0
    if (state / "journal.json").exists():
        done += sum(f["size"] for f in json.loads((state / "journal.json").read_text())["files"])
    for log in (state / "partial").rglob("*.parts.jsonl"):
        last = json.loads(log.read_text().splitlines()[-1])
        done += sum(e - s for s, e in last["done"])
    return done


def test_cancel_leaves_resumable_state_and_resume_fetches_only_the_rest(dest: Path, fast_options) -> None:
    fast_options.concurrency = 2
    backend = MemoryBackend(dict(FILES), chunk=32 * 1024)
    cancel = threading.Event()
    backend.on_bytes = lambda served: served >= TOTAL // 2 and cancel.set()
    with pytest.raises(DownloadCancelledError):
        download_model(backend, dest, options=fast_options, cancel=cancel)

    assert not (dest / ".modelferry/manifest.json").exists()
    partials = list((dest / ".modelferry/partial").rglob("*.partial"))
    assert partials, "the interrupted files stay as resumable partials"
    assert set(visible_files(dest)) <= set(FILES)  # only complete files are visible
    kept = _on_disk(dest)
    assert 0 < kept < TOTAL

    backend.bytes_served = 0
    backend.on_bytes = None
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == TOTAL - kept == backend.bytes_served
    assert visible_files(dest) == FILES
    assert not (dest / ".modelferry/partial").exists()


def test_corrupted_checkpointed_bytes_are_caught_by_the_hash_and_refetched(dest: Path, fast_options) -> None:
    backend = MemoryBackend({"big.bin": FILES["big-1.bin"]}, chunk=32 * 1024)
    cancel = threading.Event()
    backend.on_bytes = lambda served: served >= 2_000_000 and cancel.set()
    with pytest.raises(DownloadCancelledError):
        download_model(backend, dest, options=fast_options, cancel=cancel)
    partial = next((dest / ".modelferry/partial").rglob("*.partial"))
    with open(partial, "r+b") as f:  # flip a byte inside the first checkpointed range
        f.write(b"\xff\xfe")
    backend.on_bytes = None
    download_model(backend, dest, options=fast_options)
    assert (dest / "big.bin").read_bytes() == FILES["big-1.bin"]


def test_cancel_returns_promptly_even_with_a_stalled_stream(dest: Path, fast_options) -> None:
    fast_options.stall_timeout = 60
    backend = MemoryBackend({"big.bin": FILES["big-1.bin"]})
    backend.fail("big.bin", *[Stall(after=0, seconds=30)] * 3)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(DownloadCancelledError):
            download_model(backend, dest, options=fast_options, cancel=cancel)
        assert time.monotonic() - started < 1.5
    finally:
        backend.close()
