"""Fixtures for the watcher tests: the cluster backends the behaviour tests run against — an
in-memory fake and the embedded API server (real HTTP, the official client, real watch rules)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from watcher_fakes import FakeBackend


@pytest.fixture(params=["fake", "embedded"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "embedded":
        from watcher_embedded import EmbeddedBackend

        made: Any = EmbeddedBackend()
    else:
        made = FakeBackend()
    try:
        yield made
    finally:
        made.close()
