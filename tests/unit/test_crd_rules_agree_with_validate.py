"""The CRDs' CEL rules and limits (modelferry/spec/celrules.py), as the embedded API server applies
them with its schema checks, agree with `modelferry validate`: every corpus resource and every
URI or path the validator's own tests accept is accepted; every one they refuse is refused on the
same field, with the validator's message where CEL can say it (`SAME_MESSAGE`).

The one rule a CRD cannot hold: a BaseModel's claim in another namespace (a rule cannot read
`metadata.namespace`), so only validate and the watcher refuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.apiserver import schema
from modelferry.spec import check_resource
from modelferry.spec.crdgen import build_crds
from tests.unit.test_storage_paths_refuse_escaping_names import CASES, base_model
from tests.unit.test_storage_uri import BAD, GOOD

CORPUS = sorted((Path(__file__).resolve().parents[1] / "data" / "ome-models").rglob("*.yaml"))
SCHEMAS = {
    c["spec"]["names"]["kind"]: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for c in build_crds()
}


def crd_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return schema.admit(doc, SCHEMAS[doc["kind"]], old=None).problems


def uri_doc(uri: str, parameters: dict[str, str] | None, cluster_scoped: bool) -> dict[str, Any]:
    doc = base_model(uri=uri)
    if cluster_scoped:
        doc["kind"] = "ClusterBaseModel"
        del doc["metadata"]["namespace"]
    if parameters:
        doc["spec"]["storage"]["parameters"] = parameters
    return doc


DOCS = {
    **{f"uri {u!r} {p}": uri_doc(u, p, c) for u, p, c, _ in GOOD + BAD},
    **{
        f"{c.id}": base_model(path=c.values[1])
        if c.values[0].endswith("path")
        else base_model(uri=c.values[1])
        for c in CASES
    },
    "uri over the limit": base_model(uri="s3://bucket/" + "x" * 9000),
    "pvc in the model's own namespace": base_model(uri="pvc://team-a:claim/x"),
}
# The validator's message, word for word, among the CRD's causes (a message that quotes the part
# at fault, e.g. "'gs'" of a URI, cannot be built in standard CEL).
SAME_MESSAGE = {
    "uri 'meta-llama/Llama-3' None",
    "uri 'hf://' None",
    "uri 'hf://a/b/c' None",
    "uri 'hf://org/repo.git' None",
    "uri 's3://bucket/a//b' None",
    "uri 's3://bucket/a/../b' None",
    "uri 'oci://bucket/x' None",
    "uri 'oci://n/ns/b/bk/o/a/../b' None",
    "uri 'oci://n/ns/b/bk/o/x' {'auth_type': 'UserPrincipal', 'authType': 'InstancePrincipal'}",
    "uri 'pvc://models/x' None",
    "uri 'pvc://ns:claim/a/../../etc' None",
    "uri 'vendor://acme/models' None",
    "uri 'vendor://acme/models/a/../b' None",
    "path relative",
    "path dot-dot inside",
    "path dot segment",
    "path double slash",
    "path trailing slash",
    "path root",
    "path backslash separators",
    "pvc dot-dot",
    "pvc backslash separators",
    "s3 dot-dot",
    "bare absolute path",
}


def test_every_corpus_resource_passes_the_crd_rules() -> None:
    assert len(CORPUS) == 207
    refused = {p.name: crd_problems(yaml.safe_load(p.read_text())) for p in CORPUS}
    assert {name: found for name, found in refused.items() if found} == {}


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_the_crd_refuses_exactly_what_validate_refuses(
    doc: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    check = check_resource(doc)
    found = crd_problems(doc)
    if check.valid:
        assert found == []
        return
    assert found, f"the CRD accepts what validate refuses: {check.problems}"
    field = check.problems[0].field
    assert field in {f for f, _ in found}, (check.problems, found)
    if request.node.callspec.id in SAME_MESSAGE:
        assert any(m.endswith(": " + check.problems[0].rule) for f, m in found if f == field), (
            check.problems,
            found,
        )


def test_same_message_names_only_known_cases() -> None:
    assert set(DOCS) >= SAME_MESSAGE
