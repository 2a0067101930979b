"""50 models finishing together on one node while the API server answers 500 to a share of the
ConfigMap, node-label and status writes for a while (and 409s come from the concurrency itself):
every failure is typed retryable, and with Temporal's retry (played here by `with_retries`) every
ConfigMap entry, node label and status lands. Nothing is lost and nothing is written twice wrong."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.rest import ApiException
from temporalio.exceptions import ApplicationError

from activities.kube import KubeClient
from activities.label import LabelActivities
from activities.resources import ResourceActivities
from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.testing import ome_crds
from modelferry.messages import ModelRef, SetNodeModelStatusInput, WriteModelStatusInput
from modelferry.names import ModelKind

pytestmark = pytest.mark.faults

T = TypeVar("T")
MODELS = 50
FAULTY_WRITES = 150  # the first this many mutating requests each fail with probability 1/3


class FlakyApi:
    """Wraps the client's REST layer: mutating requests on ConfigMaps, Nodes and model status
    get a 500 now and then, as from an API server behind a restarting load balancer."""

    def __init__(self, request: Callable[..., Any], *, seed: int) -> None:
        self._request = request
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.writes = 0
        self.failed = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method in ("PUT", "PATCH", "POST") and any(
            p in url for p in ("/configmaps", "/nodes/", "/status")
        ):
            with self._lock:
                self.writes += 1
                fail = self.writes <= FAULTY_WRITES and self._random.random() < 1 / 3
                self.failed += fail
            if fail:
                error = ApiException(status=500, reason="Internal Server Error (injected)")
                error.body = b'{"kind":"Status","status":"Failure","message":"injected","code":500}'
                raise error
        return self._request(method, url, *args, **kwargs)


def with_retries(call: Callable[[], T], *, attempts: int = 30) -> T:
    for _ in range(attempts - 1):
        try:
            return call()
        except ApplicationError as error:  # what Temporal sees: it retries unless non_retryable
            assert not error.non_retryable, f"a transient API error must be retryable: {error!r}"
    return call()


def test_fifty_models_finish_together_through_500s_and_409s(tmp_path):
    with EmbeddedApiServer(nodes=["gpu-1"]) as api:
        for crd in ome_crds():
            api.apply_manifest(crd)
        api.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        custom = k8s.CustomObjectsApi(api_client)
        refs = [
            ModelRef(kind=ModelKind.BASE_MODEL, namespace=f"team-{i % 3}", name=f"m{i}", uid=f"uid-{i}")
            for i in range(MODELS)
        ]
        core = k8s.CoreV1Api(api_client)
        for namespace in sorted({ref.namespace for ref in refs}):
            core.create_namespace({"metadata": {"name": namespace}})
        for ref in refs:
            body = {
                "apiVersion": "ome.io/v1beta1",
                "kind": "BaseModel",
                "metadata": {"name": ref.name, "namespace": ref.namespace},
                "spec": {"storage": {"storageUri": "hf://org/model", "path": f"/raid/models/{ref.name}"}},
            }
            custom.create_namespaced_custom_object("ome.io", "v1beta1", ref.namespace, "basemodels", body)
        # A resource's identity is its uid: writes for another uid under the name are refused.
        refs = [
            ref.model_copy(
                update={
                    "uid": custom.get_namespaced_custom_object(
                        "ome.io", "v1beta1", ref.namespace, "basemodels", ref.name
                    )["metadata"]["uid"]
                }
            )
            for ref in refs
        ]

        flaky = FlakyApi(api_client.rest_client.request, seed=7)
        api_client.rest_client.request = flaky.request  # GET/PUT/PATCH... all go through it
        kube = KubeClient(api_client)
        labels = LabelActivities(kube=kube, agent_namespace="ome")
        resources = ResourceActivities(kube=kube)

        def finish(ref: ModelRef) -> None:
            with_retries(
                lambda: labels.set_node_model_status(
                    SetNodeModelStatusInput(
                        ref=ref, node="gpu-1", status="Ready", config={"modelType": "llama"}
                    )
                )
            )
            status = {"state": "Ready", "nodesReady": ["gpu-1"], "observedGeneration": 1}
            with_retries(lambda: resources.write_model_status(WriteModelStatusInput(ref=ref, status=status)))

        with ThreadPoolExecutor(max_workers=25) as pool:
            list(pool.map(finish, refs))

        assert flaky.failed > 20, "the fault injection must actually have hit writes"
        entries = core.read_namespaced_config_map("gpu-1", "ome").data
        assert len(entries) == 2 * MODELS  # each model's documented entry and OME's (the default)
        node_labels = core.read_node("gpu-1").metadata.labels
        for ref in refs:
            assert json.loads(entries[f"{ref.namespace}_{ref.name}"])["status"] == "Ready"
            assert json.loads(entries[f"{ref.namespace}.basemodel.{ref.name}"])["status"] == "Ready"
            assert node_labels[f"models.ome/{ref.uid}"] == "Ready"
            obj = custom.get_namespaced_custom_object(
                "ome.io", "v1beta1", ref.namespace, "basemodels", ref.name
            )
            assert obj["status"]["state"] == "Ready" and obj["status"]["nodesReady"] == ["gpu-1"]
