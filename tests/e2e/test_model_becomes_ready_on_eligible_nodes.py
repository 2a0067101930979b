"""apply -> Ready with the ConfigMap entry, node label and status; placement honoured;
relabel adds and removes; delete cleans everything and releases the finalizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelferry.names import FINALIZER, ModelKind, model_workflow_id, ome_node_label_key
from tests.e2e.harness import cluster_model, running_pipeline, unique

pytestmark = pytest.mark.e2e


async def test_apply_to_ready_then_delete_cleans_up(tmp_path, one_node_cluster, model_source):
    claim_dir, params = model_source
    name = unique("tiny")
    obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    async with running_pipeline(
        cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], pvcs={"default:models": claim_dir}
    ) as p:
        made = await p.apply(obj)
        uid = made["metadata"]["uid"]
        ready = await p.wait_state(obj, "Ready")

        status = ready["status"]
        assert status["nodesReady"] == ["node-1"] and status["nodesFailed"] == []
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        assert FINALIZER in ready["metadata"]["finalizers"]
        # parsed metadata filled the empty spec fields, once
        await p.wait_for(
            lambda: p.custom.get_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", name)[
                "spec"
            ].get("modelArchitecture"),
            what="spec metadata",
        )
        spec = p.custom.get_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", name)["spec"]
        assert spec["modelArchitecture"] == "LlamaForCausalLM"
        assert spec["maxTokens"] == 2048

        entry = p.configmap_entry("node-1", name)
        assert entry["name"] == name and entry["status"] == "Ready"
        assert entry["config"]["parameterCount"] == params
        assert p.node_labels("node-1")[f"models.ome/{uid}"] == "Ready"
        # ...and in the formats OME's code reads (the default writes both)
        ome_label = ome_node_label_key(kind=ModelKind.CLUSTER_BASE_MODEL, namespace=None, name=name)
        ome_entry = p.configmap_entry("node-1", f"clusterbasemodel.{name}")
        assert ome_entry["name"] == name and ome_entry["status"] == "Ready"
        assert ome_entry["config"]["modelArchitecture"] == "LlamaForCausalLM"
        assert "parameterCount" not in ome_entry["config"]  # not a field of OME's ModelConfig
        assert p.node_labels("node-1")[ome_label] == "Ready"

        model_dir = p.node_roots["node-1"] / "raid" / "models" / name
        assert model_dir.is_symlink()
        assert (model_dir / "config.json").read_bytes() == (claim_dir / "tiny" / "config.json").read_bytes()
        assert (model_dir / "model.safetensors").read_bytes() == (
            claim_dir / "tiny" / "model.safetensors"
        ).read_bytes()

        await p.delete(obj)
        await p.wait_for(
            lambda: (
                p.custom.list_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels")["items"] == []
            ),
            what="finalizer released",
        )
        assert not os.path.lexists(model_dir)
        assert not (model_dir.parent / ".modelferry-versions" / name).exists()
        assert p.configmap_entry("node-1", name) is None
        assert f"models.ome/{uid}" not in p.node_labels("node-1")
        assert p.configmap_entry("node-1", f"clusterbasemodel.{name}") is None
        assert ome_label not in p.node_labels("node-1")
        if os.environ.get("MODELFERRY_RECORD_HISTORIES"):
            await record_histories(
                p.client, model_workflow_id(kind="ClusterBaseModel", namespace=None, name=name)
            )


async def record_histories(client, workflow_id: str) -> None:
    """Refresh tests/data/histories/ (run with MODELFERRY_RECORD_HISTORIES=1 after a deliberate
    workflow change that is guarded by workflow.patched, never to paper over a replay failure)."""
    out = Path(__file__).resolve().parents[1] / "data" / "histories"
    out.mkdir(parents=True, exist_ok=True)
    handle = client.get_workflow_handle(workflow_id)
    await handle.result()
    ids_file = out / "workflow_ids.txt"
    # Other tests record other paths into the same set (e.g. tests/workflows/...): keep their IDs.
    ids = dict(line.split(" ", 1) for line in ids_file.read_text().splitlines()) if ids_file.exists() else {}
    ids["model_workflow_deliver_then_delete.json"] = workflow_id
    (out / "model_workflow_deliver_then_delete.json").write_text((await handle.fetch_history()).to_json())
    runs = [wf async for wf in client.list_workflows(f'WorkflowId="{workflow_id}/node/node-1"')]
    for action, run in zip(("deliver", "remove"), sorted(runs, key=lambda r: r.start_time), strict=True):
        node = client.get_workflow_handle(run.id, run_id=run.run_id)
        (out / f"node_workflow_{action}.json").write_text((await node.fetch_history()).to_json())
        ids[f"node_workflow_{action}.json"] = run.id
    ids_file.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))


async def test_placement_follows_node_labels(tmp_path, three_node_cluster, model_source):
    """gpu-a (a100, z1), gpu-b (h100, z2), cpu-c (z1): `gpu: a100` picks gpu-a alone; relabelled,
    the model moves to gpu-b; cpu-c, never selected, never sees it."""
    claim_dir, _ = model_source
    name = unique("placed")
    obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    obj["spec"]["storage"]["nodeSelector"] = {"gpu": "a100"}
    async with running_pipeline(
        cluster=three_node_cluster,
        tmp=tmp_path,
        nodes=["gpu-a", "gpu-b", "cpu-c"],
        pvcs={"default:models": claim_dir},
    ) as p:
        made = await p.apply(obj)
        uid = made["metadata"]["uid"]
        ready = await p.wait_state(obj, "Ready")
        assert ready["status"]["nodesReady"] == ["gpu-a"]
        assert (p.node_roots["gpu-a"] / "raid/models" / name / "config.json").exists()
        for other in ("gpu-b", "cpu-c"):
            assert not os.path.lexists(p.node_roots[other] / "raid/models" / name)
            assert p.configmap_entry(other, name) is None

        # relabel: gpu-b becomes eligible, gpu-a does not
        p.label_node("gpu-b", {"gpu": "a100"})
        p.label_node("gpu-a", {"gpu": "l40"})

        async def moved():
            got = await p.get(obj)
            return got if (got.get("status") or {}).get("nodesReady") == ["gpu-b"] else None

        await p.wait_for(moved, what="model moved to gpu-b")
        await p.wait_for(
            lambda: not os.path.lexists(p.node_roots["gpu-a"] / "raid/models" / name),
            what="files removed from gpu-a",
        )
        assert (p.node_roots["gpu-b"] / "raid/models" / name / "model.safetensors").exists()
        assert p.configmap_entry("gpu-a", name) is None
        assert f"models.ome/{uid}" not in p.node_labels("gpu-a")
        assert p.node_labels("gpu-b")[f"models.ome/{uid}"] == "Ready"
        assert not os.path.lexists(p.node_roots["cpu-c"] / "raid/models" / name)
        assert p.configmap_entry("cpu-c", name) is None
        assert not any(key.startswith("models.ome/") for key in p.node_labels("cpu-c"))


async def test_invalid_resource_fails_with_the_field_named(tmp_path, one_node_cluster, model_source):
    claim_dir, _ = model_source
    # The API server now refuses most invalid specs at apply time (the CRDs' CEL rules); a file
    # name of 400 bytes but 200 characters is one only modelferry's validation can see.
    bad = cluster_model(unique("bad"), uri="pvc://default:models/tiny", path="/raid/models/" + "\u00e9" * 200)
    good = cluster_model(unique("good"), uri="pvc://default:models/tiny", path="/raid/models/good")
    async with running_pipeline(
        cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], pvcs={"default:models": claim_dir}
    ) as p:
        await p.apply(bad)
        await p.apply(good)
        failed = await p.wait_state(bad, "Failed")
        ready_cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
        assert ready_cond["status"] == "False"
        assert "spec.storage" in ready_cond["message"]
        await p.wait_state(good, "Ready")  # the watcher went on
