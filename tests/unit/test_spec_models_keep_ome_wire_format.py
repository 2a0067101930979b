"""The models read and write OME's wire format: aliases, both modelConfiguration forms, status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelferry.names import SKIP_CONFIG_PARSING_ANNOTATIONS
from modelferry.spec import (
    BaseModelResource,
    DownloadPolicy,
    FineTunedWeightResource,
    ModelState,
    NodeModelStatus,
    StorageSpec,
    parse_resource,
    skip_config_parsing,
)


def base_model(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "metadata": {"name": "qwen3-8b", "namespace": "team-a"},
        "spec": {"storage": {"storageUri": "hf://Qwen/Qwen3-8B", "path": "/models/qwen3-8b"}},
    }
    doc.update(extra)
    return doc


@pytest.mark.parametrize("alias", ["key", "storageKey", "storage_key"])
def test_secret_key_accepts_each_input_name_and_writes_key(alias: str) -> None:
    storage = StorageSpec.model_validate({"storageUri": "hf://a/b", alias: "hf-token"})
    assert storage.storage_key == "hf-token"
    assert storage.model_dump(by_alias=True, exclude_none=True) == {
        "storageUri": "hf://a/b",
        "key": "hf-token",
    }


def test_secret_key_given_twice_with_same_value_is_accepted() -> None:
    storage = StorageSpec.model_validate({"storageUri": "hf://a/b", "key": "t", "storageKey": "t"})
    assert storage.storage_key == "t"


@pytest.mark.parametrize(
    "given",
    [
        {"model_type": "qwen3", "num_hidden_layers": 36},
        json.dumps({"model_type": "qwen3", "num_hidden_layers": 36}),
    ],
    ids=["object", "json-string"],
)
def test_model_configuration_keeps_the_form_it_was_given_in(given: Any) -> None:
    doc = base_model()
    doc["spec"]["modelConfiguration"] = given
    resource = parse_resource(doc)
    assert resource.to_wire()["spec"]["modelConfiguration"] == given
    assert isinstance(resource, BaseModelResource)
    assert resource.spec.model_configuration_object() == {"model_type": "qwen3", "num_hidden_layers": 36}


def test_all_ome_spec_fields_are_accepted_and_round_trip() -> None:
    spec = {
        "vendor": "Qwen",
        "version": "1.0.0",
        "disabled": True,
        "displayName": "Qwen.qwen3-8b",
        "compartmentID": "ocid1.compartment.oc1..x",
        "modelType": "qwen3",
        "modelArchitecture": "Qwen3ForCausalLM",
        "modelParameterSize": "8.19B",
        "maxTokens": 40960,
        "quantization": "fp8",
        "modelCapabilities": ["TEXT_TO_TEXT"],
        "apiCapabilities": ["OPENAI_V1_CHAT_COMPLETIONS"],
        "modelFormat": {"name": "safetensors", "version": "1.0.0", "operator": "Equal", "weight": 1},
        "modelFramework": {"name": "transformers", "version": "4.51.0"},
        "servingMode": ["On-demand"],
        "additionalMetadata": {"license": "apache-2.0"},
        "diffusionPipeline": {"className": "QwenImagePipeline", "vae": {"library": "diffusers", "type": "x"}},
        "storage": {
            "storageUri": "s3://models/qwen3-8b",
            "path": "/models/qwen3-8b",
            "schemaPath": "config.json",
            "key": "s3-creds",
            "parameters": {"region": "us-east-1"},
            "nodeSelector": {"gpu": "h100"},
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            },
            "downloadPolicy": "AlwaysDownload",
        },
    }
    status = {
        "state": "Ready",
        "lifecycle": "Public",
        "nodesReady": ["n1", "n2"],
        "nodesFailed": ["n3"],
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllNodesReady",
                "message": "2/3 nodes",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 2,
            }
        ],
    }
    doc = base_model(spec=spec, status=status)
    resource = parse_resource(doc)
    assert resource.to_wire() == doc
    assert resource.storage.download_policy is DownloadPolicy.ALWAYS_DOWNLOAD
    assert resource.status is not None and resource.status.state is ModelState.READY
    conditions = resource.status.conditions or []
    assert conditions[0].last_transition_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_metadata_is_open_and_typed_where_we_read_it() -> None:
    doc = base_model()
    doc["metadata"].update(
        uid="1f0e",
        generation=3,
        resourceVersion="991",
        finalizers=["ome.io/modelferry-cleanup"],
        deletionTimestamp="2026-01-02T03:04:05Z",
        managedFields=[{"manager": "kubectl"}],
    )
    resource = parse_resource(doc)
    assert resource.metadata.generation == 3
    assert resource.metadata.deletion_timestamp is not None
    assert resource.to_wire()["metadata"]["managedFields"] == [{"manager": "kubectl"}]


def test_fine_tuned_weight_parses() -> None:
    doc = {
        "apiVersion": "ome.io/v1beta1",
        "kind": "FineTunedWeight",
        "metadata": {"name": "lora-1"},
        "spec": {
            "baseModelRef": {"name": "qwen3-8b", "namespace": "team-a"},
            "modelType": "LoRA",
            "hyperParameters": {"rank": 8, "alpha": 16.0, "targets": ["q_proj"]},
            "configuration": {"anything": {"nested": True}},
            "trainingJobRef": {"name": "job-7"},
            "storage": {"storageUri": "oci://n/ns/b/bucket/o/lora-1", "path": "/models/lora-1"},
        },
    }
    resource = parse_resource(doc)
    assert isinstance(resource, FineTunedWeightResource)
    assert resource.spec.base_model_ref.namespace == "team-a"
    assert resource.to_wire() == doc


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, False),
        ({}, False),
        ({SKIP_CONFIG_PARSING_ANNOTATIONS[0]: "true"}, True),
        ({SKIP_CONFIG_PARSING_ANNOTATIONS[1]: "TRUE"}, True),
        ({SKIP_CONFIG_PARSING_ANNOTATIONS[0]: "True"}, True),
        ({SKIP_CONFIG_PARSING_ANNOTATIONS[0]: "false", SKIP_CONFIG_PARSING_ANNOTATIONS[1]: "true"}, True),
        ({SKIP_CONFIG_PARSING_ANNOTATIONS[0]: "yes"}, False),
        ({"ome.io/other": "true"}, False),
    ],
)
def test_skip_config_parsing_honours_both_annotations(
    annotations: dict[str, str] | None, expected: bool
) -> None:
    doc = base_model()
    if annotations is not None:
        doc["metadata"]["annotations"] = annotations
    assert skip_config_parsing(parse_resource(doc)) is expected


def test_state_values_use_ome_spelling() -> None:
    assert [s.value for s in ModelState] == [
        "Creating",
        "Importing",
        "In_Transit",
        "In_Training",
        "Ready",
        "Failed",
        "Updating",
        "Deleting",
    ]
    assert [s.value for s in NodeModelStatus] == ["Ready", "Updating", "Failed", "Deleted"]
