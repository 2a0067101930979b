"""A model that cannot fit fails at once with "needs X, Y free", before any byte is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.storage import diskspace
from activities.storage.engine import download_model
from modelferry.errors import InsufficientDiskSpaceError
from tests.storage.conftest import model_bytes
from tests.storage.fakes import MemoryBackend


def test_not_enough_space_is_refused_up_front(dest: Path, fast_options, monkeypatch) -> None:
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 20 * 1024 * 1024)
    backend = MemoryBackend({"w.bin": model_bytes(8 * 1024 * 1024, seed=1), "x.bin": b"1"})
    backend.extra = []
    # 8 MiB + 16 MiB reserve > 20 MiB
    with pytest.raises(InsufficientDiskSpaceError, match=r"needs 8\.0 MiB, 20\.0 MiB free"):
        download_model(backend, dest, options=fast_options)
    assert backend.requests == []


def test_human_units() -> None:
    assert diskspace.human_bytes(0) == "0 B"
    assert diskspace.human_bytes(1536) == "1.5 KiB"
    assert diskspace.human_bytes(3 * 1024**3) == "3.0 GiB"
