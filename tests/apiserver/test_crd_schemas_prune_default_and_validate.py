"""A CRD version's openAPIV3Schema on every write: unknown fields pruned, defaults filled in,
violations answered with 422 and one cause per rule, unchanged values not re-checked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelferry.apiserver.schema import admit, apply_defaults, problems, prune

from .conftest import uniq

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["uri"],
            "properties": {
                "uri": {"type": "string", "minLength": 1, "pattern": "^[a-z]+://"},
                "policy": {"type": "string", "enum": ["Reuse", "Always"], "default": "Reuse"},
                "replicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10},
                "params": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "quantity": {"x-kubernetes-int-or-string": True},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "note": {"type": "string", "nullable": True},
            },
        },
        "status": {"type": "object", "properties": {"since": {"type": "string", "format": "date-time"}}},
    },
}


def test_prune_keeps_declared_mapped_and_preserved_fields_only() -> None:
    value = {
        "spec": {
            "uri": "hf://a",
            "bogus": 1,
            "params": {"any": "x"},
            "free": {"deep": {"x": 1}},
            "tags": ["a"],
        },
        "extra": True,
    }
    assert prune(value, SCHEMA) == {
        "spec": {"uri": "hf://a", "params": {"any": "x"}, "free": {"deep": {"x": 1}}, "tags": ["a"]}
    }


def test_defaults_fill_absent_fields() -> None:
    assert apply_defaults({"spec": {"uri": "s3://b"}}, SCHEMA)["spec"]["policy"] == "Reuse"
    assert (
        apply_defaults({"spec": {"uri": "s3://b", "policy": "Always"}}, SCHEMA)["spec"]["policy"] == "Always"
    )


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({}, "spec.uri", "Required value"),
        ({"uri": ""}, "spec.uri", "at least 1 chars long"),
        ({"uri": "nope"}, "spec.uri", "should match"),
        ({"uri": 5}, "spec.uri", 'must be of type string: "integer"'),
        ({"uri": "hf://a", "policy": "Never"}, "spec.policy", 'Unsupported value: "Never"'),
        ({"uri": "hf://a", "replicas": 0}, "spec.replicas", "greater than or equal to 1"),
        ({"uri": "hf://a", "replicas": 11}, "spec.replicas", "less than or equal to 10"),
        ({"uri": "hf://a", "replicas": True}, "spec.replicas", 'must be of type integer: "boolean"'),
        ({"uri": "hf://a", "params": {"k": 1}}, "spec.params[k]", "must be of type string"),
        ({"uri": "hf://a", "quantity": 1.5}, "spec.quantity", "integer-or-string"),
        ({"uri": "hf://a", "tags": ["a", "b", "c"]}, "spec.tags", "must have at most 2 items"),
        ({"uri": "hf://a", "tags": [1]}, "spec.tags[0]", "must be of type string"),
        ({"uri": "hf://a", "replicas": None}, "spec.replicas", "must be of type integer"),
    ],
)
def test_validation_problems(spec: dict[str, Any], field: str, fragment: str) -> None:
    found = problems({"spec": spec}, SCHEMA, "")
    assert any(f == field and fragment in m for f, m in found), found


@pytest.mark.parametrize(
    "spec",
    [{"uri": "hf://a", "note": None, "quantity": "10Gi", "replicas": 3}, {"uri": "hf://a", "quantity": 7}],
)
def test_valid_values_pass(spec: dict[str, Any]) -> None:
    assert problems({"spec": spec}, SCHEMA, "") == []


def test_unchanged_invalid_values_are_not_rechecked() -> None:
    old = {"spec": {"uri": "legacy-without-scheme"}}
    assert problems({"spec": {"uri": "legacy-without-scheme", "replicas": 2}}, SCHEMA, "", old=old) == []
    assert problems({"spec": {"uri": "still-bad"}}, SCHEMA, "", old=old)


def test_admit_leaves_metadata_alone_and_reports_dropped_fields() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "K",
        "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"uri": "hf://a", "extra": {"x": 1}, "tags": ["t"]},
        "status": {"since": "yesterday"},
    }
    admission = admit(obj, SCHEMA, old=None)
    assert admission.obj["metadata"] == obj["metadata"] and admission.obj["spec"]["policy"] == "Reuse"
    assert [f for f, _ in admission.problems] == ["status.since"]
    assert admission.unknown_fields == ["spec.extra"]


# --- through the API, with the product's real ClusterBaseModel CRD -----------------------------------


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": "acme",
            "storage": {"storageUri": "hf://acme/tiny", "path": f"/raid/{name}"},
            **spec,
        },
    }


def test_an_invalid_model_is_422_with_field_causes(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as e:
        custom.create_cluster_custom_object(
            "ome.io",
            "v1beta1",
            "clusterbasemodels",
            model(uniq("m"), maxTokens=0, storage={"downloadPolicy": "Sometimes"}),
        )
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["reason"] == "Invalid" and body["message"].startswith("ClusterBaseModel.ome.io ")
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.maxTokens", "spec.storage.downloadPolicy"} <= fields


def test_unknown_fields_are_pruned_on_spec_and_status(custom: client.CustomObjectsApi) -> None:
    name = uniq("m")
    made = custom.create_cluster_custom_object(
        "ome.io", "v1beta1", "clusterbasemodels", model(name, notInTheSchema="dropped")
    )
    assert "notInTheSchema" not in made["spec"]
    patched = custom.patch_cluster_custom_object_status(
        "ome.io", "v1beta1", "clusterbasemodels", name, {"status": {"state": "Ready", "madeUp": 1}}
    )
    assert patched["status"] == {"state": "Ready"}
    with pytest.raises(ApiException) as e:
        custom.patch_cluster_custom_object_status(
            "ome.io", "v1beta1", "clusterbasemodels", name, {"status": {"state": "Sleeping"}}
        )
    assert e.value.status == 422


def test_strict_field_validation_refuses_unknown_fields(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as e:
        custom.create_cluster_custom_object(
            "ome.io",
            "v1beta1",
            "clusterbasemodels",
            model(uniq("m"), notInTheSchema="x"),
            field_validation="Strict",
        )
    assert e.value.status == 400
    assert 'strict decoding error: unknown field "spec.notInTheSchema"' in json.loads(e.value.body)["message"]
