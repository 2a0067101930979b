"""Where names and labels are all a caller needs, both clients read Nodes as PartialObjectMetadata
(no status, which the kubelet rewrites every few seconds): the activities' `list_nodes` and
`node_exists`, and the watcher's Node list and watch — against the embedded API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kube import KubeClient as ActivitiesKube
from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import api_client as plain_api_client
from modelferry.apiserver.testing import running_apiserver
from modelferry.kubeclient import load_api_client
from modelferry.settings import KubeSettings
from watcher.kube import NODES
from watcher.kube import KubeClient as WatcherKube

JSON = "application/json"
PARTIAL = ("meta.k8s.io/v1", "PartialObjectMetadata")


@pytest.fixture
def server() -> Iterator[EmbeddedApiServer]:
    nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": {"gpu": "a100"}}}]
    with running_apiserver(nodes=[*nodes, "cpu-1"], crds=[]) as api:
        yield api


@pytest.fixture
def api_client(server: EmbeddedApiServer) -> Any:
    """The production client, its requests' Accept headers recorded in `accepts`."""
    api = load_api_client(KubeSettings(kubeconfig=server.kubeconfig_path))
    api.accepts = []
    send = api.rest_client.request

    def recording(method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any) -> Any:
        api.accepts.append(
            (method, url.split("?")[0].split("/api/v1/", 1)[-1], (headers or {}).get("Accept"))
        )
        return send(method, url, *args, headers=headers, **kwargs)

    api.rest_client.request = recording
    return api


def test_the_activities_read_node_names_and_labels_as_metadata(
    server: EmbeddedApiServer, api_client: Any
) -> None:
    full = k8s.CoreV1Api(plain_api_client(server)).list_node().items
    kube = ActivitiesKube(api_client)
    names_and_labels = kube.list_nodes()
    assert sorted(names_and_labels) == sorted((n.metadata.name, n.metadata.labels) for n in full)
    assert dict(names_and_labels)["gpu-1"]["gpu"] == "a100"
    assert kube.node_exists("gpu-1") and not kube.node_exists("gone")
    assert api_client.accepts == [
        ("GET", "nodes", f"{JSON};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{JSON}"),
        ("GET", "nodes/gpu-1", f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1,{JSON}"),
        ("GET", "nodes/gone", f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1,{JSON}"),
    ]


def test_the_watcher_lists_and_watches_nodes_as_metadata(server: EmbeddedApiServer, api_client: Any) -> None:
    kube = WatcherKube(api_client)
    listing = kube.list_objects(NODES)
    assert sorted(item["metadata"]["name"] for item in listing.items) == ["cpu-1", "gpu-1"]
    for item in listing.items:
        assert (item["apiVersion"], item["kind"]) == PARTIAL and set(item) == {
            "apiVersion",
            "kind",
            "metadata",
        }
    stream = kube.watch_objects(NODES, resource_version=listing.resource_version, timeout_seconds=5)
    server.add_node("cpu-1", {"role": "spare"})
    try:
        event_type, obj = next(iter(stream))
    finally:
        stream.close()
    assert event_type == "MODIFIED" and (obj["apiVersion"], obj["kind"]) == PARTIAL
    assert obj["metadata"]["name"] == "cpu-1" and obj["metadata"]["labels"]["role"] == "spare"
    assert "status" not in obj
    assert [accept.split(";")[1] for _, _, accept in api_client.accepts] == [
        "as=PartialObjectMetadataList",
        "as=PartialObjectMetadata",
    ]
