"""A Job-mode worker exits when idle (`worker.idle_exit_seconds`), and a continuous-verification
check is work: while one runs the worker is not idle (a deep check of a large model takes far
longer than the idle exit), and idleness counts from its end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import activities.continuous_verify as cv
from activities.continuous_verify import ContinuousVerifier, models_roots_on_host
from modelferry.commands.runtime import IdleTracker, run_until_idle
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import deliver
from tests.storage.fakes import MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_for_is_zero_while_busy_and_counts_from_the_end():
    clock = Clock()
    idle = IdleTracker(clock=clock)
    clock.now += 50
    assert idle.idle_for() == 50
    with idle.busy():
        clock.now += 1_000  # a deep check
        assert idle.idle_for() == 0
        with idle.busy():  # an activity meanwhile
            clock.now += 10
        assert idle.idle_for() == 0  # the check still runs
        clock.now += 10
    assert idle.idle_for() == 0
    clock.now += 30
    assert idle.idle_for() == 30


class _Worker:
    """Stands in for a temporalio Worker: runs until shut down."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        await self._stopped.wait()

    async def shutdown(self) -> None:
        self._stopped.set()


async def test_the_idle_exit_waits_for_a_running_check():
    idle = IdleTracker()
    check_done = asyncio.Event()

    async def long_check() -> None:
        with idle.busy():
            await check_done.wait()

    checking = asyncio.create_task(long_check())
    await asyncio.sleep(0)
    exiting = asyncio.create_task(run_until_idle(_Worker(), idle, idle_exit_seconds=0.2))  # type: ignore[arg-type]
    await asyncio.sleep(0.8)  # four idle exits' worth
    assert not exiting.done()
    check_done.set()
    await checking
    ended = time.monotonic()
    await asyncio.wait_for(exiting, timeout=5)
    assert time.monotonic() - ended >= 0.2  # idle counted from the check's end


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


async def test_the_verifier_is_busy_exactly_while_it_checks(settings, source, monkeypatch):
    source["backend"] = MemoryBackend({"config.json": b"{}"}, revision="main")
    deliver(settings, INPUT)
    clock = Clock()
    idle = IdleTracker(clock=clock)
    seen: list[Any] = []
    original = cv.check_version

    def slow_check(held, kind, *, stop=None):
        clock.now += 3_600  # an hour of hashing
        seen.append((idle.running, idle.idle_for()))
        return original(held, kind, stop=stop)

    monkeypatch.setattr(cv, "check_version", slow_check)

    async def send(owner, report) -> None:
        raise AssertionError(report)

    verifier = ContinuousVerifier(
        node="node-1",
        models_roots=models_roots_on_host(settings),
        verify_interval=600.0,
        deep_interval=86400.0,
        send=send,
        clock=clock,
        busy=idle.busy,
    )
    await verifier.run_pass()
    assert seen == [(1, 0.0)]
    assert idle.running == 0 and idle.idle_for() == 0
    clock.now += 5
    assert idle.idle_for() == 5
