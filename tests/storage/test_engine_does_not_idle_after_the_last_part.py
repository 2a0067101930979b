"""A file is done when its last part is: the coordinator must not sleep a tick after that."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import activities.storage.transfer as transfer
from activities.storage.engine import download_model
from tests.storage.conftest import model_bytes, visible_files
from tests.storage.fakes import MemoryBackend

FILES = {f"f{i}.json": model_bytes(700, seed=i) for i in range(3)}


def test_small_files_finish_without_waiting_out_the_coordinator_tick(
    dest: Path, fast_options, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a one-minute tick, any sleep after the last part would hold each file for a minute;
    # nothing here fails or stalls, so nothing else waits for the tick.
    monkeypatch.setattr(transfer, "TICK", 60.0)
    fast_options.concurrency = 1
    done = threading.Event()

    def run() -> None:
        download_model(MemoryBackend(dict(FILES)), dest, options=fast_options)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(30), "the coordinator slept after the last part of a file"
    assert visible_files(dest) == FILES
