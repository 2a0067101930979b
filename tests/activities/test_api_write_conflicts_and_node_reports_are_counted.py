"""A ConfigMap write that loses to another writer is re-read and retried, and counted in
`modelferry_kube_write_conflicts_total{resource="configmap"}`; every node report counts its state
in `modelferry_node_reports_total`."""

from __future__ import annotations

import json

from kubernetes import config

from activities.kube import KubeClient
from activities.label import LabelActivities
from modelferry import metrics
from modelferry.apiserver import EmbeddedApiServer
from modelferry.errors import KubeConflictError
from modelferry.messages import ModelRef, SetNodeModelStatusInput
from modelferry.names import ModelKind


class LosesTheFirstRace(KubeClient):
    """Another writer replaces the ConfigMap first, once."""

    lost = False

    def replace_configmap(self, namespace, name, body):  # type: ignore[no-untyped-def]
        if not self.lost:
            self.lost = True
            raise KubeConflictError("the object has been modified", status=409)
        return super().replace_configmap(namespace, name, body)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_lost_write_is_retried_and_counted(tmp_path):
    with EmbeddedApiServer(nodes=["gpu-1"]) as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        kube = LosesTheFirstRace(config.new_client_from_config(config_file=str(tmp_path / "kubeconfig")))
        labels = LabelActivities(kube=kube, agent_namespace="ome")
        ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama", uid="u1")
        conflicts = sample("modelferry_kube_write_conflicts_total", resource="configmap")
        updating = sample("modelferry_node_reports_total", state="Updating")
        ready = sample("modelferry_node_reports_total", state="Ready")
        for status in ("Updating", "Ready"):  # the first creates the ConfigMap, the second replaces it
            labels.set_node_model_status(SetNodeModelStatusInput(ref=ref, node="gpu-1", status=status))
        assert kube.lost
        assert sample("modelferry_kube_write_conflicts_total", resource="configmap") == conflicts + 1
        assert sample("modelferry_node_reports_total", state="Updating") == updating + 1
        assert sample("modelferry_node_reports_total", state="Ready") == ready + 1
        data = kube.get_configmap("ome", "gpu-1")["data"]
        assert json.loads(data["llama"])["status"] == "Ready"  # the retry wrote it
