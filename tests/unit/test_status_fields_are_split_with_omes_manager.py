"""Beside OME's manager each status field has one writer (`modelstatus.split_status`): OME owns
state, nodesReady and nodesFailed, modelferry conditions and observedGeneration. A table test of
the split, of the three fields as OME computes them, and of the detection; then the activity on the
embedded API server, with a stand-in for OME's controller that writes as OME does (a status Update
of its Go struct, which drops every field it does not know): a write keeps OME's fields as OME
wrote them, a repeat writes nothing, and a write that OME's later write dropped comes back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.resources import ResourceActivities, ome_manager_present
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.messages import ModelRef, WriteModelStatusInput
from modelferry.modelstatus import ome_caught_up, ome_view, split_status
from modelferry.names import API_GROUP, API_VERSION, FINALIZER, ModelKind, OmeManager

CONDITIONS = [{"type": "Ready", "status": "False", "reason": "InProgress", "observedGeneration": 1}]
CREATING = {
    "state": "Creating",
    "nodesReady": ["gpu-1"],
    "nodesFailed": [],
    "conditions": CONDITIONS,
    "observedGeneration": 1,
}
DELETING = {"nodesReady": [], "nodesFailed": [], "conditions": CONDITIONS, "observedGeneration": 1}
OURS = {"conditions": CONDITIONS, "observedGeneration": 1}


@pytest.mark.parametrize(
    ("desired", "present", "current", "written"),
    [
        pytest.param(CREATING, False, None, CREATING, id="alone-we-write-everything"),
        pytest.param(CREATING, True, {"state": "In_Transit"}, OURS, id="beside-ome-only-ours"),
        pytest.param(CREATING, True, None, {**OURS, "state": "Ready"}, id="no-state-yet-seeded-as-ome-would"),
        pytest.param(DELETING, True, {"state": "Ready"}, OURS, id="deleting"),
    ],
)
def test_which_fields_modelferry_writes(desired, present, current, written) -> None:
    assert split_status(desired, ome_present=present, current=current) == written


@pytest.mark.parametrize(
    ("status", "view"),
    [
        (
            {"nodesReady": ["b", "a"], "nodesFailed": ["c"]},
            {"state": "Ready", "nodesReady": ["a", "b"], "nodesFailed": ["c"]},
        ),
        ({"nodesReady": [], "nodesFailed": ["c"]}, {"state": "Failed", "nodesFailed": ["c"]}),
        ({"nodesReady": [], "nodesFailed": []}, {"state": "In_Transit"}),
        ({}, {"state": "In_Transit"}),
    ],
)
def test_omes_three_fields_as_its_controller_computes_them(status, view) -> None:
    assert ome_view(status) == view
    assert ome_caught_up(view, status)


@pytest.mark.parametrize(
    ("setting", "finalizers", "present"),
    [
        (OmeManager.AUTO, [FINALIZER], False),
        (OmeManager.AUTO, [FINALIZER, "clusterbasemodels.ome.io/finalizer"], True),
        (OmeManager.AUTO, ["basemodels.ome.io/finalizer"], True),
        (OmeManager.PRESENT, [], True),
        (OmeManager.ABSENT, ["basemodels.ome.io/finalizer"], False),
    ],
)
def test_omes_manager_is_detected_by_its_finalizer(setting, finalizers, present) -> None:
    assert ome_manager_present(setting, {"metadata": {"finalizers": finalizers}}) is present


# --- the activity beside a stand-in for OME's controller ---------------------------------------

NAME = "llama"
PLURAL = ModelKind.CLUSTER_BASE_MODEL.plural


@pytest.fixture
def cluster() -> Iterator[tuple[KubeClient, k8s.CustomObjectsApi, ModelRef]]:
    with running_apiserver() as server:
        client = api_client(server)
        custom = k8s.CustomObjectsApi(client)
        made = custom.create_cluster_custom_object(
            API_GROUP,
            API_VERSION,
            PLURAL,
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": ModelKind.CLUSTER_BASE_MODEL.value,
                "metadata": {"name": NAME, "finalizers": ["clusterbasemodels.ome.io/finalizer"]},
                "spec": {"storage": {"storageUri": "hf://org/model", "path": "/raid/models/llama"}},
            },
        )
        ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=NAME, uid=made["metadata"]["uid"])
        yield KubeClient(client), custom, ref


def status_of(custom: k8s.CustomObjectsApi) -> dict[str, Any]:
    return dict(custom.get_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, NAME).get("status") or {})


class OmeController:
    """OME's updateModelStatusWithRetry: from the node reports (here given), the three fields; a
    status Update of the Go struct only when one differs, which keeps `lifecycle`, `state`,
    `nodesReady`, `nodesFailed` and drops everything else."""

    def __init__(self, custom: k8s.CustomObjectsApi) -> None:
        self._custom = custom
        self.writes = 0

    def reconcile(self, *, ready: list[str], failed: list[str]) -> None:
        obj = self._custom.get_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, NAME)
        current = obj.get("status") or {}
        view = ome_view({"nodesReady": ready, "nodesFailed": failed})
        known = {k: current[k] for k in ("lifecycle", "state", "nodesReady", "nodesFailed") if current.get(k)}
        if {k: v for k, v in known.items() if k != "lifecycle"} == view:
            return
        obj["status"] = {**{k: v for k, v in known.items() if k == "lifecycle"}, **view}
        self._custom.replace_cluster_custom_object_status(API_GROUP, API_VERSION, PLURAL, NAME, obj)
        self.writes += 1


def test_beside_ome_a_write_keeps_omes_fields_and_a_repeat_writes_nothing(cluster: Any) -> None:
    kube, custom, ref = cluster
    ome = OmeController(custom)
    ome.reconcile(ready=[], failed=[])  # OME saw the model first: In_Transit
    resources = ResourceActivities(kube=kube, ome_settle_seconds=0)
    creating = {**CREATING, "nodesReady": []}

    assert resources.write_model_status(WriteModelStatusInput(ref=ref, status=creating, generation=1)).written
    after = status_of(custom)
    assert after["state"] == "In_Transit" and "nodesReady" not in after  # OME's, as OME wrote them
    assert [c["reason"] for c in after["conditions"]] == ["InProgress"] and after["observedGeneration"] == 1
    assert not resources.write_model_status(
        WriteModelStatusInput(ref=ref, status=creating, generation=1)
    ).written
    ome.reconcile(ready=[], failed=[])
    assert ome.writes == 1  # our write gave OME nothing to change: no loop
    assert status_of(custom) == after


def test_a_write_that_omes_later_write_dropped_comes_back_and_then_all_is_quiet(cluster: Any) -> None:
    kube, custom, ref = cluster
    ome = OmeController(custom)
    ome.reconcile(ready=[], failed=[])
    ready = {
        "state": "Ready",
        "nodesReady": ["gpu-1"],
        "nodesFailed": [],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllNodesReady", "observedGeneration": 1}
        ],
        "observedGeneration": 1,
    }
    # OME has not yet seen the node's Ready entry when we write; it catches up while we wait, and
    # its write drops our conditions, which the activity then writes again.
    looks: list[float] = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        ome.reconcile(ready=["gpu-1"], failed=[])

    resources = ResourceActivities(kube=kube, sleep=sleep)
    assert resources.write_model_status(WriteModelStatusInput(ref=ref, status=ready, generation=1)).written
    after = status_of(custom)
    assert (after["state"], after["nodesReady"]) == ("Ready", ["gpu-1"])
    assert after["conditions"][0]["reason"] == "AllNodesReady" and after["observedGeneration"] == 1
    assert len(looks) == 1 and ome.writes == 2

    ome.reconcile(ready=["gpu-1"], failed=[])
    assert ome.writes == 2  # nothing left for OME to write
    assert not resources.write_model_status(
        WriteModelStatusInput(ref=ref, status=ready, generation=1)
    ).written
    assert status_of(custom) == after


def test_set_absent_we_write_every_field_even_with_omes_finalizer(cluster: Any) -> None:
    kube, custom, ref = cluster
    resources = ResourceActivities(kube=kube, ome_manager=OmeManager.ABSENT)
    assert resources.write_model_status(WriteModelStatusInput(ref=ref, status=CREATING, generation=1)).written
    assert status_of(custom)["state"] == "Creating"
