"""deploy/examples: a BaseModel and a ClusterBaseModel per source type, a FineTunedWeight and a
Secret per credential type. Every model validates with `modelferry validate`, passes the rules
OME's own catalogue passes (parses, round-trips to what was written, the default admission
policy), and names a Secret that exists beside it in the right namespace; every Secret holds the
keys our backends read, proven by handing it to the backend's own credential function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.storage.hf import token_from
from activities.storage.oci import OciBackend
from activities.storage.s3 import _credentials_from_secret
from modelferry.admission import AdmissionPolicy, check_admission
from modelferry.cli import main
from modelferry.names import AGENT_NAMESPACE_DEFAULT
from modelferry.spec import check_resource
from modelferry.storage_uri import OciUri, parse_storage_uri

from .manifests import DEPLOY

EXAMPLES = DEPLOY / "examples"
SOURCES = ("hf", "s3", "oci", "pvc", "vendor")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _models() -> list[dict[str, Any]]:
    return [
        d for p in sorted(EXAMPLES.rglob("*.yaml")) for d in _docs(p) if d["apiVersion"].startswith("ome.io/")
    ]


def _secrets() -> dict[tuple[str, str], dict[str, str]]:
    found = {}
    for path in sorted((EXAMPLES / "secrets").glob("*.yaml")):
        for doc in _docs(path):
            assert doc["kind"] == "Secret" and doc["type"] == "Opaque", path
            found[(doc["metadata"]["namespace"], doc["metadata"]["name"])] = doc["stringData"]
    return found


def _model_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_modelferry_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"{len(_models())} valid, 0 invalid")


def test_each_source_type_has_a_base_model_and_a_cluster_base_model_and_there_is_a_finetuned_weight() -> None:
    have = {(d["kind"], d["spec"]["storage"]["storageUri"].split("://")[0]) for d in _models()}
    for scheme in SOURCES:
        assert {("BaseModel", scheme), ("ClusterBaseModel", scheme)} <= have, scheme
    assert any(kind == "FineTunedWeight" for kind, _ in have)


@pytest.mark.parametrize("doc", _models(), ids=_model_id)
def test_an_example_follows_the_rules_omes_catalogue_follows(doc: dict[str, Any]) -> None:
    check = check_resource(doc)
    assert check.valid and check.resource is not None, check.problems
    assert check.resource.to_wire() == doc  # what the cluster stores is what the file says
    assert check_admission(check.resource, AdmissionPolicy()) == []  # default roots and claims


@pytest.mark.parametrize("doc", [d for d in _models() if d["spec"]["storage"].get("key")], ids=_model_id)
def test_a_models_secret_is_an_example_in_the_namespace_it_is_read_from(doc: dict[str, Any]) -> None:
    # activities/secrets.py: a BaseModel's namespace, else the agent namespace.
    namespace = doc["metadata"].get("namespace") or AGENT_NAMESPACE_DEFAULT
    assert (namespace, doc["spec"]["storage"]["key"]) in _secrets()


def test_the_hf_token_secret_gives_the_hub_a_token() -> None:
    for (_, name), data in _secrets().items():
        if name == "hf-token":
            assert token_from(data, {}) == data["token"]


def test_the_s3_secret_gives_boto3_its_keys() -> None:
    for (_, name), data in _secrets().items():
        if name == "s3-keys":
            credentials = _credentials_from_secret(data, where="example")
            assert credentials == {
                "aws_access_key_id": data["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": data["AWS_SECRET_ACCESS_KEY"],
            }


def test_the_oci_user_principal_secret_is_a_config_the_sdk_accepts() -> None:
    (model,) = [d for d in _models() if d["spec"]["storage"].get("key") == "oci-user-principal"]
    storage = model["spec"]["storage"]
    uri = parse_storage_uri(storage["storageUri"], parameters=storage["parameters"])
    assert isinstance(uri, OciUri) and uri.auth_type == "UserPrincipal"
    secret = _secrets()[(model["metadata"]["namespace"], "oci-user-principal")]
    backend = OciBackend(uri, parameters=storage["parameters"], secret=secret)
    config = backend._user_principal_config(secret)  # oci.config.validate_config passed
    assert config["key_content"] == secret["privateKey"] and config["tenancy"] == secret["tenancy"]


def test_only_oci_user_principal_models_and_no_others_name_an_oci_secret() -> None:
    for doc in _models():
        storage = doc["spec"]["storage"]
        if storage["storageUri"].startswith("oci://"):
            auth = (storage.get("parameters") or {}).get("auth_type", "InstancePrincipal")
            assert bool(storage.get("key")) == (auth == "UserPrincipal"), _model_id(doc)


def test_secret_examples_hold_placeholders_only() -> None:
    for (namespace, name), data in _secrets().items():
        for key, value in data.items():
            assert "REPLACE_ME" in value or key in {"tenancy", "user", "fingerprint", "region"}, (
                namespace,
                name,
                key,
            )
