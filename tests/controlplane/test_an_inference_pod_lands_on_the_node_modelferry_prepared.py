"""What modelferry is for, end to end on the real control plane: an InferenceService's Pod, which
OME gives a nodeSelector `models.ome.io/clusterbasemodel.<name>: Ready`, is bound by the real
scheduler to the node modelferry prepared, and to no node before the model is Ready there.

Three process-kubelet nodes (tests/e2e/fixtures.py THREE_NODES), of which the model's nodeSelector
picks gpu-a alone; the watcher, control worker and static node workers run as deploy/rbac's
ServiceAccounts, the Pod is created by the test as a cluster admin (as OME's controller would)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from modelferry.names import ModelKind, ome_node_label_key
from tests.e2e.fixtures import model_source, real_product, three_node_cluster
from tests.e2e.harness import Cluster, Pipeline, cluster_model, running_pipeline, unique

pytestmark = pytest.mark.controlplane

__all__ = ["model_source", "real_product", "three_node_cluster"]

NAMESPACE = "default"
ELIGIBLE = "gpu-a"
# The scheduler's reason when every node is up and schedulable and only the selector rules them out.
NO_NODE_MATCHES = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


@pytest.fixture(scope="module")
def e2e_kube() -> str:
    return "real"


def inference_pod(name: str, *, node_selector: dict[str, str]) -> dict[str, Any]:
    """The part of an InferenceService's predictor Pod that placement depends on."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "inference"}},
        "spec": {
            "nodeSelector": node_selector,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "server", "image": "ome/inference-server:test", "command": ["sleep", "600"]}
            ],
        },
    }


async def default_service_account(p: Pipeline) -> bool:
    """Whether the service account controller has made `default` (a fresh control plane has none
    for a moment, and admission refuses Pods until then)."""
    try:
        await asyncio.to_thread(p.core.read_namespaced_service_account, "default", NAMESPACE)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


async def scheduled(p: Pipeline, name: str) -> dict[str, Any] | None:
    """The Pod's PodScheduled condition once the scheduler has written one."""
    pod = await asyncio.to_thread(p.core.read_namespaced_pod, name, NAMESPACE)
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled":
            return {"status": condition.status, "message": condition.message, "node": pod.spec.node_name}
    return None


@pytest.mark.timeout(300)
async def test_an_inference_pod_is_bound_to_the_prepared_node_once_the_model_is_ready(
    tmp_path: Path, three_node_cluster: Cluster, model_source: tuple[Path, int]
) -> None:
    claim_dir, _ = model_source
    name = unique("served")
    label = ome_node_label_key(kind=ModelKind.CLUSTER_BASE_MODEL, namespace=None, name=name)
    # What OME's code computes for a short name (no shortening): the literal its Pods select on.
    assert label == f"models.ome.io/clusterbasemodel.{name}"
    model = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    model["spec"]["storage"]["nodeSelector"] = {"gpu": "a100"}
    pod_name = unique("isvc-predictor")
    async with running_pipeline(
        cluster=three_node_cluster,
        tmp=tmp_path,
        nodes=["gpu-a", "gpu-b", "cpu-c"],
        pvcs={"default:models": claim_dir},
    ) as p:
        await p.wait_for(lambda: default_service_account(p), what="the default ServiceAccount")
        await asyncio.to_thread(
            p.core.create_namespaced_pod, NAMESPACE, inference_pod(pod_name, node_selector={label: "Ready"})
        )
        try:
            # Before the model exists: Pending, and only because no node carries the label (the
            # three nodes are up, untainted and considered).
            seen: list[str] = []

            async def unschedulable() -> dict[str, Any] | None:
                found = await scheduled(p, pod_name)
                seen[:] = [str((found or {}).get("message"))]
                # (What follows is the preemption verdict: no victim would help either.)
                return found if found and found["message"].startswith(NO_NODE_MATCHES) else None

            try:
                pending = await p.wait_for(unschedulable, timeout=90, what=f"{pod_name} {NO_NODE_MATCHES}")
            except AssertionError as e:
                raise AssertionError(f"{e}; the scheduler's last word: {seen}") from None
            assert pending["status"] == "False" and pending["node"] is None

            # Until the model is Ready, the Pod is bound nowhere, or (the label may come a moment
            # before the status) to a node that already holds the model's bytes.
            await p.apply(model)
            model_file = p.node_roots[ELIGIBLE] / "raid/models" / name / "config.json"

            async def prepared_before_bound() -> dict[str, Any] | None:
                found = await scheduled(p, pod_name)
                if found and found["node"] is not None:
                    assert found["node"] == ELIGIBLE and model_file.exists(), found
                got = await p.get(model)
                return got if ((got or {}).get("status") or {}).get("state") == "Ready" else None

            await p.wait_for(prepared_before_bound, timeout=120, what=f"{name} Ready")
            ready = await p.wait_state(model, "Ready", timeout=10)
            assert ready["status"]["nodesReady"] == [ELIGIBLE]
            assert p.node_labels(ELIGIBLE)[label] == "Ready"
            for other in ("gpu-b", "cpu-c"):
                assert label not in p.node_labels(other)

            async def bound() -> dict[str, Any] | None:
                found = await scheduled(p, pod_name)
                return found if found and found["status"] == "True" else None

            placed = await p.wait_for(bound, timeout=60, what=f"{pod_name} bound")
            assert placed["node"] == ELIGIBLE
            assert model_file.read_bytes() == (claim_dir / "tiny" / "config.json").read_bytes()
        finally:
            try:
                await asyncio.to_thread(
                    p.core.delete_namespaced_pod, pod_name, NAMESPACE, grace_period_seconds=0
                )
            except ApiException as e:
                if e.status != 404:
                    raise
