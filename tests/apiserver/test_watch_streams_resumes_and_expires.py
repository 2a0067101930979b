"""Watches: ordered events from a list's resourceVersion, resume without replay, 410 Gone past
the kept window, selector transitions, bookmarks, timeouts, initial events, and writers that
never wait for a slow watcher."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import api_client, running_apiserver

from .conftest import GADGETS, GROUP, VERSION, WIDGETS, configmap, uniq, widget

NS = "default"
WINDOW = 20


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedApiServer]:
    with running_apiserver(crds=[WIDGETS, GADGETS], watch_window=WINDOW, bookmark_interval=0.2) as api:
        yield api


def raw_watch(server: EmbeddedApiServer, path: str) -> Iterator[dict[str, Any]]:
    """Events of a watch read straight off the socket, one JSON document per line."""
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    try:
        while line := response.readline():
            yield json.loads(line)
    finally:
        conn.close()


def test_events_after_a_list_arrive_in_order(custom: client.CustomObjectsApi) -> None:
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "widgets")["metadata"]["resourceVersion"]
    name = uniq("w")
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "widgets", widget(name))
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name, {"spec": {"vendor": "acme"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    seen = [
        (e["type"], e["object"]["metadata"]["resourceVersion"])
        for e in watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            "widgets",
            resource_version=rv,
            timeout_seconds=1,
        )
        if e["object"]["metadata"]["name"] == name
    ]
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert [int(v) for _, v in seen] == sorted(int(v) for _, v in seen)


def test_a_live_watch_sees_writes_as_they_happen(custom: client.CustomObjectsApi) -> None:
    name, seen = uniq("w"), []
    started = threading.Event()

    def run() -> None:
        w = watch.Watch()
        started.set()
        for e in w.stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, NS, "widgets", timeout_seconds=10
        ):
            if e["object"]["metadata"]["name"] == name:
                seen.append(e["type"])
                if e["type"] == "DELETED":
                    w.stop()

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    time.sleep(0.2)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "widgets", widget(name))
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    t.join(10)
    assert seen == ["ADDED", "DELETED"]


def test_resume_from_a_resource_version_replays_only_later_events(custom: client.CustomObjectsApi) -> None:
    name = uniq("w")
    made = custom.create_namespaced_custom_object(GROUP, VERSION, NS, "widgets", widget(name))
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name, {"spec": {"vendor": "acme"}})
    types = [
        e["type"]
        for e in watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            "widgets",
            resource_version=made["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
        if e["object"]["metadata"]["name"] == name
    ]
    assert types == ["MODIFIED"]


@pytest.mark.parametrize("rv", ["", "0"])
def test_a_watch_without_a_version_starts_with_the_current_state(core: client.CoreV1Api, rv: str) -> None:
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name))
    events = list(
        watch.Watch().stream(
            core.list_namespaced_config_map,
            NS,
            resource_version=rv,
            field_selector=f"metadata.name={name}",
            timeout_seconds=1,
        )
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", name)]


def test_an_expired_resource_version_is_410_gone(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    for _ in range(WINDOW):
        name = uniq("churn")
        core.create_namespaced_config_map(NS, configmap(name))
        core.delete_namespaced_config_map(name, NS)
    with pytest.raises(ApiException) as e:
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=2
            )
        )
    assert e.value.status == 410
    # The client retries once by itself without a timeout; a second 410 is raised too.
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_namespaced_config_map, NS, resource_version=start))
    assert e.value.status == 410
    # Other kinds keep their own window.
    assert core.list_namespaced_secret(NS).metadata.resource_version


def test_an_object_leaving_the_selector_is_deleted_for_that_watcher(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name, labels={"tier": "gold"}))
    core.patch_namespaced_config_map(name, NS, {"metadata": {"labels": {"tier": "silver"}}})
    core.patch_namespaced_config_map(name, NS, {"data": {"while": "away"}})
    core.patch_namespaced_config_map(name, NS, {"metadata": {"labels": {"tier": "gold"}}})
    core.delete_namespaced_config_map(name, NS)
    types = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="tier=gold",
            resource_version=rv,
            timeout_seconds=1,
        )
        if e["object"].metadata.name == name
    ]
    assert types == ["ADDED", "DELETED", "ADDED", "DELETED"]


def test_bookmarks_carry_a_version_to_resume_from(server: EmbeddedApiServer, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    path = f"/api/v1/namespaces/{NS}/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
    core.create_namespaced_secret(NS, {"metadata": {"name": uniq("s")}})  # moves the global version on
    for event in raw_watch(server, path + "&timeoutSeconds=3"):
        if event["type"] == "BOOKMARK":
            assert event["object"]["kind"] == "ConfigMap"
            assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)
            break
    else:
        pytest.fail("no BOOKMARK within the timeout")


def test_send_initial_events_ends_with_an_annotated_bookmark(
    server: EmbeddedApiServer, core: client.CoreV1Api
) -> None:
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name))
    path = (
        f"/api/v1/namespaces/{NS}/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
        f"&resourceVersionMatch=NotOlderThan&fieldSelector=metadata.name%3D{name}&timeoutSeconds=2"
    )
    events = raw_watch(server, path)
    first, second = next(events), next(events)
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == name
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_timeout_seconds_ends_the_stream(core: client.CoreV1Api) -> None:
    began = time.monotonic()
    list(
        watch.Watch().stream(
            core.list_namespaced_config_map, NS, timeout_seconds=1, field_selector="metadata.name=none"
        )
    )
    assert 0.9 <= time.monotonic() - began < 3


def test_the_legacy_watch_path(server: EmbeddedApiServer, core: client.CoreV1Api) -> None:
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name))
    events = list(raw_watch(server, f"/api/v1/watch/namespaces/{NS}/configmaps/{name}?timeoutSeconds=1"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", name)]


def test_many_watchers_each_get_every_event(kube: client.ApiClient, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name))
    results: list[list[str]] = []

    def run() -> None:
        with api_client_for(kube) as api:
            results.append(
                [
                    e["type"]
                    for e in watch.Watch().stream(
                        client.CoreV1Api(api).list_namespaced_config_map,
                        NS,
                        resource_version=rv,
                        field_selector=f"metadata.name={name}",
                        timeout_seconds=1,
                    )
                ]
            )

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [["ADDED"]] * 16


def api_client_for(kube: client.ApiClient) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = kube.configuration.host
    return client.ApiClient(configuration)


def test_a_watcher_that_never_reads_does_not_slow_writers(
    server: EmbeddedApiServer, core: client.CoreV1Api
) -> None:
    url = urlsplit(server.url)
    stalled = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    stalled.request("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&timeoutSeconds=30")
    try:
        big = "x" * 20_000  # 200 writes of 20 kB: far beyond what socket buffers hold
        began = time.monotonic()
        for _ in range(100):
            name = uniq("big")
            core.create_namespaced_config_map(NS, configmap(name, blob=big))
            core.delete_namespaced_config_map(name, NS)
        assert time.monotonic() - began < 10
    finally:
        stalled.close()


def test_deleting_a_crd_ends_its_watches_after_deleting_its_objects(server: EmbeddedApiServer) -> None:
    with api_client(server) as api:
        ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
        names = {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"}
        ext.create_custom_resource_definition(
            {**GADGETS, "metadata": {"name": f"gizmos.{GROUP}"}, "spec": {**GADGETS["spec"], "names": names}}
        )
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            "gizmos",
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gizmo", "metadata": {"name": "g"}},
        )
        events = raw_watch(server, f"/apis/{GROUP}/{VERSION}/gizmos?watch=1&timeoutSeconds=5")
        assert next(events)["type"] == "ADDED"
        began = time.monotonic()
        ext.delete_custom_resource_definition(f"gizmos.{GROUP}")
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "g")]
        assert time.monotonic() - began < 2  # the stream ended with the kind, not at its timeout


def test_stopping_the_server_ends_open_watches() -> None:
    with running_apiserver(crds=[]) as api:
        done = threading.Event()

        def run() -> None:
            with api_client(api) as kube:
                try:
                    list(
                        watch.Watch().stream(
                            client.CoreV1Api(kube).list_namespaced_config_map, NS, timeout_seconds=60
                        )
                    )
                except Exception:
                    pass
            done.set()

        threading.Thread(target=run, daemon=True).start()
        time.sleep(0.3)
    assert done.wait(5)
