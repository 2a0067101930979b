"""50 models finishing at once on one node: every ConfigMap entry and node label, in both the
documented and OME's current formats (the default), survives the 409 conflicts (read-modify-write
with the resourceVersion, re-read on conflict)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.label import LabelActivities
from modelferry.apiserver import EmbeddedApiServer
from modelferry.messages import ModelRef, RemoveNodeModelStatusInput, SetNodeModelStatusInput
from modelferry.names import ModelKind


def test_fifty_concurrent_reports_on_one_node(tmp_path):
    with EmbeddedApiServer(nodes=["gpu-1"]) as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        labels = LabelActivities(kube=KubeClient(api_client), agent_namespace="ome")
        refs = [
            ModelRef(kind=ModelKind.BASE_MODEL, namespace=f"team-{i % 3}", name=f"m{i}", uid=f"uid-{i}")
            for i in range(50)
        ]

        def report(ref: ModelRef) -> None:
            labels.set_node_model_status(
                SetNodeModelStatusInput(ref=ref, node="gpu-1", status="Ready", config={"modelType": "llama"})
            )

        with ThreadPoolExecutor(max_workers=25) as pool:
            list(pool.map(report, refs))

        core = k8s.CoreV1Api(api_client)
        cm = core.read_namespaced_config_map("gpu-1", "ome")
        assert cm.metadata.labels["models.ome/basemodel-status"] == "true"
        assert len(cm.data) == 100  # each model's documented entry and OME's
        for ref in refs:
            entry = json.loads(cm.data[f"{ref.namespace}_{ref.name}"])
            assert entry == {"name": ref.name, "status": "Ready", "config": {"modelType": "llama"}}
            entry = json.loads(cm.data[f"{ref.namespace}.basemodel.{ref.name}"])
            assert entry == {"name": ref.name, "status": "Ready", "config": {"modelType": "llama"}}
        node_labels = core.read_node("gpu-1").metadata.labels
        assert all(node_labels[f"models.ome/{ref.uid}"] == "Ready" for ref in refs)
        assert all(node_labels[f"models.ome.io/{r.namespace}.basemodel.{r.name}"] == "Ready" for r in refs)

        def remove(ref: ModelRef) -> None:
            labels.remove_node_model_status(RemoveNodeModelStatusInput(ref=ref, node="gpu-1"))

        with ThreadPoolExecutor(max_workers=25) as pool:
            list(pool.map(remove, refs[:25]))
        cm = core.read_namespaced_config_map("gpu-1", "ome")
        assert sorted(cm.data) == sorted(
            key for r in refs[25:] for key in (f"{r.namespace}_{r.name}", f"{r.namespace}.basemodel.{r.name}")
        )
        node_labels = core.read_node("gpu-1").metadata.labels
        assert not any(f"models.ome/{r.uid}" in node_labels for r in refs[:25])
        assert not any(f"models.ome.io/{r.namespace}.basemodel.{r.name}" in node_labels for r in refs[:25])
