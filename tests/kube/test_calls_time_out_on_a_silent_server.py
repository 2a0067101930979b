"""A peer that accepts the connection and never answers (a half-open connection, a hung API
server) cannot hold a thread: every call of both clients fails with a retryable
`KubeUnavailableError` after one read timeout — not never, and not after urllib3's silent retries
— and a watch after its server-side timeout plus the read timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from activities.kube import KubeClient as ActivitiesKube
from modelferry.errors import KubeUnavailableError
from modelferry.kubeclient import Timeouts
from modelferry.messages import ModelRef
from modelferry.names import ModelKind
from watcher.kube import NODES
from watcher.kube import KubeClient as WatcherKube

from .conftest import ClientFactory

TIMEOUTS = Timeouts(connect=2.0, read=0.5)
REF = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="m1", uid="u1")

CALLS: dict[str, Callable[[Any], object]] = {
    "watcher list nodes": lambda api: WatcherKube(api, timeouts=TIMEOUTS).list_objects(NODES),
    "watcher read lease": lambda api: WatcherKube(api, timeouts=TIMEOUTS).read_lease(
        namespace="ome", name="l"
    ),
    "watcher replace lease": lambda api: WatcherKube(api, timeouts=TIMEOUTS).replace_lease(
        namespace="ome", name="l", body={"metadata": {"name": "l"}}
    ),
    "activities list nodes": lambda api: ActivitiesKube(api, timeouts=TIMEOUTS).list_nodes(),
    "activities node exists": lambda api: ActivitiesKube(api, timeouts=TIMEOUTS).node_exists("gpu-1"),
    "activities get model": lambda api: ActivitiesKube(api, timeouts=TIMEOUTS).get_model(REF),
    "activities patch node": lambda api: ActivitiesKube(api, timeouts=TIMEOUTS).patch_node("gpu-1", {}),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_call_to_a_silent_server_fails_after_the_read_timeout(
    silent_server: str, api_client_for: ClientFactory, name: str
) -> None:
    api_client = api_client_for(silent_server)
    began = time.monotonic()
    with pytest.raises(KubeUnavailableError, match="timed out") as caught:
        CALLS[name](api_client)
    took = time.monotonic() - began
    assert caught.value.retryable
    # One read timeout; urllib3's default three retries of a GET would take four.
    assert TIMEOUTS.read <= took < 2 * TIMEOUTS.read


def test_a_watch_on_a_silent_server_fails_after_its_own_timeout_plus_the_read_timeout(
    silent_server: str, api_client_for: ClientFactory
) -> None:
    kube = WatcherKube(api_client_for(silent_server), timeouts=TIMEOUTS)
    began = time.monotonic()
    with pytest.raises(KubeUnavailableError, match="timed out"):
        for _ in kube.watch_objects(NODES, resource_version="1", timeout_seconds=1):
            pass
    took = time.monotonic() - began
    assert 1 + TIMEOUTS.read <= took < 1 + 2 * TIMEOUTS.read
