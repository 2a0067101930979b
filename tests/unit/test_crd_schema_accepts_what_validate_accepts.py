"""The CRDs' own openAPIV3Schema (via jsonschema) agrees with the pydantic models.

Whatever `modelferry validate` accepts, the API server must accept too, or a resource would pass
CI and then fail `kubectl apply`. Type-level mistakes must be refused by both. (The rules beyond
types, such as a safe `storage.path`, are the CRDs' CEL rules, which jsonschema does not run:
tests/unit/test_crd_rules_agree_with_validate.py checks those.)

The Kubernetes extensions are translated as the API server applies them under kubectl's default
strict field validation: an object with `properties` refuses unknown fields unless it has
`x-kubernetes-preserve-unknown-fields`; an untyped preserve-unknown node accepts any value;
`x-kubernetes-int-or-string` accepts an integer or a string.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelferry.spec import check_resource
from modelferry.spec.parse import format_field_path

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "deploy" / "crd"
CORPUS_FILES = sorted((ROOT / "tests" / "data" / "ome-models").rglob("*.yaml"))
_KEPT = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "required")


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    if node.get("x-kubernetes-int-or-string"):
        return {"type": ["integer", "string"]}
    out = {k: node[k] for k in _KEPT if k in node}
    if "properties" in node:
        out["properties"] = {name: to_json_schema(sub) for name, sub in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    return out


def _load_validators() -> dict[str, jsonschema.protocols.Validator]:
    validators = {}
    for path in CRD_DIR.glob("ome.io_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        schema = to_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        validators[crd["spec"]["names"]["kind"]] = cls(schema)
    return validators


VALIDATORS = _load_validators()


def schema_errors(doc: dict[str, Any]) -> list[jsonschema.ValidationError]:
    return list(VALIDATORS[doc["kind"]].iter_errors(doc))


FULL_BASE_MODEL: dict[str, Any] = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "BaseModel",
    "metadata": {"name": "qwen3-8b", "namespace": "team-a", "labels": {"a": "b"}, "uid": "u-1"},
    "spec": {
        "vendor": "Qwen",
        "version": "1.0.0",
        "disabled": False,
        "displayName": "Qwen.qwen3-8b",
        "compartmentID": "c1",
        "modelType": "qwen3",
        "modelArchitecture": "Qwen3ForCausalLM",
        "modelParameterSize": "8B",
        "maxTokens": 32768,
        "quantization": "fp8",
        "modelCapabilities": ["TEXT_TO_TEXT"],
        "apiCapabilities": ["OPENAI_V1_CHAT_COMPLETIONS"],
        "modelFormat": {"name": "safetensors", "version": "1.0.0", "operator": "Equal", "weight": 1},
        "modelFramework": {"name": "transformers", "version": "4.51.0"},
        "modelConfiguration": {"model_type": "qwen3", "rope_scaling": None, "layers": [1, 2]},
        "servingMode": ["On-demand", "Dedicated"],
        "additionalMetadata": {"k": "v"},
        "diffusionPipeline": {"additionalComponents": {"x": {"library": "l", "type": "t"}}},
        "storage": {
            "storageUri": "pvc://claim/qwen3",
            "path": "/models/qwen3-8b",
            "schemaPath": "config.json",
            "key": "secret",
            "parameters": {"region": "r"},
            "nodeSelector": {"gpu": "true"},
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "z", "operator": "Exists"}]}]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {"matchFields": [{"key": "metadata.name", "operator": "In"}]},
                    }
                ],
            },
            "downloadPolicy": "ReuseIfExists",
        },
    },
    "status": {
        "state": "Updating",
        "lifecycle": "Public",
        "nodesReady": ["n1"],
        "nodesFailed": [],
        "observedGeneration": 4,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Rolling",
                "message": "1/2",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 4,
            },
        ],
    },
}
FINE_TUNED: dict[str, Any] = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "FineTunedWeight",
    "metadata": {"name": "lora-1"},
    "spec": {
        "baseModelRef": {"name": "qwen3-8b", "namespace": "team-a"},
        "modelType": "LoRA",
        "hyperParameters": {"rank": 8, "nested": {"lr": 0.0001}},
        "configuration": {"any": ["thing"]},
        "trainingJobRef": {"name": "job-1"},
        "vendor": "us",
        "storage": {"storageUri": "s3://bucket/lora-1", "storageKey": "creds"},
    },
}


def with_spec(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["spec"].update(changes)
    return doc


VALID_DOCS = {
    "full-base-model": FULL_BASE_MODEL,
    "config-as-json-string": with_spec(
        FULL_BASE_MODEL, modelConfiguration=json.dumps({"model_type": "qwen3"})
    ),
    "cluster-base-model": {
        **with_spec(FULL_BASE_MODEL),
        "kind": "ClusterBaseModel",
        "metadata": {"name": "qwen3-8b"},
        "spec": {"storage": {"storageUri": "hf://Qwen/Qwen3-8B"}},
    },
    "fine-tuned-weight": FINE_TUNED,
}


def test_every_corpus_resource_passes_the_crd_schema() -> None:
    failures = {}
    for path in CORPUS_FILES:
        doc = yaml.safe_load(path.read_text())
        errors = schema_errors(doc)
        if errors:
            failures[path.name] = [e.message for e in errors]
    assert len(CORPUS_FILES) == 207
    assert failures == {}


@pytest.mark.parametrize("doc", VALID_DOCS.values(), ids=VALID_DOCS.keys())
def test_documents_validate_accepts_pass_the_crd_schema(doc: dict[str, Any]) -> None:
    check = check_resource(doc)
    assert check.valid, check.problems
    assert schema_errors(doc) == []
    assert check.resource is not None
    assert schema_errors(check.resource.to_wire()) == []  # what we write back is accepted too


# Type-level mistakes: refused by both, at the same place.
TYPE_ERRORS = {
    "string bool": with_spec(FULL_BASE_MODEL, disabled="false"),
    "string int": with_spec(FULL_BASE_MODEL, maxTokens="4096"),
    "int32 overflow": with_spec(FULL_BASE_MODEL, maxTokens=2**31),
    "unknown spec field": with_spec(FULL_BASE_MODEL, modelFromat={"name": "x"}),
    "unknown storage field": with_spec(FULL_BASE_MODEL, storage={"storageUri": "hf://a/b", "paht": "/m"}),
    "missing storage uri": with_spec(FULL_BASE_MODEL, storage={"path": "/m"}),
    "bad download policy": with_spec(
        FULL_BASE_MODEL, storage={"storageUri": "hf://a/b", "downloadPolicy": "Never"}
    ),
    "number in string map": with_spec(FULL_BASE_MODEL, additionalMetadata={"k": 1}),
    "format without name": with_spec(FULL_BASE_MODEL, modelFormat={"version": "1"}),
    "capabilities not a list": with_spec(FULL_BASE_MODEL, modelCapabilities="TEXT_TO_TEXT"),
    "affinity term without operator": with_spec(
        FULL_BASE_MODEL,
        storage={
            "storageUri": "hf://a/b",
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "z"}]}]
                }
            },
        },
    ),
    "bad state": {**FULL_BASE_MODEL, "status": {"state": "Downloading"}},
    "bad condition status": {
        **FULL_BASE_MODEL,
        "status": {"state": "Ready", "conditions": [{"type": "A", "status": "yes"}]},
    },
    "unknown top-level field": {**FULL_BASE_MODEL, "specs": {}},
    "ftw without hyperparameters": {
        **FINE_TUNED,
        "spec": {k: v for k, v in FINE_TUNED["spec"].items() if k != "hyperParameters"},
    },
    "ftw hyperparameters not object": with_spec(FINE_TUNED, hyperParameters="rank=8"),
    "ftw ref without name": with_spec(FINE_TUNED, baseModelRef={"namespace": "x"}),
}


@pytest.mark.parametrize("doc", TYPE_ERRORS.values(), ids=TYPE_ERRORS.keys())
def test_type_errors_are_refused_by_both_at_the_same_field(doc: dict[str, Any]) -> None:
    check = check_resource(doc)
    errors = schema_errors(doc)
    assert not check.valid
    assert errors, "the CRD schema accepted a document validate refuses"
    schema_paths = {format_field_path(tuple(e.absolute_path)) for e in errors}
    # jsonschema names the object holding a missing or unknown key; pydantic names the key.
    assert any(_within(p.field, s) for p in check.problems for s in schema_paths), (
        check.problems,
        schema_paths,
    )


def _within(field: str, parent: str) -> bool:
    return not parent or field == parent or field.startswith((parent + ".", parent + "["))
