"""Every HTTP status and a dropped connection become the same typed error from the watcher's client
and from the activities' client, through the one mapping (`modelferry.errors.kube_error_for_status`
via `modelferry.kubeclient`), for plain calls, metadata-only Node reads and opening a watch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from activities.kube import KubeClient as ActivitiesKube
from modelferry.errors import KubeError, KubeUnavailableError, kube_error_for_status
from modelferry.messages import ModelRef
from modelferry.names import ModelKind
from watcher.kube import NODES, model_resource
from watcher.kube import KubeClient as WatcherKube

from .conftest import CUT_WATCH, DROP, AnsweringServer, ClientFactory

REF = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="m1", uid="u1")

CALLS: dict[str, Callable[[Any], object]] = {
    "watcher list nodes (metadata)": lambda api: WatcherKube(api).list_objects(NODES),
    "watcher list models": lambda api: WatcherKube(api).list_objects(model_resource(ModelKind.BASE_MODEL)),
    "watcher open a watch": lambda api: WatcherKube(api).watch_objects(
        NODES, resource_version="1", timeout_seconds=5
    ),
    "watcher read lease": lambda api: WatcherKube(api).read_lease(namespace="ome", name="lease"),
    "activities list nodes (metadata)": lambda api: ActivitiesKube(api).list_nodes(),
    "activities get model": lambda api: ActivitiesKube(api).get_model(REF),
    "activities get configmap": lambda api: ActivitiesKube(api).get_configmap("ome", "gpu-1"),
    "activities patch node": lambda api: ActivitiesKube(api).patch_node("gpu-1", {"metadata": {}}),
    "activities create job": lambda api: ActivitiesKube(api).create_job("ome", {"metadata": {"name": "j"}}),
}

STATUSES = [400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503, 504]


def expected(answer: int | str) -> type[KubeError]:
    return KubeUnavailableError if answer == DROP else type(kube_error_for_status(int(answer), ""))


def failure(call: Callable[[Any], object], api_client: Any) -> KubeError:
    with pytest.raises(KubeError) as caught:
        call(api_client)
    return caught.value


@pytest.mark.parametrize("answer", [*STATUSES, DROP])
def test_every_client_call_maps_an_answer_to_the_same_typed_error(
    answering_server: AnsweringServer, api_client_for: ClientFactory, answer: int | str
) -> None:
    answering_server.answer = answer
    api_client = api_client_for(answering_server.url)
    errors = {name: failure(call, api_client) for name, call in CALLS.items()}
    assert {name: type(error) for name, error in errors.items()} == dict.fromkeys(CALLS, expected(answer))
    for name, error in errors.items():
        assert error.retryable is expected(answer).retryable, name
        if answer == DROP:
            assert error.status is None, name
        else:
            assert error.status == answer, name
            assert f"HTTP {answer} injected {answer}" in error.message, name


def test_a_node_that_answers_404_does_not_exist(
    answering_server: AnsweringServer, api_client_for: ClientFactory
) -> None:
    answering_server.answer = 404
    assert ActivitiesKube(api_client_for(answering_server.url)).node_exists("gone") is False
    answering_server.answer = 500
    with pytest.raises(KubeUnavailableError):
        ActivitiesKube(api_client_for(answering_server.url)).node_exists("unknown")


def test_a_watch_cut_mid_stream_is_unavailable(
    answering_server: AnsweringServer, api_client_for: ClientFactory
) -> None:
    answering_server.answer = CUT_WATCH
    stream = WatcherKube(api_client_for(answering_server.url)).watch_objects(
        NODES, resource_version="1", timeout_seconds=5
    )
    seen = []
    with pytest.raises(KubeUnavailableError, match="watch nodes"):
        for event_type, obj in stream:
            seen.append((event_type, obj["metadata"]["name"]))
    assert seen == [("ADDED", "n1")]
