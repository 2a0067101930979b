"""Real kubectl against the embedded server with our model CRDs: `kubectl apply` refuses what
`modelferry validate` refuses (the CRDs' CEL rules, patterns and enums), naming the field and,
where CEL can say it, with the validator's own message; OME's defaults are filled in;
`kubectl explain` reads the served OpenAPI v3; `kubectl get` prints READY, STATE, REASON and AGE."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client

from modelferry.names import API_GROUP, API_VERSION, ModelKind
from modelferry.spec import check_resource

from .conftest import KubectlRunner, uniq


def cbm(name: str, **storage: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"storage": {"storageUri": "hf://org/model", "path": "/models/org/model", **storage}},
    }


def apply(kubectl: KubectlRunner, doc: dict[str, Any]) -> tuple[int, str]:
    done = kubectl("apply", "-f", "-", input=json.dumps(doc))
    return done.returncode, done.stdout + done.stderr


# (storage fields, the field named, the validator's message is shown as it is)
REFUSED = {
    "path dot-dot": ({"path": "/models/../etc"}, "spec.storage.path", True),
    "path relative": ({"path": "models/x"}, "spec.storage.path", True),
    "path trailing slash": ({"path": "/models/x/"}, "spec.storage.path", True),
    "no scheme": ({"storageUri": "/etc/passwd"}, "spec.storage.storageUri", True),
    "unsupported scheme": ({"storageUri": "file:///etc/passwd"}, "spec.storage.storageUri", False),
    "pvc without namespace": ({"storageUri": "pvc://models/x"}, "spec.storage.storageUri", True),
    "pvc sub-path dot-dot": ({"storageUri": "pvc://ns:claim/a/../../etc"}, "spec.storage.storageUri", True),
    "hf shape": ({"storageUri": "hf://a/b/c"}, "spec.storage.storageUri", True),
    "s3 bucket": ({"storageUri": "s3://My-Bucket/x"}, "spec.storage.storageUri", False),
    "oci auth types disagree": (
        {
            "storageUri": "oci://n/ns/b/bk/o/x",
            "parameters": {"auth_type": "UserPrincipal", "authType": "InstancePrincipal"},
        },
        "spec.storage.storageUri",
        True,
    ),
    "key and storageKey disagree": ({"key": "a", "storageKey": "b"}, "spec.storage", True),
}


@pytest.mark.parametrize(("storage", "field", "same"), REFUSED.values(), ids=REFUSED.keys())
def test_apply_refuses_what_validate_refuses_naming_the_field(
    kubectl: KubectlRunner, storage: dict[str, Any], field: str, same: bool
) -> None:
    doc = cbm(uniq("bad"), **storage)
    check = check_resource(doc)
    assert not check.valid
    assert check.problems[0].field == field
    code, output = apply(kubectl, doc)
    assert code != 0
    assert f'The ClusterBaseModel "{doc["metadata"]["name"]}" is invalid: ' in output, output
    assert f"{field}: " in output, output
    if same:
        assert check.problems[0].rule in output, output


def test_apply_refuses_an_unknown_download_policy_by_its_enum(kubectl: KubectlRunner) -> None:
    code, output = apply(kubectl, cbm(uniq("bad"), downloadPolicy="Never"))
    assert code != 0
    assert 'spec.storage.downloadPolicy: Unsupported value: "Never"' in output, output


def test_a_valid_model_applies_and_gets_omes_defaults(
    kubectl: KubectlRunner, custom: client.CustomObjectsApi
) -> None:
    name = uniq("good")
    doc = cbm(name)
    doc["spec"]["modelFormat"] = {"name": "safetensors"}
    assert check_resource(doc).valid
    code, output = apply(kubectl, doc)
    assert code == 0, output
    stored = custom.get_cluster_custom_object(
        API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, name
    )
    assert stored["spec"]["modelFormat"] == {"name": "safetensors", "operator": "Equal", "weight": 1}
    # An update that leaves a field as it is does not check it again (ratcheting), and a new bad
    # value in it is refused.
    changed = copy.deepcopy(doc)
    changed["spec"]["vendor"] = "acme"
    assert apply(kubectl, changed)[0] == 0
    changed["spec"]["storage"]["path"] = "/models/./x"
    code, output = apply(kubectl, changed)
    assert code != 0 and "must be normalised (no '.' segments)" in output, output


def test_explain_reads_the_served_schema(kubectl: KubectlRunner) -> None:
    done = kubectl("explain", "cbm.spec.storage")
    assert done.returncode == 0, done.stderr
    assert "KIND:       ClusterBaseModel" in done.stdout
    assert "storageUri\t<string> -required-" in done.stdout
    assert "enum: ReuseIfExists, AlwaysDownload" in done.stdout
    path = kubectl("explain", "basemodel.spec.storage.path")
    assert path.returncode == 0 and "Absolute, normalised directory on the node." in path.stdout
    assert kubectl("explain", "ftw.spec.baseModelRef.name").returncode == 0


def test_get_prints_ready_state_reason_and_age(
    kubectl: KubectlRunner, custom: client.CustomObjectsApi
) -> None:
    name = uniq("shown")
    assert apply(kubectl, cbm(name))[0] == 0
    status = {
        "state": "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "DownloadFailed", "message": "403"}],
    }
    custom.patch_cluster_custom_object_status(
        API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, name, {"status": status}
    )
    done = kubectl("get", "cbm", name)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    columns = header.split()
    assert columns[0] == "NAME" and columns[-4:] == ["READY", "STATE", "REASON", "AGE"]
    assert row.split()[0] == name and row.split()[-4:-1] == ["False", "Failed", "DownloadFailed"]
    fresh = uniq("fresh")
    assert apply(kubectl, cbm(fresh))[0] == 0
    (_, row) = kubectl("get", "cbm", fresh).stdout.splitlines()
    assert row.split()[0] == fresh and len(row.split()) == 2  # no status yet: blank, then the age
