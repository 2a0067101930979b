from __future__ import annotations

import pytest

import activities.download as download_module
from tests.storage.fakes import MemoryBackend


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> dict[str, MemoryBackend]:
    """Set `source["backend"]` to the MemoryBackend the download activity should open next."""
    current: dict[str, MemoryBackend] = {}
    monkeypatch.setattr(download_module, "open_backend", lambda *a, **k: current["backend"])
    return current
