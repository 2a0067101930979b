"""Our CRDs on a real kube-apiserver: their CEL rules compile within the cost budget, `kubectl
apply` refuses what `modelferry validate` refuses with the same field and message as the
embedded server, accepts what validate accepts (OME's defaults filled in), `kubectl explain`
reads them, and `kubectl get` prints READY, STATE, REASON and AGE.

The embedded server's side of each check is in
tests/apiserver/test_kubectl_explains_validates_and_prints_models.py; both take their cases
from there, so the two servers are held to one table.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from modelferry.apiserver.testing import running_apiserver
from modelferry.spec import check_resource
from tests.apiserver.test_kubectl_explains_validates_and_prints_models import REFUSED, cbm

from .conftest import Kubectl

pytestmark = pytest.mark.controlplane


def apply(kubectl: Kubectl, doc: dict[str, Any]) -> tuple[int, str]:
    done = kubectl("apply", "--filename=-", input=json.dumps(doc))
    return done.returncode, done.stdout + done.stderr


def _embedded_refusal(doc: dict[str, Any]) -> str:
    """The embedded server's 422 message for `doc`."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    from modelferry.apiserver.testing import api_client

    with running_apiserver() as server, api_client(server) as api:
        try:
            CustomObjectsApi(api).create_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", doc)
        except ApiException as e:
            return str(json.loads(e.body)["message"])
    raise AssertionError("the embedded server accepted it")


@pytest.mark.parametrize(("storage", "field", "same"), REFUSED.values(), ids=REFUSED.keys())
def test_apply_refuses_like_validate_and_the_embedded_server(
    kubectl: Kubectl, ome_crds: list[str], storage: dict[str, Any], field: str, same: bool
) -> None:
    doc = cbm("bad-model", **storage)
    check = check_resource(doc)
    code, output = apply(kubectl, doc)
    assert code != 0, output
    assert 'The ClusterBaseModel "bad-model" is invalid: ' in output, output
    assert f"{field}: " in output, output
    if same:
        assert check.problems[0].rule in output, output
    # The embedded server names the same causes in the same words.
    real = output.strip().removeprefix('Error from server (Invalid): error when creating "STDIN": ')
    embedded = _embedded_refusal(doc)
    assert _causes(real) == _causes(embedded), (real, embedded)


def _causes(message: str) -> set[str]:
    text = message.split(" is invalid: ", 1)[1].strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return set(text.split(", spec.")) if text.startswith("spec.") else {text}


def test_valid_models_apply_with_omes_defaults(kubectl: Kubectl, ome_crds: list[str]) -> None:
    doc = cbm("good-model")
    doc["spec"]["modelFormat"] = {"name": "safetensors"}
    code, output = apply(kubectl, doc)
    assert code == 0, output
    stored = json.loads(kubectl("get", "cbm", "good-model", "--output=json").stdout)
    assert stored["spec"]["modelFormat"] == {"name": "safetensors", "operator": "Equal", "weight": 1}


def test_explain_and_printer_columns(kubectl: Kubectl, ome_crds: list[str]) -> None:
    for _ in range(50):  # discovery and OpenAPI publish a new CRD a moment after it is Established
        explained = kubectl("explain", "cbm.spec.storage")
        if explained.returncode == 0:
            break
        time.sleep(0.2)
    assert explained.returncode == 0, explained.stderr
    assert "storageUri\t<string> -required-" in explained.stdout
    assert apply(kubectl, cbm("shown-model"))[0] == 0
    status = {
        "state": "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "DownloadFailed"}],
    }
    patched = kubectl(
        "patch",
        "cbm",
        "shown-model",
        "--subresource=status",
        "--type=merge",
        f"--patch={json.dumps({'status': status})}",
    )
    assert patched.returncode == 0, patched.stderr
    header, row = kubectl("get", "cbm", "shown-model").stdout.splitlines()
    assert header.split()[-4:] == ["READY", "STATE", "REASON", "AGE"]
    assert row.split()[-4:-1] == ["False", "Failed", "DownloadFailed"]
    assert apply(kubectl, cbm("fresh-model"))[0] == 0
    _, row = kubectl("get", "cbm", "fresh-model").stdout.splitlines()
    assert row.split()[0] == "fresh-model" and len(row.split()) == 2  # blank cells, as on the embedded server
