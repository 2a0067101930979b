"""On a cluster that keeps OME's CRD (tests/data/ome-crds/), the API server prunes the status fields
only ours declares (conditions, observedGeneration). The status activity still works there: what
OME's schema keeps is written, and writing the same status again changes nothing on the server
(no new resourceVersion, so no watch event and no write loop), while a real change still lands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.resources import ResourceActivities
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.messages import ModelRef, WriteModelStatusInput
from modelferry.names import API_GROUP, API_VERSION, ModelKind

OME_CRDS = Path(__file__).resolve().parents[1] / "data" / "ome-crds"
NAME = "llama"


def status(state: str, generation: int) -> dict[str, Any]:
    return {
        "state": state,
        "nodesReady": ["gpu-1"] if state == "Ready" else [],
        "nodesFailed": [] if state == "Ready" else ["gpu-1"],
        "conditions": [
            {"type": "Ready", "status": str(state == "Ready"), "reason": state, "observedGeneration": 1}
        ],
        "observedGeneration": generation,
    }


@pytest.fixture
def cluster() -> Iterator[tuple[ResourceActivities, k8s.CustomObjectsApi, ModelRef]]:
    crds = [yaml.safe_load(p.read_text()) for p in sorted(OME_CRDS.glob("ome.io_*.yaml"))]
    with running_apiserver(crds=crds) as server:
        api = api_client(server)
        custom = k8s.CustomObjectsApi(api)
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
        yield ResourceActivities(kube=KubeClient(api)), custom, ref


def stored(custom: k8s.CustomObjectsApi) -> dict[str, Any]:
    return dict(
        custom.get_cluster_custom_object(API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, NAME)
    )


def test_pruned_status_fields_cause_no_write_loop(cluster: Any) -> None:
    resources, custom, ref = cluster

    def write(desired: dict[str, Any]) -> None:
        inp = WriteModelStatusInput(ref=ref, status=desired, generation=desired["observedGeneration"])
        resources.write_model_status(inp)

    write(status("Ready", 1))
    first = stored(custom)
    assert first["status"] == {"state": "Ready", "nodesReady": ["gpu-1"], "nodesFailed": []}  # ours pruned
    for _ in range(3):  # what a retry, a resync or a replay does
        write(status("Ready", 1))
    assert stored(custom)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    write(status("Failed", 2))  # a real change still lands, though observedGeneration is never kept
    after = stored(custom)
    assert after["status"]["state"] == "Failed" and after["status"]["nodesFailed"] == ["gpu-1"]
    assert after["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
