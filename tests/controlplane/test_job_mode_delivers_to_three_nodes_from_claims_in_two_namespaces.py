"""Job mode on three process-kubelet nodes: two `pvc://` models, one whose claim is in the agent
namespace and one whose claim is in another namespace set up only as deploy/rbac and
deploy/default say (its Pod Security labels, a RoleBinding for the controller, the node worker's
ServiceAccount and its RoleBinding, all taken from those files), become Ready on every node.

Each (node, claim) gets its own Job in the claim's namespace; the real job controller makes the
Pods, admitted (Pod Security, our ValidatingAdmissionPolicy) with the node worker's
ServiceAccount of that namespace, and each node's process kubelet runs its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.dev.example import write_example_model
from modelferry.dev.kube.cluster import ControlPlane
from modelferry.dev.kube.kubelet import ProcessKubelet, running_nodes
from modelferry.nodejob import worker_job_name
from modelferry.settings import WorkerMode
from tests.e2e.harness import Cluster, cluster_model, running_pipeline, unique

from .conftest import Kubectl
from .product import AGENT_NAMESPACE, CONTROLLER, DEPLOY, NODE_WORKER, must, service_account_kubeconfig

pytestmark = pytest.mark.controlplane

NODES = {"gpu-1": {"tier": "gpu"}, "gpu-2": {"tier": "gpu"}, "gpu-3": {"tier": "gpu"}}
STORE = "model-store"  # the other namespace: a team's claim of weights
AGENT_CLAIM, STORE_CLAIM = "models", "weights"


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl, ome_crds: list[str]) -> None:
    """deploy/default's namespace and Pod policy and deploy/rbac (the manager runs in the test)."""
    for args in (
        [f"--filename={DEPLOY / 'default' / 'namespace.yaml'}"],
        [f"--filename={DEPLOY / 'default' / 'pod-policy.yaml'}"],
        [f"--kustomize={DEPLOY / 'rbac'}"],
    ):
        must(kubectl("apply", *args))


def claim_namespace_manifests(namespace: str) -> list[dict[str, Any]]:
    """What the comments of deploy/rbac/controller.yaml, deploy/rbac/node-worker.yaml and
    deploy/default/namespace.yaml ask of a namespace holding pvc:// claims, made from those files:
    the agent namespace's labels, the controller's RoleBinding, and the node worker's
    ServiceAccount and RoleBinding, moved to `namespace`."""

    def documents(path: Path) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(path.read_text()) if d]

    [agent] = documents(DEPLOY / "default" / "namespace.yaml")
    made: list[dict[str, Any]] = [
        {**agent, "metadata": {"name": namespace, "labels": agent["metadata"]["labels"]}}
    ]
    for document in documents(DEPLOY / "rbac" / "controller.yaml"):
        if document["kind"] == "RoleBinding" and document["metadata"]["name"] == CONTROLLER:
            made.append({**document, "metadata": {**document["metadata"], "namespace": namespace}})
    for document in documents(DEPLOY / "rbac" / "node-worker.yaml"):
        if document["kind"] in ("ServiceAccount", "RoleBinding"):
            moved = json.loads(json.dumps(document).replace(f'"{AGENT_NAMESPACE}"', f'"{namespace}"'))
            made.append(moved)
    assert [d["kind"] for d in made] == ["Namespace", "RoleBinding", "ServiceAccount", "RoleBinding"]
    return made


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two claims as every node sees them, by claim name: the generated tiny model in `tiny/`
    (a process kubelet maps a claim by name; the two names differ)."""
    root = tmp_path_factory.mktemp("claims")
    for claim in (AGENT_CLAIM, STORE_CLAIM):
        write_example_model(root / claim / "tiny")
    return {AGENT_CLAIM: root / AGENT_CLAIM, STORE_CLAIM: root / STORE_CLAIM}


@pytest.fixture(scope="module")
def nodes(
    control_plane: ControlPlane, claims: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProcessKubelet]]:
    with running_nodes(
        control_plane,
        nodes=NODES,
        root=tmp_path_factory.mktemp("nodes"),
        claims=dict.fromkeys(NODES, claims),
    ) as kubelets:
        yield kubelets


def worker_pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    listed = kubectl("get", "pods", "--all-namespaces", "--selector=modelferry.io/node-worker", "-ojson")
    return list(json.loads(listed.stdout)["items"]) if listed.returncode == 0 else []


def print_worker_logs(pods: list[dict[str, Any]], nodes: dict[str, ProcessKubelet]) -> None:
    print(
        "worker pods:",
        [(q["metadata"]["namespace"], q["metadata"]["name"], q["status"].get("phase")) for q in pods],
    )
    for q in pods:
        kubelet = nodes.get(q["spec"].get("nodeName") or "")
        log = kubelet and kubelet.log_path(q["metadata"]["namespace"], q["metadata"]["name"], "worker")
        if log and log.exists():
            print(f"--- {log}\n{log.read_text()[-2000:]}")


@pytest.mark.timeout(300)
async def test_two_claims_in_two_namespaces_reach_three_nodes_through_real_jobs(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    installed: None,
    nodes: dict[str, ProcessKubelet],
    claims: dict[str, Path],
    tmp_path: Path,
) -> None:
    for manifest in claim_namespace_manifests(STORE):
        must(kubectl("apply", "--filename=-", input=json.dumps(manifest)))
    controller = service_account_kubeconfig(
        kubectl, control_plane, name=CONTROLLER, path=tmp_path / "kubeconfig-controller"
    )
    cluster = Cluster(api=None, kubeconfig=controller)  # type: ignore[arg-type]  # no embedded server
    async with running_pipeline(
        cluster=cluster,
        tmp=tmp_path,
        nodes=list(NODES),
        start_node_workers=False,
        worker_mode=WorkerMode.JOB,
        overrides={
            "kube.agent_namespace": AGENT_NAMESPACE,
            "policy.cluster_claim_namespaces": [AGENT_NAMESPACE, STORE],
            "worker.idle_exit_seconds": 5.0,
            "worker.schedule_to_start_seconds": 60.0,
        },
    ) as p:
        models = {
            (namespace, claim): cluster_model(
                name := unique(claim), uri=f"pvc://{namespace}:{claim}/tiny", path=f"/raid/models/{name}"
            )
            for namespace, claim in ((AGENT_NAMESPACE, AGENT_CLAIM), (STORE, STORE_CLAIM))
        }
        for model in models.values():
            must(await asyncio.to_thread(kubectl, "apply", "--filename=-", input=json.dumps(model)))
        pods: list[dict[str, Any]] = []
        try:
            ready = await asyncio.gather(*(p.wait_state(m, "Ready", timeout=150) for m in models.values()))
        finally:
            pods = await asyncio.to_thread(worker_pods, kubectl)
            print_worker_logs(pods, nodes)
        for status in (r["status"] for r in ready):
            assert sorted(status["nodesReady"]) == sorted(NODES), status

        # One Pod per (node, claim), made by the job controller in the claim's namespace, on its
        # node, as that namespace's node worker; each node holds the bytes of both models.
        made = {
            (q["metadata"]["namespace"], q["spec"]["nodeName"], q["metadata"]["labels"]["job-name"])
            for q in pods
        }
        assert made == {
            (namespace, node, worker_job_name(node=node, claim_namespace=namespace, claim_name=claim))
            for namespace, claim in models
            for node in NODES
        }
        for q in pods:
            assert q["spec"]["serviceAccountName"] == NODE_WORKER
            [owner] = q["metadata"]["ownerReferences"]
            assert owner["kind"] == "Job" and owner["controller"] is True
        for (_, claim), model in models.items():
            name = model["metadata"]["name"]
            expected = (claims[claim] / "tiny" / "model.safetensors").read_bytes()
            for node, kubelet in nodes.items():
                model_dir = kubelet.root / "raid" / "models" / name
                assert (model_dir / "model.safetensors").read_bytes() == expected, (node, name)
                entry = await asyncio.to_thread(p.configmap_entry, node, name)
                assert entry is not None and entry["status"] == "Ready", (node, name, entry)
