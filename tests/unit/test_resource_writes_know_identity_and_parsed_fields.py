"""The resource activities against the embedded API server: a resource deleted and re-created
under the same name is another model, so the old model's workflow writes none of its status,
spec metadata or finalizer; parsed metadata refreshes the fields the parser wrote before and never
a field a user set. Pure rules: `lifecycle.refresh_parsed_fields`, fingerprint versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.resources import ResourceActivities
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.lifecycle import (
    delivery_fingerprint,
    fingerprint_matches,
    fingerprint_version,
    refresh_parsed_fields,
)
from modelferry.messages import (
    EnsureFinalizerInput,
    ModelRef,
    ReleaseFinalizerInput,
    WriteModelStatusInput,
    WriteSpecMetadataInput,
)
from modelferry.names import API_GROUP, API_VERSION, FINALIZER, PARSED_FIELDS_ANNOTATION, ModelKind

NAME = "llama"
PLURAL = ModelKind.CLUSTER_BASE_MODEL.plural


@pytest.mark.parametrize(
    ("spec", "parsed", "filled", "fill", "record"),
    [
        # empty fields take the parsed values, and become the parser's
        (
            {},
            {"modelType": "llama", "maxTokens": 8192},
            {},
            {"modelType": "llama", "maxTokens": 8192},
            {"modelType": "llama", "maxTokens": 8192},
        ),
        # a field the parser wrote is refreshed by a new delivery (1.2B -> 3.2B)
        (
            {"modelParameterSize": "1.2B"},
            {"modelParameterSize": "3.2B"},
            {"modelParameterSize": "1.2B"},
            {"modelParameterSize": "3.2B"},
            {"modelParameterSize": "3.2B"},
        ),
        # a field a user set is never overwritten, and is not the parser's
        ({"modelParameterSize": "8B"}, {"modelParameterSize": "3.2B"}, {}, {}, {}),
        # a field the parser wrote and a user changed since is the user's now
        ({"modelType": "mistral"}, {"modelType": "llama"}, {"modelType": "llama"}, {}, {}),
        # the parser finds nothing new: what it wrote stays, and stays its own
        ({"modelType": "llama"}, {}, {"modelType": "llama"}, {}, {"modelType": "llama"}),
        # same value as before: nothing to write
        ({"modelType": "llama"}, {"modelType": "llama"}, {"modelType": "llama"}, {}, {"modelType": "llama"}),
    ],
    ids=["fill-empty", "refresh-ours", "user-set", "user-changed-ours", "nothing-parsed", "unchanged"],
)
def test_parsed_fields_refresh_and_user_fields_stay(spec, parsed, filled, fill, record):
    assert refresh_parsed_fields(spec, parsed, filled=filled) == (fill, record)


@pytest.mark.parametrize(
    ("stored", "ours"),
    [
        # the server added OME's CRD defaults to what the parser wrote: still the parser's
        ({"name": "safetensors", "version": "1", "operator": "Equal", "weight": 1}, True),
        # a user changed a default, or the value itself: the user's
        ({"name": "safetensors", "version": "1", "operator": "Equal", "weight": 5}, False),
        ({"name": "gguf", "version": "1", "operator": "Equal", "weight": 1}, False),
    ],
)
def test_server_defaults_do_not_make_a_parsed_field_a_users(stored, ours):
    written = {"name": "safetensors", "version": "1"}
    parsed = {"modelFormat": {"name": "safetensors", "version": "2"}}
    fill, _ = refresh_parsed_fields({"modelFormat": stored}, parsed, filled={"modelFormat": written})
    assert (fill == {"modelFormat": {"name": "safetensors", "version": "2"}}) is ours


def test_fingerprints_are_versioned_and_compared_at_their_version():
    spec = {"storage": {"storageUri": "hf://a/b", "path": "/raid/models/b"}}
    recorded = delivery_fingerprint(spec)
    assert fingerprint_version(recorded) == 1  # outcomes recorded before versioning: no prefix
    assert fingerprint_matches(recorded, spec)
    assert not fingerprint_matches(recorded, {"storage": {**spec["storage"], "path": "/raid/models/c"}})
    assert fingerprint_version("v99:abc") is None  # a version this code does not know
    assert not fingerprint_matches("v99:abc", spec)


def _create(custom: k8s.CustomObjectsApi, spec: dict[str, Any]) -> dict[str, Any]:
    return custom.create_cluster_custom_object(
        API_GROUP,
        API_VERSION,
        PLURAL,
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": ModelKind.CLUSTER_BASE_MODEL.value,
            "metadata": {"name": NAME},
            "spec": spec,
        },
    )


@pytest.fixture
def cluster() -> Iterator[tuple[ResourceActivities, k8s.CustomObjectsApi]]:
    with running_apiserver() as server:
        client = api_client(server)
        yield ResourceActivities(kube=KubeClient(client)), k8s.CustomObjectsApi(client)


def _get(custom: k8s.CustomObjectsApi) -> dict[str, Any]:
    return custom.get_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, NAME)


STORAGE = {"storage": {"storageUri": "hf://org/model", "path": "/raid/models/llama"}}


def test_a_recreated_resource_is_another_model(cluster: Any) -> None:
    resources, custom = cluster
    old = _create(custom, dict(STORAGE))
    old_ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=NAME, uid=old["metadata"]["uid"])
    custom.delete_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, NAME)
    new = _create(custom, dict(STORAGE))
    assert new["metadata"]["uid"] != old_ref.uid
    new_ref = old_ref.model_copy(update={"uid": new["metadata"]["uid"]})
    assert resources.ensure_finalizer(EnsureFinalizerInput(ref=new_ref)).added

    status = {"state": "Ready", "observedGeneration": 1, "conditions": []}
    assert not resources.write_model_status(
        WriteModelStatusInput(ref=old_ref, status=status, generation=1)
    ).written
    assert not resources.write_spec_metadata(
        WriteSpecMetadataInput(ref=old_ref, metadata={"modelType": "x"})
    ).written
    assert not resources.release_finalizer(ReleaseFinalizerInput(ref=old_ref)).released
    obj = _get(custom)
    assert FINALIZER in obj["metadata"]["finalizers"], "the old model's cleanup released the new one"
    assert "status" not in obj or not obj["status"]
    assert "modelType" not in obj["spec"]
    # the new model's own writes go through
    assert resources.write_model_status(
        WriteModelStatusInput(ref=new_ref, status=status, generation=1)
    ).written
    assert resources.release_finalizer(ReleaseFinalizerInput(ref=new_ref)).released


def test_parsed_metadata_refreshes_its_own_fields_on_the_resource(cluster: Any) -> None:
    resources, custom = cluster
    made = _create(custom, {**STORAGE, "modelArchitecture": "UserSaysSo"})
    ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=NAME, uid=made["metadata"]["uid"])
    first = {"modelParameterSize": "1.2B", "modelArchitecture": "LlamaForCausalLM"}
    assert resources.write_spec_metadata(WriteSpecMetadataInput(ref=ref, metadata=first)).written
    obj = _get(custom)
    assert obj["spec"]["modelParameterSize"] == "1.2B"
    assert obj["spec"]["modelArchitecture"] == "UserSaysSo"
    assert json.loads(obj["metadata"]["annotations"][PARSED_FIELDS_ANNOTATION]) == {
        "modelParameterSize": "1.2B"
    }
    # a new delivery of a bigger model: the parser's field follows, the user's does not
    second = {"modelParameterSize": "3.2B", "modelArchitecture": "MistralForCausalLM"}
    assert resources.write_spec_metadata(WriteSpecMetadataInput(ref=ref, metadata=second)).written
    obj = _get(custom)
    assert obj["spec"]["modelParameterSize"] == "3.2B"
    assert obj["spec"]["modelArchitecture"] == "UserSaysSo"
    assert not resources.write_spec_metadata(WriteSpecMetadataInput(ref=ref, metadata=second)).written
