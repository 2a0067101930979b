"""Job mode through the product on the real control plane: the controller (watcher + control
worker, as the `modelferry-controller` ServiceAccount with deploy/rbac applied) creates the
node's worker Job, the real job controller makes its Pod, a process kubelet runs it as the
`modelferry-node-worker` ServiceAccount, and the model becomes Ready on the node.

Whatever real RBAC, Pod Security or our ValidatingAdmissionPolicy refuse shows up here and
nowhere in the embedded-server tier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelferry.dev.example import write_example_model
from modelferry.dev.kube.cluster import PROJECT, ControlPlane
from modelferry.dev.kube.kubelet import ProcessKubelet, running_nodes
from modelferry.settings import WorkerMode
from tests.e2e.harness import Cluster, cluster_model, running_pipeline, unique

from .conftest import Kubectl
from .product import service_account_kubeconfig

pytestmark = pytest.mark.controlplane

AGENT_NAMESPACE = "ome"
NODE = "gpu-1"
DEPLOY = PROJECT / "deploy"


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl, ome_crds: list[str]) -> None:
    """What `kubectl apply -k deploy/default` installs but the manager itself (run here in the
    test process, as its ServiceAccount) and its config."""
    for args in (
        [f"--filename={DEPLOY / 'default' / 'namespace.yaml'}"],
        [f"--filename={DEPLOY / 'default' / 'pod-policy.yaml'}"],
        [f"--kustomize={DEPLOY / 'rbac'}"],
    ):
        applied = kubectl("apply", *args)
        assert applied.returncode == 0, applied.stderr


@pytest.fixture(scope="module")
def claim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The claim ome/models, as the node sees it: the generated tiny model in `tiny/`."""
    claim = tmp_path_factory.mktemp("claims") / "models"
    write_example_model(claim / "tiny")
    return claim


@pytest.fixture(scope="module")
def node(
    control_plane: ControlPlane, claim_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessKubelet]:
    with running_nodes(
        control_plane,
        nodes={NODE: {"tier": "gpu"}},
        root=tmp_path_factory.mktemp("nodes"),
        claims={NODE: {"models": claim_dir}},
    ) as kubelets:
        yield kubelets[NODE]


def worker_pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    listed = kubectl(
        "get", "pods", f"--namespace={AGENT_NAMESPACE}", "--selector=modelferry.io/node-worker", "-ojson"
    )
    return list(json.loads(listed.stdout)["items"]) if listed.returncode == 0 else []


@pytest.mark.timeout(300)
async def test_job_mode_delivers_a_model_through_a_real_job_on_a_process_kubelet(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    installed: None,
    node: ProcessKubelet,
    claim_dir: Path,
    tmp_path: Path,
) -> None:
    controller = service_account_kubeconfig(
        kubectl, control_plane, name="modelferry-controller", path=tmp_path / "kubeconfig-controller"
    )
    cluster = Cluster(api=None, kubeconfig=controller)  # type: ignore[arg-type]  # no embedded server
    async with running_pipeline(
        cluster=cluster,
        tmp=tmp_path,
        nodes=[NODE],
        start_node_workers=False,
        worker_mode=WorkerMode.JOB,
        overrides={
            "kube.agent_namespace": AGENT_NAMESPACE,
            "policy.cluster_claim_namespaces": [AGENT_NAMESPACE],
            "worker.idle_exit_seconds": 5.0,
            "worker.schedule_to_start_seconds": 60.0,
        },
    ) as p:
        name = unique("tiny")
        model = cluster_model(name, uri=f"pvc://{AGENT_NAMESPACE}:models/tiny", path=f"/raid/models/{name}")
        applied = await asyncio.to_thread(kubectl, "apply", "--filename=-", input=json.dumps(model))
        assert applied.returncode == 0, applied.stderr
        try:
            ready = await p.wait_state(model, "Ready", timeout=120)
        finally:
            pods = await asyncio.to_thread(worker_pods, kubectl)
            print("worker pods:", [(q["metadata"]["name"], q["status"].get("phase")) for q in pods])
            for q in pods:
                log = node.log_path(AGENT_NAMESPACE, q["metadata"]["name"], "worker")
                if log is not None and log.exists():
                    print(f"--- {log}\n{log.read_text()[-3000:]}")
        assert ready["status"]["nodesReady"] == [NODE]
        [pod] = pods
        assert pod["spec"]["nodeName"] == NODE
        assert pod["spec"]["serviceAccountName"] == "modelferry-node-worker"
        model_dir = node.root / "raid" / "models" / name
        assert (model_dir / "config.json").read_bytes() == (claim_dir / "tiny" / "config.json").read_bytes()
        entry = await asyncio.to_thread(p.configmap_entry, NODE, name)
        assert entry is not None and entry["status"] == "Ready"


async def apply_and_settle(p: Any, kubectl: Kubectl, model: dict[str, Any]) -> dict[str, Any]:
    """The model applied as the admin; its status once Ready or Failed."""
    applied = await asyncio.to_thread(kubectl, "apply", "--filename=-", input=json.dumps(model))
    assert applied.returncode == 0, applied.stderr

    async def settled() -> dict[str, Any] | None:
        got = await p.get(model)
        status = (got or {}).get("status") or {}
        return status if status.get("state") in ("Ready", "Failed") else None

    return dict(await p.wait_for(settled, timeout=120, what=f"{model['metadata']['name']} Ready or Failed"))


@pytest.mark.timeout(300)
async def test_a_claim_in_another_namespace_needs_what_deploy_rbac_says(
    control_plane: ControlPlane, kubectl: Kubectl, installed: None, node: ProcessKubelet, tmp_path: Path
) -> None:
    """deploy/rbac grants the controller Jobs in the agent namespace only; a pvc:// claim in
    `default` runs its Job there. Each refusal is the model's failure reason, until the
    namespace has what deploy/rbac/node-worker.yaml asks for."""
    controller = service_account_kubeconfig(
        kubectl, control_plane, name="modelferry-controller", path=tmp_path / "kubeconfig-controller"
    )
    cluster = Cluster(api=None, kubeconfig=controller)  # type: ignore[arg-type]
    async with running_pipeline(
        cluster=cluster,
        tmp=tmp_path,
        nodes=[NODE],
        start_node_workers=False,
        worker_mode=WorkerMode.JOB,
        overrides={
            "kube.agent_namespace": AGENT_NAMESPACE,
            "policy.cluster_claim_namespaces": [AGENT_NAMESPACE, "default"],
            "worker.schedule_to_start_seconds": 10.0,
        },
    ) as p:

        def model(prefix: str) -> dict[str, Any]:
            name = unique(prefix)
            return cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")

        # 1. RBAC: no Jobs for the controller in `default`.
        status = await apply_and_settle(p, kubectl, model("no-role"))
        assert status["state"] == "Failed"
        assert (
            'User "system:serviceaccount:ome:modelferry-controller" cannot get resource "jobs" '
            'in API group "batch" in the namespace "default"'
        ) in status["conditions"][0]["message"]

        # 2. Bound there: the Job is made, but its Pod is refused (no such ServiceAccount there).
        for args in (
            [
                "rolebinding",
                "modelferry-controller",
                "--clusterrole=modelferry-controller-namespaced",
                "--serviceaccount=ome:modelferry-controller",
            ],
        ):
            done = await asyncio.to_thread(kubectl, "create", *args, "--namespace=default")
            assert done.returncode == 0, done.stderr
        status = await apply_and_settle(p, kubectl, model("no-account"))
        assert status["state"] == "Failed"
        assert "NodeWorkerUnavailable" in status["conditions"][0]["message"], status
        events = await asyncio.to_thread(
            kubectl, "get", "events", "--namespace=default", "--field-selector=reason=FailedCreate", "-ojson"
        )
        messages = [e["message"] for e in json.loads(events.stdout)["items"]]
        print("job controller:", messages)
        assert any('serviceaccount "modelferry-node-worker" not found' in m for m in messages), messages

        # 3. With the ServiceAccount (and a fresh Job): Ready.
        made = await asyncio.to_thread(
            kubectl, "create", "serviceaccount", "modelferry-node-worker", "--namespace=default"
        )
        assert made.returncode == 0, made.stderr
        await asyncio.to_thread(kubectl, "delete", "jobs", "--all", "--namespace=default")
        status = await apply_and_settle(p, kubectl, model("granted"))
        assert status["state"] == "Ready", status
