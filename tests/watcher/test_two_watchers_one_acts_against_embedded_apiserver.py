"""Two `run_watcher` replicas with leader election over the embedded API server: exactly one
applies; when it shuts down (releasing the Lease) the other takes over and applies again — the
same generation, which the model workflow drops as already applied."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from watcher_builders import model_obj
from watcher_embedded import EmbeddedBackend
from watcher_fakes import RecordingGateway, until

from modelferry.errors import KubeNotFoundError
from modelferry.names import ModelKind
from watcher.act import Backoff
from watcher.decide import EventType, Ignore, ModelEvent
from watcher.leader import LeaderElector
from watcher.run import LeaderTiming, run_watcher

TIMING = LeaderTiming(lease_duration=2, renew_deadline=1.0, retry_period=0.1)


@pytest.fixture
def cluster() -> Any:
    backend = EmbeddedBackend()
    yield backend
    backend.close()


def lease_holder(cluster: EmbeddedBackend) -> str | None:
    lease = cluster.kube.read_lease(namespace="ome", name="modelferry-watcher")
    return lease["spec"].get("holderIdentity")


async def test_two_electors_over_the_api_server_one_leads(cluster: EmbeddedBackend) -> None:
    leading: set[str] = set()
    overlaps: list[set[str]] = []
    stops = {name: asyncio.Event() for name in ("a", "b")}

    def work_for(name: str) -> Any:
        async def work() -> None:
            leading.add(name)
            if len(leading) > 1:
                overlaps.append(set(leading))
            try:
                await asyncio.Event().wait()
            finally:
                leading.discard(name)

        return work

    electors = {
        name: LeaderElector(
            api=cluster.kube,
            namespace="ome",
            identity=name,
            lease_duration=TIMING.lease_duration,
            renew_deadline=TIMING.renew_deadline,
            retry_period=TIMING.retry_period,
        )
        for name in stops
    }
    tasks = [asyncio.create_task(e.run(work_for(n), stop=stops[n])) for n, e in electors.items()]
    try:
        await until(lambda: len(leading) == 1)
        await asyncio.sleep(0.5)
        [first] = leading
        assert lease_holder(cluster) == first and overlaps == []
        stops[first].set()
        other = "b" if first == "a" else "a"
        await until(lambda: leading == {other}, timeout=TIMING.lease_duration)  # released: no expiry wait
        assert lease_holder(cluster) == other and overlaps == []
    finally:
        for stop in stops.values():
            stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


async def test_two_watcher_replicas_only_the_leader_applies(cluster: EmbeddedBackend) -> None:
    cluster.create(model_obj("llama", kind=ModelKind.CLUSTER_BASE_MODEL))
    gateways = {name: RecordingGateway() for name in ("a", "b")}
    stops = {name: asyncio.Event() for name in gateways}
    tasks = {
        name: asyncio.create_task(
            run_watcher(
                api_client=cluster.api_client,
                gateway=gateways[name],
                stop=stops[name],
                agent_namespace="ome",
                identity=name,
                leader_timing=TIMING,
                backoff=Backoff(initial=0.01, maximum=0.05),
            )
        )
        for name in gateways
    }
    try:
        await until(lambda: sum(len(g.calls) for g in gateways.values()) == 1)
        await asyncio.sleep(0.5)
        [leader] = [name for name, g in gateways.items() if g.calls]
        standby = "b" if leader == "a" else "a"
        assert gateways[standby].calls == [] and lease_holder(cluster) == leader
        stops[leader].set()
        await asyncio.wait_for(tasks[leader], 5)
        await until(lambda: len(gateways[standby].of("apply")) == 1, timeout=5)
        first, second = gateways[leader].of("apply")[0], gateways[standby].of("apply")[0]
        assert (first[1], first[2].generation) == (second[1], second[2].generation)
    finally:
        for stop in stops.values():
            stop.set()
        for task in tasks.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)


async def test_without_leader_election_it_acts_at_once_and_resyncs_stay_quiet(
    cluster: EmbeddedBackend,
) -> None:
    cluster.create(model_obj("llama", kind=ModelKind.CLUSTER_BASE_MODEL))
    gateway = RecordingGateway()
    handled: list[tuple[Any, list[Any], bool]] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_watcher(
            api_client=cluster.api_client,
            gateway=gateway,
            stop=stop,
            identity="solo",
            leader_election=False,
            resync_seconds=0.05,
            on_decided=lambda event, decisions, done: handled.append((event, decisions, done)),
        )
    )
    try:
        await until(lambda: len(gateway.of("apply")) == 1)

        def resyncs() -> list[tuple[Any, list[Any], bool]]:
            return [h for h in handled if h[0].type is EventType.RESYNC and isinstance(h[0], ModelEvent)]

        await until(lambda: len(resyncs()) >= 3)
        assert all(isinstance(d, Ignore) for h in resyncs() for d in h[1])
        assert len(gateway.calls) == 1  # re-checked three times, Temporal asked once
        with pytest.raises(KubeNotFoundError):  # no Lease without leader election
            cluster.kube.read_lease(namespace="ome", name="modelferry-watcher")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
