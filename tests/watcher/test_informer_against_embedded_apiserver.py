"""The informer over real HTTP (the embedded API server and the official client through
`watcher.kube`): resume without replay, 410 Gone → relist → reconciled diff, bookmarks, a CRD that
appears late."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from watcher_builders import model_obj
from watcher_embedded import EmbeddedBackend, GatedSource
from watcher_fakes import until

from modelferry.apiserver.testing import ome_crds
from modelferry.names import ModelKind
from watcher.decide import EventType
from watcher.informer import Informer
from watcher.kube import NODES, ResourceType, model_resource

Seen = list[tuple[EventType, str]]


@asynccontextmanager
async def informing(
    source: Any, resource: ResourceType = NODES, **kwargs: Any
) -> AsyncIterator[tuple[Informer, Seen]]:
    seen: Seen = []
    informer = Informer(
        source=source,
        resource=resource,
        on_event=lambda t, obj: seen.append((t, obj["metadata"]["name"])),
        backoff_initial=0.02,
        backoff_max=0.2,
        **kwargs,
    )
    task = asyncio.create_task(informer.run())
    try:
        yield informer, seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def cluster() -> Any:
    backend = EmbeddedBackend(watch_window=5)
    yield backend
    backend.close()


async def test_resumes_a_broken_watch_without_replay(cluster: EmbeddedBackend) -> None:
    gated = GatedSource(cluster.kube)
    async with informing(gated) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        for i in range(8):
            cluster.set_node(f"n{i}", {"i": str(i)})
            await until(lambda i=i: (EventType.ADDED, f"n{i}") in seen)
            await until(lambda: gated.open_watches == 1)
            gated.cut(hold=False)  # a connection reset after every event
        cluster.set_node("n0", {"i": "changed"})
        await until(lambda: (EventType.MODIFIED, "n0") in seen)
        assert seen == [(EventType.ADDED, f"n{i}") for i in range(8)] + [(EventType.MODIFIED, "n0")]
        assert informer.lists == 1 and informer.watches >= 9


async def test_gone_relists_and_reconciles(cluster: EmbeddedBackend) -> None:
    for name in ("keep", "change", "remove"):
        cluster.set_node(name, {"role": "x"})
    gated = GatedSource(cluster.kube)
    async with informing(gated) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        seen.clear()
        await until(lambda: gated.open_watches == 1)
        gated.cut(hold=True)  # cut off ...
        cluster.set_node("change", {"role": "y"})  # ... while more than the watch window happens
        cluster.remove_node("remove")
        for i in range(6):
            cluster.set_node(f"churn{i}", {})
        cluster.remove_node("churn0")
        gated.release()  # the resume from the old resourceVersion gets 410 Gone
        await until(lambda: informer.lists == 2)
        await until(lambda: len(seen) >= 7)
        assert sorted(seen) == sorted(
            [(EventType.MODIFIED, "change"), (EventType.DELETED, "remove")]
            + [(EventType.ADDED, f"churn{i}") for i in range(1, 6)]
        )
        assert set(name for _, name in informer.store) == {"keep", "change"} | {
            f"churn{i}" for i in range(1, 6)
        }
        cluster.set_node("after", {})
        await until(lambda: (EventType.ADDED, "after") in seen)


async def test_tracks_bookmarks() -> None:
    backend = EmbeddedBackend(bookmark_interval=0.05)
    try:
        async with informing(backend.kube) as (informer, _seen):
            await asyncio.wait_for(informer.synced.wait(), 5)
            backend.set_node("n1", {})
            await until(lambda: informer.bookmark_resource_version != "")
            assert int(informer.bookmark_resource_version) >= 1
            assert informer.lists == 1
    finally:
        backend.close()


async def test_a_crd_installed_later_is_picked_up(caplog: pytest.LogCaptureFixture) -> None:
    backend = EmbeddedBackend(crds=[])
    try:
        with caplog.at_level(logging.WARNING, logger="watcher.informer"):
            async with informing(backend.kube, model_resource(ModelKind.CLUSTER_BASE_MODEL)) as (
                informer,
                seen,
            ):
                await asyncio.sleep(0.5)  # several failed lists
                assert not informer.synced.is_set()
                [crd] = [c for c in ome_crds() if c["spec"]["names"]["kind"] == "ClusterBaseModel"]
                backend.server.apply_manifest(crd)
                await asyncio.wait_for(informer.synced.wait(), 5)
                backend.create(model_obj("late", kind=ModelKind.CLUSTER_BASE_MODEL))
                await until(lambda: seen == [(EventType.ADDED, "late")])
        assert len([r for r in caplog.records if "CRD not installed" in r.getMessage()]) == 1
    finally:
        backend.close()
