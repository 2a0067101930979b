from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelferry.dev.temporal_server import TemporalDevServer


@pytest.fixture(scope="module")
def temporal() -> Iterator[TemporalDevServer]:
    """A real Temporal dev server per test module (in memory; each test uses its own IDs)."""
    server = TemporalDevServer(ui_port=None)
    server.start()
    yield server
    server.stop()
