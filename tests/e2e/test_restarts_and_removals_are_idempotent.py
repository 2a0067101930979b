"""A restarted watcher creates no duplicate workflow and re-downloads nothing; a model's history is
findable by search attributes; deleting a model whose node has vanished still completes."""

from __future__ import annotations

import asyncio
import os

import pytest

from modelferry.admission import admission_policy
from modelferry.names import model_workflow_id
from modelferry.options import pipeline_options
from tests.e2e.harness import cluster_model, running_pipeline, unique
from watcher.run import run_watcher
from watcher.temporal import TemporalGateway

pytestmark = pytest.mark.e2e


async def _workflow_ids(client, query: str) -> list[str]:
    return [wf.id async for wf in client.list_workflows(query)]


async def test_watcher_restart_makes_no_duplicate_workflows(tmp_path, one_node_cluster, model_source):
    claim_dir, _ = model_source
    name = unique("restart")
    obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    wid = model_workflow_id(kind="ClusterBaseModel", namespace=None, name=name)
    async with running_pipeline(
        cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], pvcs={"default:models": claim_dir}
    ) as p:
        await p.apply(obj)
        await p.wait_state(obj, "Ready")

        # stop the watcher, start a fresh one (it knows nothing and re-applies every model)
        watcher_task = next(t for t in p.tasks if t.get_name() == "watcher")
        p.stop.set()
        await asyncio.wait_for(watcher_task, timeout=30)
        stop = asyncio.Event()
        seen: list[str] = []
        again = asyncio.create_task(
            run_watcher(
                api_client=p.cluster.controller_api_client(),
                gateway=TemporalGateway(client=p.client, options=pipeline_options(p.settings)),
                stop=stop,
                identity="e2e-2",
                leader_election=False,
                admission=admission_policy(p.settings),
                on_decided=lambda event, decisions, done: seen.extend(type(d).__name__ for d in decisions),
            )
        )
        try:
            await p.wait_for(lambda: "Apply" in seen, what="the new watcher re-applied")
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(again, timeout=30)

        # one model workflow, one node delivery, findable by its search attributes
        ids = await p.wait_for(
            lambda: _workflow_ids(p.client, f'ModelName="{name}"'), what="visibility of the workflow"
        )
        assert ids == [wid]
        node_runs = [wf async for wf in p.client.list_workflows(f'WorkflowId="{wid}/node/node-1"')]
        assert len(node_runs) == 1
        handle = p.client.get_workflow_handle(wid)
        assert (await handle.query("state")) == "Ready"
        assert (await p.get(obj))["status"]["state"] == "Ready"


async def test_delete_completes_when_the_node_is_gone(tmp_path, one_node_cluster, model_source):
    claim_dir, _ = model_source
    name = unique("orphan")
    obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    async with running_pipeline(
        cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], pvcs={"default:models": claim_dir}
    ) as p:
        await p.apply(obj)
        await p.wait_state(obj, "Ready")
        await p.stop_node_worker("node-1")
        await asyncio.to_thread(p.core.delete_node, "node-1")
        await p.delete(obj)
        await p.wait_for(
            lambda: (
                p.custom.list_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels")["items"] == []
            ),
            timeout=60,
            what="finalizer released",
        )
        # the vanished node's ConfigMap goes with its last entry
        assert p.configmap_entry("node-1", name) is None
        # nothing could be removed from a node that no longer exists; the files stay as they were
        assert os.path.lexists(p.node_roots["node-1"] / "raid/models" / name)


async def test_long_lived_workflow_continues_as_new_and_keeps_its_state(
    tmp_path, one_node_cluster, model_source
):
    claim_dir, _ = model_source
    name = unique("longlived")
    obj = cluster_model(name, uri="pvc://default:models/tiny", path=f"/raid/models/{name}")
    wid = model_workflow_id(kind="ClusterBaseModel", namespace=None, name=name)
    async with running_pipeline(
        cluster=one_node_cluster,
        tmp=tmp_path,
        nodes=["node-1"],
        pvcs={"default:models": claim_dir},
        overrides={"pipeline.max_history_events": 60},
    ) as p:
        await p.apply(obj)
        await p.wait_state(obj, "Ready")
        handle = p.client.get_workflow_handle(wid)
        for i in range(12):
            await handle.signal("placement_changed", f"test {i}")
            await asyncio.sleep(0.2)

        async def runs() -> int:
            return len([wf async for wf in p.client.list_workflows(f'WorkflowId="{wid}"')])

        await p.wait_for(lambda: runs(), what="a second run")
        await p.wait_for(lambda: runs(), what="a second run")
        assert await runs() >= 2
        # the new run knows the node is done: no second delivery, and it still answers
        node_runs = [wf async for wf in p.client.list_workflows(f'WorkflowId="{wid}/node/node-1"')]
        assert len(node_runs) == 1
        assert (await p.client.get_workflow_handle(wid).query("state")) in ("Ready", "")
        assert (await p.get(obj))["status"]["state"] == "Ready"
