"""The informer against an in-memory source: list then watch, resume without replay, 410 relist
reconciled into DELETED/MODIFIED/ADDED, bookmarks, a missing CRD, periodic resync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from watcher_fakes import FakeCluster

from watcher.decide import EventType
from watcher.informer import Informer, diff_listing
from watcher.kube import NODES, ResourceType

Seen = list[tuple[EventType, str, str]]  # (type, name, resourceVersion)


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name, "labels": labels}}


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(
    cluster: FakeCluster, resource: ResourceType = NODES, **kwargs: Any
) -> AsyncIterator[tuple[Informer, Seen]]:
    seen: Seen = []

    def on_event(event_type: EventType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        seen.append((event_type, meta["name"], meta.get("resourceVersion", "")))

    options: dict[str, Any] = {"backoff_initial": 0.02, "backoff_max": 0.1, **kwargs}
    informer = Informer(source=cluster, resource=resource, on_event=on_event, **options)
    task = asyncio.create_task(informer.run())
    try:
        yield informer, seen
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


DIFF_CASES = [
    ("initial list: all added", {}, [("a", "u1", "1"), ("b", "u2", "1")], [("ADDED", "a"), ("ADDED", "b")]),
    ("unchanged: nothing", {"a": ("u1", "1")}, [("a", "u1", "1")], []),
    ("changed: modified", {"a": ("u1", "1")}, [("a", "u1", "5")], [("MODIFIED", "a")]),
    ("gone: deleted", {"a": ("u1", "1"), "b": ("u2", "1")}, [("b", "u2", "1")], [("DELETED", "a")]),
    (
        "recreated under the same name",
        {"a": ("u1", "1")},
        [("a", "u9", "7")],
        [("DELETED", "a"), ("ADDED", "a")],
    ),
]


@pytest.mark.parametrize(
    ("store", "listed", "want"), [c[1:] for c in DIFF_CASES], ids=[c[0] for c in DIFF_CASES]
)
def test_diff_listing(
    store: dict[str, tuple[str, str]], listed: list[tuple[str, str, str]], want: list[tuple[str, str]]
) -> None:
    def obj(name: str, uid: str, rv: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "uid": uid, "resourceVersion": rv}}

    old = {("", name): obj(name, uid, rv) for name, (uid, rv) in store.items()}
    events = diff_listing(old, [obj(*item) for item in listed])
    assert [(t.value, o["metadata"]["name"]) for t, o in events] == want


async def test_lists_then_watches_in_order() -> None:
    cluster = FakeCluster()
    cluster.put("nodes", node("n1"))
    async with running(cluster) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        cluster.put("nodes", node("n2"))
        cluster.put("nodes", node("n1", gpu="a100"))
        cluster.remove("nodes", "n2")
        await until(lambda: len(seen) == 4)
        assert [(t.value, n) for t, n, _ in seen] == [
            ("ADDED", "n1"),
            ("ADDED", "n2"),
            ("MODIFIED", "n1"),
            ("DELETED", "n2"),
        ]
        assert set(informer.store) == {("", "n1")}
        assert informer.resource_version == str(cluster.rv)


async def test_broken_watch_resumes_from_last_version_without_replay() -> None:
    cluster = FakeCluster()
    cluster.watch_timeout_scale = 0.02  # the server ends each watch after ~20 ms: many resumes
    async with running(cluster, watch_timeout_seconds=1) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        for i in range(10):
            cluster.put("nodes", node(f"n{i}"))
            await asyncio.sleep(0.03)
            if i == 5:
                cluster.drop_watches(refuse_next=2)  # a reset plus two refused reconnects
        await until(lambda: len(seen) == 10)
        await asyncio.sleep(0.1)
        assert [n for _, n, _ in seen] == [f"n{i}" for i in range(10)]  # each exactly once, in order
        assert informer.lists == 1  # resumed, never relisted
        assert cluster.watch_calls["nodes"] >= 5


async def test_gone_relists_and_reconciles_the_difference() -> None:
    cluster = FakeCluster(window=3)
    for name in ("keep", "change", "remove"):
        cluster.put("nodes", node(name))
    async with running(cluster) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        seen.clear()
        cluster.drop_watches(refuse_next=1000)  # the watcher is cut off ...
        cluster.put("nodes", node("change", gpu="h100"))  # ... while the cluster churns past the window
        cluster.remove("nodes", "remove")
        for i in range(5):
            cluster.put("nodes", node(f"churn{i}"))
        cluster.remove("nodes", "churn0")
        cluster.fail_watches = 0  # reconnects now succeed, from a version that is too old
        await until(lambda: informer.lists == 2)
        await until(lambda: len(seen) >= 6)
        got = sorted((t.value, n) for t, n, _ in seen)
        assert got == sorted(
            [("MODIFIED", "change"), ("DELETED", "remove")] + [("ADDED", f"churn{i}") for i in range(1, 5)]
        )  # churn0 came and went unseen: nothing to report; "keep" unchanged: nothing either
        cluster.put("nodes", node("after"))  # and the new watch carries on from the relist
        await until(lambda: ("ADDED", "after") in [(t.value, n) for t, n, _ in seen])


async def test_bookmarks_advance_the_resume_point() -> None:
    cluster = FakeCluster(bookmarks=True)
    async with running(cluster) as (informer, _seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        cluster.put("basemodels", {"metadata": {"name": "other-kind-traffic"}})
        cluster.drop_watches()
        await until(lambda: informer.bookmark_resource_version == str(cluster.rv))
        assert informer.resource_version == str(cluster.rv)
        assert informer.lists == 1


async def test_missing_crd_retries_with_backoff_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    cluster.missing.add("nodes")
    with caplog.at_level(logging.WARNING, logger="watcher.informer"):
        async with running(cluster) as (informer, seen):
            await until(lambda: cluster.list_calls.get("nodes", 0) >= 4)
            assert not informer.synced.is_set()
            cluster.put("nodes", node("n1"))
            cluster.missing.clear()  # the CRD gets installed
            await asyncio.wait_for(informer.synced.wait(), 5)
            assert [n for _, n, _ in seen] == ["n1"]
    warnings = [r for r in caplog.records if "not found" in r.getMessage()]
    assert len(warnings) == 1


async def test_resync_redelivers_every_known_object() -> None:
    cluster = FakeCluster()
    cluster.put("nodes", node("n1"))
    cluster.put("nodes", node("n2"))
    async with running(cluster, resync_seconds=0.05) as (informer, seen):
        await asyncio.wait_for(informer.synced.wait(), 5)
        await until(lambda: sum(1 for t, _, _ in seen if t is EventType.RESYNC) >= 4)
        resynced = {n for t, n, _ in seen if t is EventType.RESYNC}
        assert resynced == {"n1", "n2"}
