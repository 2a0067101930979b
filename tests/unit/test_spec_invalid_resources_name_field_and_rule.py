"""Invalid resources are refused with the source, the field path and the broken rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelferry.errors import InvalidSpecError
from modelferry.spec import check_resource, parse_resource


def cbm(**spec: Any) -> dict[str, Any]:
    storage = {"storageUri": "hf://org/model", "path": "/models/org/model"}
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": "model"},
        "spec": {"storage": storage, **spec},
    }


def edit(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with `dotted` set to `value` (or deleted when value is DELETE)."""
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


DELETE = object()
FTW = {
    "apiVersion": "ome.io/v1beta1",
    "kind": "FineTunedWeight",
    "metadata": {"name": "lora-1"},
    "spec": {
        "baseModelRef": {"name": "llama-3-1-8b-instruct"},
        "modelType": "LoRA",
        "hyperParameters": {"rank": 8},
        "storage": {"storageUri": "s3://weights/lora-1", "path": "/models/lora-1"},
    },
}

# (id, document, field path, words the rule must contain)
CASES: list[tuple[str, Any, str, str]] = [
    ("relative path", edit(cbm(), "spec.storage.path", "models/x"), "spec.storage.path", "absolute"),
    ("dotdot path", edit(cbm(), "spec.storage.path", "/models/../etc"), "spec.storage.path", "'..'"),
    ("double slash", edit(cbm(), "spec.storage.path", "/models//x"), "spec.storage.path", "normalised"),
    ("bad scheme", edit(cbm(), "spec.storage.storageUri", "ftp://h/x"), "spec.storage.storageUri", "scheme"),
    ("empty uri", edit(cbm(), "spec.storage.storageUri", ""), "spec.storage.storageUri", "storage URI"),
    (
        "cluster pvc without namespace",
        edit(cbm(), "spec.storage.storageUri", "pvc://models/llama"),
        "spec.storage.storageUri",
        "namespace",
    ),
    (
        "fine-tuned pvc without namespace",
        edit(FTW, "spec.storage.storageUri", "pvc://models/lora"),
        "spec.storage.storageUri",
        "namespace",
    ),
    (
        "typo in storage",
        edit(edit(cbm(), "spec.storage.storageURI", "hf://a/b"), "spec.storage.storageUri", DELETE),
        "spec.storage.storageUri",
        "required",
    ),
    (
        "typo in spec",
        cbm(modelFromat={"name": "safetensors"}),
        "spec.modelFromat",
        "did you mean 'modelFormat'",
    ),
    ("typo at top", edit(cbm(), "specs", {}), "specs", "did you mean 'spec'"),
    ("string bool", cbm(disabled="true"), "spec.disabled", "boolean"),
    ("zero max tokens", cbm(maxTokens=0), "spec.maxTokens", "greater than or equal to 1"),
    ("int32 overflow", cbm(maxTokens=2**31), "spec.maxTokens", "less than or equal"),
    ("string max tokens", cbm(maxTokens="4096"), "spec.maxTokens", "integer"),
    (
        "capability not string",
        cbm(modelCapabilities=["TEXT_TO_TEXT", 7]),
        "spec.modelCapabilities[1]",
        "string",
    ),
    ("config not json", cbm(modelConfiguration="{model_type: llama"), "spec.modelConfiguration", "JSON"),
    ("config json array", cbm(modelConfiguration="[1, 2]"), "spec.modelConfiguration", "object"),
    ("config list", cbm(modelConfiguration=[1]), "spec.modelConfiguration", "object"),
    ("format without name", cbm(modelFormat={"version": "1"}), "spec.modelFormat.name", "required"),
    (
        "bad policy",
        edit(cbm(), "spec.storage.downloadPolicy", "Sometimes"),
        "spec.storage.downloadPolicy",
        "Reuse",
    ),
    (
        "two secret keys",
        edit(edit(cbm(), "spec.storage.key", "a"), "spec.storage.storageKey", "b"),
        "spec.storage",
        "not both",
    ),
    (
        "numeric parameter",
        edit(cbm(), "spec.storage.parameters", {"region": 1}),
        "spec.storage.parameters.region",
        "string",
    ),
    (
        "odd parameter key",
        edit(cbm(), "spec.storage.parameters", {"a.b/c": 1}),
        "spec.storage.parameters['a.b/c']",
        "string",
    ),
    (
        "affinity without terms",
        edit(cbm(), "spec.storage.nodeAffinity", {"requiredDuringSchedulingIgnoredDuringExecution": {}}),
        "spec.storage.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        "required",
    ),
    ("no storage", edit(cbm(), "spec.storage", DELETE), "spec.storage", "required"),
    ("no spec", edit(cbm(), "spec", DELETE), "spec", "required"),
    ("wrong version", edit(cbm(), "apiVersion", "ome.io/v1"), "apiVersion", "ome.io/v1beta1"),
    ("no api version", edit(cbm(), "apiVersion", DELETE), "apiVersion", "required"),
    ("unknown kind", edit(cbm(), "kind", "Model"), "kind", "not one of"),
    ("no kind", edit(cbm(), "kind", DELETE), "kind", "required"),
    ("no name", edit(cbm(), "metadata.name", DELETE), "metadata.name", "required"),
    ("upper-case name", edit(cbm(), "metadata.name", "Llama"), "metadata.name", "DNS-1123 subdomain"),
    ("bad namespace", edit(cbm(), "metadata.namespace", "a.b"), "metadata.namespace", "DNS-1123 label"),
    ("bad state", edit(cbm(), "status", {"state": "Done"}), "status.state", "'Ready'"),
    ("status without state", edit(cbm(), "status", {"nodesReady": ["n1"]}), "status.state", "required"),
    (
        "bad condition status",
        edit(cbm(), "status", {"state": "Ready", "conditions": [{"type": "Ready", "status": "Yes"}]}),
        "status.conditions[0].status",
        "'True'",
    ),
    ("ftw without base", edit(FTW, "spec.baseModelRef", DELETE), "spec.baseModelRef", "required"),
    (
        "ftw empty base name",
        edit(FTW, "spec.baseModelRef", {"name": ""}),
        "spec.baseModelRef.name",
        "at least 1",
    ),
    (
        "ftw without hyperparameters",
        edit(FTW, "spec.hyperParameters", DELETE),
        "spec.hyperParameters",
        "required",
    ),
    (
        "ftw hyperparameters list",
        edit(FTW, "spec.hyperParameters", [1]),
        "spec.hyperParameters",
        "dictionary",
    ),
    ("not a mapping", ["a", "list"], "", "not a mapping"),
]


@pytest.mark.parametrize(("doc", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_resource_names_field_and_rule(doc: Any, field: str, words: str) -> None:
    check = check_resource(doc)
    assert not check.valid
    fields = [p.field for p in check.problems]
    assert field in fields, check.problems
    rule = next(p.rule for p in check.problems if p.field == field)
    assert words in rule

    with pytest.raises(InvalidSpecError) as raised:
        parse_resource(doc, source="models.yaml#3")
    error = raised.value
    assert error.source == "models.yaml#3"
    assert str(error).startswith("models.yaml#3: ")
    assert error.field == (check.problems[0].field or None)


def test_error_message_is_source_field_rule() -> None:
    with pytest.raises(InvalidSpecError) as raised:
        parse_resource(edit(cbm(), "spec.storage.path", "relative"), source="models/llama.yaml")
    assert (
        str(raised.value) == "models/llama.yaml: spec.storage.path: storage path 'relative': must be absolute"
    )
    assert raised.value.field == "spec.storage.path"


def test_several_problems_are_all_collected_and_counted() -> None:
    doc = cbm(disabled="no", maxTokens=-1, vendr="meta")
    check = check_resource(doc)
    assert [p.field for p in check.problems] == ["spec.disabled", "spec.maxTokens", "spec.vendr"]
    with pytest.raises(InvalidSpecError, match=r"\(and 2 more problems\)"):
        parse_resource(doc)


def test_rules_run_only_once_types_are_right() -> None:
    # A type error hides the rule checks of the same document: rules need a typed resource.
    doc = edit(cbm(disabled="no"), "spec.storage.path", "relative")
    assert [p.field for p in check_resource(doc).problems] == ["spec.disabled"]


@pytest.mark.parametrize(
    ("kind", "uri"),
    [
        ("BaseModel", "pvc://models/llama"),  # namespaced: the claim is in the resource's namespace
        ("ClusterBaseModel", "pvc://storage:models/llama"),
        ("FineTunedWeight", "pvc://storage:models/lora"),
    ],
)
def test_pvc_namespace_rule_depends_on_scope(kind: str, uri: str) -> None:
    base = FTW if kind == "FineTunedWeight" else edit(cbm(), "kind", kind)
    parse_resource(edit(base, "spec.storage.storageUri", uri))
