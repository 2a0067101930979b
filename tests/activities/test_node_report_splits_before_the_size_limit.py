"""A node's report splits before Kubernetes' 1 MiB ConfigMap limit (`modelferry.reportsplit`), on
the embedded API server: 400 models with large configs on one node, every ConfigMap under the
limit, every entry readable, OME's entries all in the ConfigMap named after the node (the only one
OME's controller counts); removal clears entries wherever they are and leaves no empty overflow
ConfigMap; concurrent writers that fill overflows lose nothing; and OME's deletion check (which
releases its finalizer) finds nothing left once our removal ran."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client as k8s

from activities.kube import KubeClient
from activities.label import LabelActivities
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.messages import ModelRef, RemoveNodeModelStatusInput, SetNodeModelStatusInput
from modelferry.names import (
    CONFIGMAP_STATUS_LABEL,
    NODE_ANNOTATION,
    OVERFLOW_OF_LABEL,
    ModelKind,
    ome_configmap_key,
)
from modelferry.nodestatus import entry_key, ome_entry_key, report_node
from modelferry.reportsplit import LIMIT_BYTES, data_size

NODE = "gpu-1"
NS = "ome"
KUBERNETES_LIMIT = 1024 * 1024  # what the API server refuses past: a ConfigMap's keys plus values


@pytest.fixture
def cluster() -> Iterator[tuple[KubeClient, k8s.CoreV1Api]]:
    with running_apiserver(nodes=[NODE, "gpu-2"]) as server:
        client = api_client(server)
        yield KubeClient(client), k8s.CoreV1Api(client)


def large_config(i: int) -> dict[str, Any]:
    """Parsed metadata of a model with a long capability and architecture list: ~4 KB."""
    return {
        "modelType": "llama",
        "modelArchitecture": "LlamaForCausalLM",
        "modelParameterSize": f"{i}B",
        "maxTokens": 131072,
        "modelCapabilities": ["text-to-text"],
        "layers": [f"model.layers.{n}.self_attn.q_proj.weight:{i}" for n in range(90)],
    }


def refs(count: int, *, prefix: str = "m") -> list[ModelRef]:
    return [
        ModelRef(
            kind=ModelKind.BASE_MODEL, namespace=f"team-{i % 4}", name=f"{prefix}{i}", uid=f"uid-{prefix}{i}"
        )
        for i in range(count)
    ]


def report_configmaps(core: k8s.CoreV1Api) -> list[dict[str, Any]]:
    listing = core.list_namespaced_config_map(NS, label_selector=f"{CONFIGMAP_STATUS_LABEL}=true")
    return [k8s.ApiClient().sanitize_for_serialization(item) for item in listing.items]


def merged_entries(configmaps: list[dict[str, Any]], node: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for cm in configmaps:
        if report_node(cm) == node:
            for key, value in (cm.get("data") or {}).items():
                assert key not in out, f"{key} held twice"
                out[key] = value
    return out


def ome_may_release_finalizer(configmaps: list[dict[str, Any]], ref: ModelRef) -> bool:
    """OME's handleModelDeletion: every ConfigMap labelled models.ome/basemodel-status in its
    namespace, no node check; the finalizer goes once none holds the model's key with a status
    other than Deleted (an unreadable entry counts as not deleted)."""
    key = ome_configmap_key(kind=ref.kind, namespace=ref.namespace, name=ref.name)
    for cm in configmaps:
        raw = (cm.get("data") or {}).get(key)
        if raw is None:
            continue
        try:
            if json.loads(raw).get("status") != "Deleted":
                return False
        except ValueError:
            return False
    return True


def test_four_hundred_large_models_on_one_node_stay_under_the_limit(cluster: Any) -> None:
    kube, core = cluster
    labels = LabelActivities(kube=kube, agent_namespace=NS)
    models = refs(400)

    def report(indexed: tuple[int, ModelRef]) -> None:
        i, ref = indexed
        labels.set_node_model_status(
            SetNodeModelStatusInput(ref=ref, node=NODE, status="Ready", config=large_config(i))
        )

    for indexed in enumerate(models):  # one writer: the concurrent test below is about conflicts
        report(indexed)

    configmaps = report_configmaps(core)
    mine = [cm for cm in configmaps if report_node(cm) == NODE]
    assert len(mine) > 2, "400 large entries do not fit in one ConfigMap"
    for cm in mine:
        assert data_size(cm.get("data") or {}) <= LIMIT_BYTES < KUBERNETES_LIMIT
        name = cm["metadata"]["name"]
        if name != NODE:
            assert name.startswith(f"{NODE}.modelferry-")
            assert cm["metadata"]["labels"][OVERFLOW_OF_LABEL] == NODE
            assert cm["metadata"]["annotations"][NODE_ANNOTATION] == NODE
    entries = merged_entries(configmaps, NODE)
    assert len(entries) == 800
    primary = core.read_namespaced_config_map(NODE, NS).data
    for i, ref in enumerate(models):
        assert json.loads(entries[entry_key(ref)]) == {
            "name": ref.name,
            "status": "Ready",
            "config": large_config(i),
        }
        # OME counts an entry only in the ConfigMap named after the node: all of them are there.
        assert json.loads(primary[ome_entry_key(ref) or ""])["status"] == "Ready"

    def remove(ref: ModelRef) -> None:
        labels.remove_node_model_status(RemoveNodeModelStatusInput(ref=ref, node=NODE))

    for ref in models[:300]:
        remove(ref)
    configmaps = report_configmaps(core)
    assert all(cm.get("data") for cm in configmaps if cm["metadata"]["name"] != NODE)  # none empty
    assert set(merged_entries(configmaps, NODE)) == {
        k for r in models[300:] for k in (entry_key(r), ome_entry_key(r))
    }
    assert all(ome_may_release_finalizer(configmaps, r) for r in models[:300])
    assert not any(ome_may_release_finalizer(configmaps, r) for r in models[300:])

    for ref in models[300:]:
        remove(ref)
    configmaps = report_configmaps(core)
    assert [cm["metadata"]["name"] for cm in configmaps] == [NODE]  # the node's own stays, empty
    assert not configmaps[0].get("data")


def test_concurrent_writers_that_fill_overflows_lose_nothing(cluster: Any) -> None:
    """Small limits so that 60 writers on two nodes create, fill and share overflow ConfigMaps at
    once: every entry lands exactly once, on its own node's report."""
    kube, core = cluster
    labels = LabelActivities(kube=kube, agent_namespace=NS, limit_bytes=8 * 1024, primary_docs_bytes=4 * 1024)
    work = [(ref, node) for node in (NODE, "gpu-2") for ref in refs(30, prefix=f"{node}-m")]

    def report(item: tuple[ModelRef, str]) -> None:
        ref, node = item
        labels.set_node_model_status(
            SetNodeModelStatusInput(ref=ref, node=node, status="Ready", config={"modelType": "x" * 400})
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(report, work))

    configmaps = report_configmaps(core)
    for node in (NODE, "gpu-2"):
        entries = merged_entries(configmaps, node)
        assert set(entries) == {k for r, n in work if n == node for k in (entry_key(r), ome_entry_key(r))}
    assert all(data_size(cm.get("data") or {}) <= 8 * 1024 for cm in configmaps)
    assert len(configmaps) > 4

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(
            pool.map(
                lambda item: labels.remove_node_model_status(
                    RemoveNodeModelStatusInput(ref=item[0], node=item[1])
                ),
                work,
            )
        )
    configmaps = report_configmaps(core)
    assert sorted(cm["metadata"]["name"] for cm in configmaps) == sorted([NODE, "gpu-2"])
    assert not any(cm.get("data") for cm in configmaps)


def test_an_overflow_name_taken_by_another_configmap_is_skipped(cluster: Any) -> None:
    kube, core = cluster
    core.create_namespaced_config_map(
        NS,
        {
            "metadata": {"name": f"{NODE}.modelferry-2", "labels": {CONFIGMAP_STATUS_LABEL: "true"}},
            "data": {"someone": "else"},
        },
    )
    labels = LabelActivities(kube=kube, agent_namespace=NS, limit_bytes=2048, primary_docs_bytes=1024)
    for ref in refs(6):
        labels.set_node_model_status(
            SetNodeModelStatusInput(ref=ref, node=NODE, status="Ready", config={"modelType": "x" * 300})
        )
    stranger = core.read_namespaced_config_map(f"{NODE}.modelferry-2", NS)
    assert stranger.data == {"someone": "else"}
    configmaps = report_configmaps(core)
    assert len(merged_entries(configmaps, NODE)) == 12
