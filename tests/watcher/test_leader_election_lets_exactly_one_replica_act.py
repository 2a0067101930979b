"""Leader election over a Lease with optimistic concurrency: two replicas, exactly one acting;
hand-over on release, on expiry after a partition, and when someone else holds the Lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from watcher_fakes import FakeLeases, until

from modelferry.errors import KubeUnavailableError
from watcher.leader import LeaderElector, format_micro_time, lease_expired

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
TIMING: dict[str, Any] = {"lease_duration": 2, "renew_deadline": 1.0, "retry_period": 0.1}


@pytest.mark.parametrize(
    ("spec", "expired"),
    [
        ({}, True),
        ({"holderIdentity": "a", "leaseDurationSeconds": 15}, True),  # never renewed
        (
            {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "renewTime": format_micro_time(NOW - timedelta(seconds=16)),
            },
            True,
        ),
        (
            {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "renewTime": format_micro_time(NOW - timedelta(seconds=14)),
            },
            False,
        ),
        (
            {"holderIdentity": "", "leaseDurationSeconds": 15, "renewTime": format_micro_time(NOW)},
            True,
        ),  # released
    ],
)
def test_lease_expired(spec: dict[str, Any], expired: bool) -> None:
    assert lease_expired(spec, now=NOW) is expired


class Partition:
    """One replica's view of the API: can be cut off alone."""

    def __init__(self, api: FakeLeases) -> None:
        self.api, self.cut = api, False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.api, name)

        def guarded(**kwargs: Any) -> Any:
            if self.cut:
                raise KubeUnavailableError("partitioned")
            return call(**kwargs)

        return guarded


class Replica:
    def __init__(self, api: FakeLeases, identity: str, acting: set[str], overlaps: list[set[str]]) -> None:
        self.view = Partition(api)
        self.elector = LeaderElector(api=self.view, namespace="ome", identity=identity, **TIMING)
        self.stop = asyncio.Event()
        self.identity, self._acting, self._overlaps = identity, acting, overlaps

    async def work(self) -> None:
        self._acting.add(self.identity)
        try:
            if len(self._acting) > 1:
                self._overlaps.append(set(self._acting))
            await asyncio.Event().wait()
        finally:
            self._acting.discard(self.identity)


@asynccontextmanager
async def two_replicas(api: FakeLeases) -> AsyncIterator[tuple[Replica, Replica, set[str], list[set[str]]]]:
    acting: set[str] = set()
    overlaps: list[set[str]] = []
    replicas = [Replica(api, name, acting, overlaps) for name in ("a", "b")]
    tasks = [asyncio.create_task(r.elector.run(r.work, stop=r.stop)) for r in replicas]
    try:
        yield replicas[0], replicas[1], acting, overlaps
    finally:
        for r in replicas:
            r.stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)


def holder(api: FakeLeases) -> str | None:
    lease = api.leases.get(("ome", "modelferry-watcher"))
    return lease["spec"].get("holderIdentity") if lease else None


async def test_exactly_one_acts_and_a_release_hands_over_at_once() -> None:
    api = FakeLeases()
    async with two_replicas(api) as (a, b, acting, overlaps):
        await until(lambda: len(acting) == 1)
        await asyncio.sleep(0.5)  # several renew rounds
        assert len(acting) == 1 and overlaps == []
        leader, standby = (a, b) if "a" in acting else (b, a)
        assert holder(api) == leader.identity and leader.elector.is_leader and not standby.elector.is_leader
        started = asyncio.get_running_loop().time()
        leader.stop.set()  # graceful shutdown releases the Lease ...
        await until(lambda: acting == {standby.identity})
        assert asyncio.get_running_loop().time() - started < TIMING["lease_duration"]  # ... no expiry wait
        assert overlaps == []
        assert api.leases[("ome", "modelferry-watcher")]["spec"]["leaseTransitions"] == 1


async def test_a_partitioned_leader_stops_acting_before_the_other_takes_over() -> None:
    api = FakeLeases()
    async with two_replicas(api) as (a, b, acting, overlaps):
        await until(lambda: len(acting) == 1)
        leader, standby = (a, b) if "a" in acting else (b, a)
        leader.view.cut = True  # it can no longer renew
        await until(lambda: leader.identity not in acting, timeout=3)  # steps down after renew_deadline
        await until(lambda: acting == {standby.identity}, timeout=5)  # the Lease expires; standby takes it
        assert overlaps == []
        leader.view.cut = False  # back, but the Lease is held and fresh: stays standby
        await asyncio.sleep(0.5)
        assert acting == {standby.identity} and holder(api) == standby.identity


async def test_work_failing_releases_the_lease_and_raises() -> None:
    api = FakeLeases()

    async def broken() -> None:
        raise RuntimeError("boom")

    elector = LeaderElector(api=api, namespace="ome", identity="a", **TIMING)
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(elector.run(broken, stop=asyncio.Event()), 5)
    assert holder(api) is None


def test_timing_must_let_a_leader_step_down_before_expiry() -> None:
    with pytest.raises(ValueError):
        LeaderElector(api=FakeLeases(), namespace="ome", identity="a", lease_duration=5, renew_deadline=6)
