"""Fixtures for the watcher tests: the cluster backends the behaviour tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from watcher_fakes import FakeBackend


@pytest.fixture(params=["fake"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    made = FakeBackend()
    try:
        yield made
    finally:
        made.close()
