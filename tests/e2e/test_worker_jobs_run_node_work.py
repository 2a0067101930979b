"""Job mode: the control activity creates a Job pinned to the node; a fake kubelet runs it; the
worker exits when idle and is replaced on demand. A node whose Job never runs is reported Failed
with the reason, and the model is still Ready where it could be delivered."""

from __future__ import annotations

import pytest

from modelferry.settings import WorkerMode
from tests.e2e.harness import cluster_model, embedded_cluster, running_pipeline, unique
from tests.e2e.processes import FakeKubelet

pytestmark = pytest.mark.e2e


async def test_job_mode_delivers_through_a_pinned_job_and_reports_unreachable_nodes(tmp_path, model_source):
    claim_dir, _ = model_source
    nodes = {"node-1": {"tier": "gpu"}, "node-dead": {"tier": "gpu"}}
    with embedded_cluster(tmp_path, nodes) as cluster:
        async with running_pipeline(
            cluster=cluster,
            tmp=tmp_path,
            nodes=list(nodes),
            start_node_workers=False,
            worker_mode=WorkerMode.JOB,
            overrides={"worker.schedule_to_start_seconds": 8.0},
        ) as p:
            p.settings.worker.idle_exit_seconds = 2.0
            name = unique("jobbed")
            obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
            kubelet_roots = {"node-1": p.node_roots["node-1"]}  # node-dead never runs its Job
            with FakeKubelet(
                api_client=cluster.api_client(),
                nodes=kubelet_roots,
                kubeconfig=cluster.kubeconfig,
                log_dir=tmp_path,
                claim_dirs={"models": claim_dir},
            ):
                await p.apply(obj)
                ready = await p.wait_state(obj, "Ready", timeout=120)
                assert ready["status"]["nodesReady"] == ["node-1"]
                assert ready["status"]["nodesFailed"] == ["node-dead"]
                degraded = next(c for c in ready["status"]["conditions"] if c["type"] == "Degraded")
                assert "node-dead: NodeWorkerUnavailable" in degraded["message"]
                jobs = p.cluster.api_client()
                from kubernetes import client as k8s

                listed = k8s.BatchV1Api(jobs).list_namespaced_job("default").items
                pinned = {j.spec.template.spec.node_name for j in listed}
                assert pinned == {"node-1", "node-dead"}
                entry = p.configmap_entry("node-dead", name)
                assert entry and entry["status"] == "Failed"
                assert (p.node_roots["node-1"] / "raid/models" / name / "config.json").exists()

                # The worker exits when idle; the next model's work gets a fresh Job.
                def finished() -> bool:
                    job = next(
                        j
                        for j in k8s.BatchV1Api(jobs).list_namespaced_job("default").items
                        if j.spec.template.spec.node_name == "node-1"
                    )
                    return bool(job.status and job.status.conditions)

                await p.wait_for(finished, timeout=60, what="idle worker Job completed")
                second = cluster_model(
                    unique("again"), uri="pvc://default:models/tiny", path="/raid/models/again"
                )
                second["spec"]["storage"]["nodeSelector"] = {"kubernetes.io/hostname": "node-1"}
                p.label_node("node-1", {"kubernetes.io/hostname": "node-1"})
                await p.apply(second)
                await p.wait_state(second, "Ready", timeout=120)
