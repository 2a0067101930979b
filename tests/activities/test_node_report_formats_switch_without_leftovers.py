"""`kube.report_formats` reaches the label activities: each setting writes its formats on the node
and in its ConfigMap, a write under another setting clears what the old one wrote, and removal
clears every format whatever the setting."""

from __future__ import annotations

import json
from unittest.mock import create_autospec

from kubernetes import client as k8s
from kubernetes import config
from temporalio.client import Client

from activities.kube import KubeClient
from activities.label import LabelActivities
from modelferry.apiserver import EmbeddedApiServer
from modelferry.commands.runtime import control_activities
from modelferry.messages import ModelRef, RemoveNodeModelStatusInput, SetNodeModelStatusInput
from modelferry.names import ModelKind, ReportFormat
from modelferry.settings import load_settings

BM = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="llama", uid="u-1")
# 40 characters: OME's label shortens it, OME's ConfigMap key does not.
CBM = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="meta-llama-3-1-405b-instruct-fp8-dynamic", uid="u-2")
KEYS = {
    ReportFormat.DOCS: {"team-a_llama", CBM.name},
    ReportFormat.OME: {"team-a.basemodel.llama", f"clusterbasemodel.{CBM.name}"},
}
LABELS = {
    ReportFormat.DOCS: {"models.ome/u-1", "models.ome/u-2"},
    ReportFormat.OME: {
        "models.ome.io/team-a.basemodel.llama",
        "models.ome.io/clusterbasemodel.d30d2100-5b-instruct-fp8-dynamic",
    },
}
CONFIG = {"modelType": "llama", "parameterCount": 405, "maxTokens": 131072}


def test_formats_switch_and_removal_leaves_nothing(tmp_path):
    with EmbeddedApiServer(nodes=["gpu-1"]) as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        kube = KubeClient(api_client)
        core = k8s.CoreV1Api(api_client)

        def model_labels() -> dict[str, str]:
            labels = core.read_node("gpu-1").metadata.labels or {}
            return {k: v for k, v in labels.items() if k.startswith("models.ome")}

        def entries() -> dict[str, dict]:
            data = core.read_namespaced_config_map("gpu-1", "ome").data or {}
            return {k: json.loads(v) for k, v in data.items()}

        for formats, expected in [
            (ReportFormat.OME, ReportFormat.OME),
            (ReportFormat.DOCS, ReportFormat.DOCS),  # a switch: OME's are cleared
            (ReportFormat.OME, ReportFormat.OME),  # and back
        ]:
            labels = LabelActivities(kube=kube, agent_namespace="ome", formats=formats)
            for ref in (BM, CBM):
                labels.set_node_model_status(
                    SetNodeModelStatusInput(ref=ref, node="gpu-1", status="Ready", config=CONFIG)
                )
            assert set(entries()) == KEYS[expected]
            assert model_labels() == dict.fromkeys(LABELS[expected], "Ready")

        assert entries()[f"clusterbasemodel.{CBM.name}"] == {
            "name": CBM.name,
            "status": "Ready",
            "config": {"modelType": "llama", "maxTokens": 131072},  # ModelConfig has no parameterCount
        }

        both = LabelActivities(kube=kube, agent_namespace="ome")  # the default
        for ref in (BM, CBM):
            both.set_node_model_status(SetNodeModelStatusInput(ref=ref, node="gpu-1", status="Failed"))
        assert set(entries()) == KEYS[ReportFormat.DOCS] | KEYS[ReportFormat.OME]
        assert all(
            e["status"] == "Failed" and e["config"]["modelType"] == "llama" for e in entries().values()
        )
        assert model_labels() == dict.fromkeys(LABELS[ReportFormat.DOCS] | LABELS[ReportFormat.OME], "Failed")

        docs_only = LabelActivities(kube=kube, agent_namespace="ome", formats=ReportFormat.DOCS)
        for ref in (BM, CBM):
            docs_only.remove_node_model_status(RemoveNodeModelStatusInput(ref=ref, node="gpu-1"))
        assert entries() == {}
        assert model_labels() == {}


def test_the_setting_reaches_the_label_activities(tmp_path):
    with EmbeddedApiServer(nodes=["gpu-1"]) as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        settings = load_settings(environ={}, overrides={"kube.report_formats": "ome"})
        temporal = create_autospec(Client, instance=True)  # only the progress reporter uses it
        activities = control_activities(client=temporal, kube=KubeClient(api_client), settings=settings)
        set_status = next(a for a in activities if getattr(a, "__name__", "") == "set_node_model_status")
        set_status(SetNodeModelStatusInput(ref=BM, node="gpu-1", status="Ready"))
        data = k8s.CoreV1Api(api_client).read_namespaced_config_map("gpu-1", "ome").data
        assert set(data) == {"team-a.basemodel.llama"}
