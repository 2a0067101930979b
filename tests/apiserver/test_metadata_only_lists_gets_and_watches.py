"""The meta.k8s.io metadata-only views, as a real API server serves them to client-go's metadata
client: a list asked `as=PartialObjectMetadataList` is one, whose items carry only apiVersion, kind
and metadata; a get asked `as=PartialObjectMetadata` is one; a watch asked `as=PartialObjectMetadata`
streams events (bookmarks too) whose objects are PartialObjectMetadata, while an ERROR event keeps
its Status."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import running_apiserver

from .conftest import configmap, uniq

NS = "default"
WINDOW = 5
LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
OBJECT_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
META = "meta.k8s.io/v1"


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedApiServer]:
    with running_apiserver(crds=[], watch_window=WINDOW, bookmark_interval=0.2) as api:
        yield api


def get(server: EmbeddedApiServer, path: str, *, accept: str) -> dict[str, Any]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def watch_events(server: EmbeddedApiServer, path: str, *, accept: str) -> Iterator[dict[str, Any]]:
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", path, headers={"Accept": accept})
    response = conn.getresponse()
    assert response.status == 200
    try:
        while line := response.readline():
            yield json.loads(line)
    finally:
        conn.close()


def assert_partial(obj: dict[str, Any], full: dict[str, Any]) -> None:
    assert obj == {"apiVersion": META, "kind": "PartialObjectMetadata", "metadata": full["metadata"]}


def test_a_node_list_is_a_partial_object_metadata_list(server: EmbeddedApiServer) -> None:
    server.add_node("gpu-7", {"gpu": "a100"})
    full = get(server, "/api/v1/nodes", accept="application/json")
    partial = get(server, "/api/v1/nodes", accept=LIST_ACCEPT)
    assert partial["kind"] == "PartialObjectMetadataList" and partial["apiVersion"] == META
    assert partial["metadata"]["resourceVersion"] == full["metadata"]["resourceVersion"]
    by_name = {item["metadata"]["name"]: item for item in full["items"]}
    assert [item["metadata"]["name"] for item in partial["items"]] == list(by_name)
    for item in partial["items"]:
        assert_partial(item, by_name[item["metadata"]["name"]])
    assert by_name["gpu-7"]["status"] and by_name["gpu-7"]["metadata"]["labels"]["gpu"] == "a100"


def test_a_node_get_is_partial_object_metadata(server: EmbeddedApiServer) -> None:
    server.add_node("gpu-8", {"zone": "b"})
    full = get(server, "/api/v1/nodes/gpu-8", accept="application/json")
    assert_partial(get(server, "/api/v1/nodes/gpu-8", accept=OBJECT_ACCEPT), full)


def test_a_watch_streams_partial_object_metadata(server: EmbeddedApiServer, core: client.CoreV1Api) -> None:
    name = uniq("cm")
    rv = get(server, f"/api/v1/namespaces/{NS}/configmaps", accept=LIST_ACCEPT)["metadata"]["resourceVersion"]
    core.create_namespaced_config_map(NS, configmap(name, labels={"tier": "gold"}, key="value"))
    core.patch_namespaced_config_map(name, NS, {"metadata": {"labels": {"tier": "silver"}}})
    core.delete_namespaced_config_map(name, NS)
    path = f"/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    events = [
        e for e in watch_events(server, path, accept=OBJECT_ACCEPT) if e["object"]["metadata"]["name"] == name
    ]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    for event in events:
        assert set(event["object"]) == {"apiVersion", "kind", "metadata"}
        assert (event["object"]["apiVersion"], event["object"]["kind"]) == (META, "PartialObjectMetadata")
    assert [e["object"]["metadata"]["labels"]["tier"] for e in events] == ["gold", "silver", "silver"]


def test_watch_bookmarks_are_partial_object_metadata(
    server: EmbeddedApiServer, core: client.CoreV1Api
) -> None:
    rv = core.list_node().metadata.resource_version
    core.create_namespaced_config_map(NS, configmap(uniq("cm")))  # moves the global version on
    path = f"/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=3"
    for event in watch_events(server, path, accept=OBJECT_ACCEPT):
        if event["type"] == "BOOKMARK":
            assert (event["object"]["apiVersion"], event["object"]["kind"]) == (META, "PartialObjectMetadata")
            assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)
            break
    else:
        pytest.fail("no BOOKMARK within the timeout")


def test_an_expired_watch_still_ends_with_a_status(server: EmbeddedApiServer, core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    for _ in range(WINDOW + 1):
        name = uniq("churn")
        core.create_namespaced_config_map(NS, configmap(name))
        core.delete_namespaced_config_map(name, NS)
    path = f"/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={start}&timeoutSeconds=1"
    [event] = list(watch_events(server, path, accept=OBJECT_ACCEPT))
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"]) == ("Status", 410)
