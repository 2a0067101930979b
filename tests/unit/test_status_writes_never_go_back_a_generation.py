"""The status activity against the embedded API server: a write that describes an older
generation than the status already on the resource is refused (written=False) and changes
nothing, so generation N's late Ready never hides what generation N+1 reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.resources import ResourceActivities
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.messages import ModelRef, WriteModelStatusInput
from modelferry.modelstatus import invalid_status
from modelferry.names import API_GROUP, API_VERSION, ModelKind

NAME = "llama"
READY_1 = {
    "state": "Ready",
    "nodesReady": ["gpu-1"],
    "conditions": [{"type": "Ready", "status": "True", "reason": "AllNodesReady", "observedGeneration": 1}],
    "observedGeneration": 1,
}
INVALID_2 = invalid_status(READY_1, generation=2, message="spec.storage.path: must be absolute")


@pytest.fixture
def cluster() -> Iterator[tuple[ResourceActivities, k8s.CustomObjectsApi, ModelRef]]:
    with running_apiserver() as server:
        client = api_client(server)
        custom = k8s.CustomObjectsApi(client)
        made = custom.create_cluster_custom_object(
            API_GROUP,
            API_VERSION,
            ModelKind.CLUSTER_BASE_MODEL.plural,
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": ModelKind.CLUSTER_BASE_MODEL.value,
                "metadata": {"name": NAME},
                "spec": {"storage": {"storageUri": "hf://org/model", "path": "/raid/models/llama"}},
            },
        )
        ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=NAME, uid=made["metadata"]["uid"])
        yield ResourceActivities(kube=KubeClient(client)), custom, ref


def status_of(custom: k8s.CustomObjectsApi) -> dict[str, Any]:
    obj = custom.get_cluster_custom_object(API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, NAME)
    return dict(obj["status"])


@pytest.mark.parametrize("legacy", [False, True], ids=["generation-field", "observed-generation-only"])
def test_an_older_generation_never_overwrites_a_newer_status(cluster: Any, legacy: bool) -> None:
    resources, custom, ref = cluster

    def write(status: dict[str, Any]) -> bool:
        # Inputs recorded before `generation` existed carry it only inside the status.
        generation = None if legacy else status["observedGeneration"]
        inp = WriteModelStatusInput(ref=ref, status=status, generation=generation)
        return resources.write_model_status(inp).written

    assert write(READY_1)
    assert write(INVALID_2)
    assert not write(READY_1)  # late, retried or replayed: refused
    after = status_of(custom)
    assert after["observedGeneration"] == 2 and after["state"] == "Failed"
    [ready] = [c for c in after["conditions"] if c["type"] == "Ready"]
    assert (ready["reason"], ready["observedGeneration"]) == ("InvalidSpec", 2)

    ready_3 = {**READY_1, "observedGeneration": 3}
    assert write(ready_3)  # a newer generation goes through
    assert status_of(custom)["state"] == "Ready"
    assert status_of(custom)["observedGeneration"] == 3


def test_a_same_generation_status_still_moves_on(cluster: Any) -> None:
    resources, custom, ref = cluster
    creating = {**READY_1, "state": "Creating", "nodesReady": []}
    assert resources.write_model_status(WriteModelStatusInput(ref=ref, status=creating, generation=1)).written
    assert resources.write_model_status(WriteModelStatusInput(ref=ref, status=READY_1, generation=1)).written
    assert status_of(custom)["state"] == "Ready"
