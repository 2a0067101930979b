"""The model's life after Ready, on the real Temporal dev server with stand-in node activities that
keep each node's versions like the real ones do (one serving, `keep_versions` older ones kept):

- status follows each node as it finishes, while a slow node still downloads, and a node that
  becomes eligible meanwhile starts at once;
- a spec change that changes the bytes is fetched beside the serving version: the node stays Ready
  meanwhile, and a failed update leaves the previous version serving, Ready, with `Degraded`;
- admin Updates: `redownload` fetches afresh, `retry` runs a permanently failed node now,
  `rollback` serves a kept version again; validators refuse what cannot be done, before anything
  runs; an idempotency token runs an action once;
- a damage report repairs only the damaged files on that node;
- every run's history replays against today's code.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.messages import (
    ActivateModelVersionInput,
    ActivateModelVersionResult,
    AdminPlan,
    AdminRequest,
    DamageReport,
    DownloadModelInput,
    DownloadModelResult,
    ModelRef,
    ModelRevision,
    ModelWorkflowInput,
    NodeOutcome,
    PipelineOptions,
    PlanPlacementInput,
    PlanPlacementResult,
    RemoveModelFilesInput,
    RemoveModelFilesResult,
    SetNodeModelStatusInput,
    VerifyModelInput,
    VerifyModelResult,
)
from modelferry.names import (
    CONTROL_TASK_QUEUE,
    SIGNAL_REPORT_DAMAGE,
    UPDATE_REDOWNLOAD,
    UPDATE_RETRY,
    UPDATE_ROLLBACK,
    ModelKind,
    model_workflow_id,
)
from tests.workflows.test_model_workflow_orchestrates_nodes import StandIns, workers
from workflows.model import PATCH_LIVE_NODES, ModelWorkflow
from workflows.node import NodeWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "data" / "histories"


class VersionedStandIns(StandIns):
    """Node activities that keep versions per node like the real ones: a download names its version
    by the source URI (and the fresh tag), activation serves it and keeps `keep_previous` older
    ones. Sources in `broken` fail permanently; downloads on nodes in `held` wait for `release`."""

    def __init__(self, *, nodes: list[str]) -> None:
        super().__init__(nodes=nodes)
        self.eligible = list(nodes)
        self.broken: set[str] = set()
        self.held: set[str] = set()
        self.release = threading.Event()
        self.download_inputs: list[DownloadModelInput] = []
        self.verified: list[tuple[str, str]] = []
        self.serving: dict[str, str] = {}
        self.kept: dict[str, list[str]] = defaultdict(list)
        self.labels: list[tuple[str, str]] = []

    def control(self) -> list:
        activities = [
            a for a in super().control() if a.__name__ not in ("plan_placement", "set_node_model_status")
        ]

        @activity.defn(name="plan_placement")
        def plan_placement(_: PlanPlacementInput) -> PlanPlacementResult:
            return PlanPlacementResult(eligible=list(self.eligible), existing_nodes=list(self.nodes))

        @activity.defn(name="set_node_model_status")
        def set_node_model_status(inp: SetNodeModelStatusInput) -> None:
            self.labels.append((inp.node, inp.status))

        return [*activities, plan_placement, set_node_model_status]

    def node(self, name: str) -> list:
        @activity.defn(name="download_model")
        def download_model(inp: DownloadModelInput) -> DownloadModelResult:
            self.download_inputs.append(inp)
            if name in self.held:
                assert self.release.wait(timeout=30), "the test never released the held download"
            uri = inp.spec.storage.storage_uri
            if uri in self.broken:
                raise ApplicationError(f"{uri}: no such repository", type="NotFoundError", non_retryable=True)
            version = uri.rsplit("/", 1)[-1] + (f"-{inp.fresh_tag}" if inp.fresh_tag else "")
            fetched = 10 * len(inp.damaged_files) if inp.repair_from else 100
            return DownloadModelResult(
                revision=uri, version_id=version, total_bytes=100, bytes_transferred=fetched, files=10
            )

        @activity.defn(name="verify_model")
        def verify_model(inp: VerifyModelInput) -> VerifyModelResult:
            self.verified.append((name, inp.version_id))
            return VerifyModelResult(files=10, total_bytes=100)

        @activity.defn(name="activate_model_version")
        def activate_model_version(inp: ActivateModelVersionInput) -> ActivateModelVersionResult:
            previous = self.serving.get(name)
            versions = [v for v in [previous, *self.kept[name]] if v and v != inp.version_id]
            self.serving[name] = inp.version_id
            self.kept[name] = versions[: inp.keep_previous]
            return ActivateModelVersionResult(version_id=inp.version_id, kept=list(self.kept[name]))

        replaced = ("download_model", "verify_model", "activate_model_version")
        return [download_model, verify_model, activate_model_version] + [
            a for a in super().node(name) if a.__name__ not in replaced
        ]


async def connect(temporal: TemporalDevServer) -> Client:
    await temporal.wait_ready()
    return await Client.connect(temporal.address, data_converter=pydantic_data_converter)


def revision(ref: ModelRef, generation: int, source: str) -> ModelRevision:
    return ModelRevision(
        generation=generation,
        uid=ref.uid,
        spec={"storage": {"storageUri": f"hf://org/{source}", "path": "/raid/models/m"}},
    )


async def start(client: Client, ref: ModelRef, source: str = "one", **options: Any) -> WorkflowHandle:
    return await client.start_workflow(
        ModelWorkflow.run,
        ModelWorkflowInput(ref=ref, revision=revision(ref, 1, source), options=PipelineOptions(**options)),
        id=model_workflow_id(kind=ref.kind, namespace=None, name=ref.name),
        task_queue=CONTROL_TASK_QUEUE,
    )


def new_ref(prefix: str) -> ModelRef:
    return ModelRef(
        kind=ModelKind.CLUSTER_BASE_MODEL, name=f"{prefix}-{uuid.uuid4().hex[:6]}", uid=str(uuid.uuid4())
    )


async def until(check, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def nodes_are(handle: WorkflowHandle, want: dict[str, tuple[str, str]]) -> dict[str, NodeOutcome]:
    """Wait until each node is in (state, version)."""

    async def check() -> dict[str, NodeOutcome] | None:
        nodes = await handle.query(ModelWorkflow.nodes)
        have = {n: (o.state, o.version_id) for n, o in nodes.items()}
        running = await handle.query(ModelWorkflow.running)
        return nodes if have == want and not running else None

    return await until(check, f"nodes {want}")


def conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


async def finish(handle: WorkflowHandle) -> None:
    await handle.signal(ModelWorkflow.request_delete)
    assert await handle.result() == "Deleted"


async def replays(client: Client, handle: WorkflowHandle, *, record_as: str = "") -> None:
    """The run replays against today's code, and ran behind its patch; with
    MODELFERRY_RECORD_HISTORIES=1 it joins the replay set (tests/unit/test_workflow_histories_replay.py)."""
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert any(PATCH_LIVE_NODES.encode() in m.SerializeToString() for m in markers)
    replayer = Replayer(workflows=[ModelWorkflow, NodeWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    if record_as and os.environ.get("MODELFERRY_RECORD_HISTORIES"):
        (HISTORIES / record_as).write_text(history.to_json())
        ids_file = HISTORIES / "workflow_ids.txt"
        ids = dict(line.split(" ", 1) for line in ids_file.read_text().splitlines())
        ids[record_as] = handle.id
        ids_file.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))


async def test_status_follows_each_node_while_a_slow_node_still_downloads(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["fast", "slow", "late"])
    stand_ins.eligible = ["fast", "slow"]
    stand_ins.held = {"slow", "late"}
    ref = new_ref("live")
    async with workers(client, stand_ins):
        handle = await start(client, ref)

        async def fast_reported() -> dict | None:
            return next((s for s in stand_ins.statuses if s["nodesReady"] == ["fast"]), None)

        status = await until(fast_reported, "a status with the fast node Ready")
        assert status["state"] == "Creating"
        assert conditions(status)["Progressing"]["message"] == "slow"
        assert stand_ins.serving == {"fast": "one"}
        # A node that becomes eligible while `slow` still downloads starts now, not after it.
        stand_ins.eligible = ["fast", "slow", "late"]
        await handle.signal(ModelWorkflow.placement_changed, "late joined")
        await until(
            lambda: _true(sum(i.node == "late" for i in stand_ins.download_inputs) == 1), "late's download"
        )
        assert "slow" not in stand_ins.serving
        stand_ins.release.set()
        await nodes_are(handle, {n: ("Ready", "one") for n in ("fast", "slow", "late")})
        await until(
            lambda: _true(stand_ins.statuses[-1]["nodesReady"] == ["fast", "late", "slow"]), "all Ready"
        )
        reasons = [e.reason for e in stand_ins.events]
        assert reasons.count("DownloadStarted") == 3 and reasons.count("NodeReady") == 3
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_live_nodes.json")


async def _true(value: bool) -> bool:
    return value


async def test_an_update_is_fetched_beside_the_serving_version_and_a_broken_one_rolls_back(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1"])
    ref = new_ref("override")
    async with workers(client, stand_ins):
        handle = await start(client, ref, keep_versions=1)
        await nodes_are(handle, {"n1": ("Ready", "one")})

        # generation 2 changes the source: fetched while `one` serves; the node never leaves Ready
        stand_ins.held = {"n1"}
        stand_ins.release.clear()
        labels_before = len(stand_ins.labels)
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 2, "two"))

        async def updating() -> dict | None:
            return next(
                (s for s in stand_ins.statuses if conditions(s)["Progressing"]["reason"] == "Updating"), None
            )

        status = await updating_status(updating)
        assert status["state"] == "Ready" and status["nodesReady"] == ["n1"]
        stand_ins.release.set()
        nodes = await nodes_are(handle, {"n1": ("Ready", "two")})
        assert nodes["n1"].kept_versions == ["one"]
        assert ("n1", "Updating") not in stand_ins.labels[labels_before:]

        # generation 3 points at a broken source: `two` keeps serving, Ready, Degraded says why
        stand_ins.held = set()
        stand_ins.broken = {"hf://org/three"}
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 3, "three"))

        async def rolled_back() -> dict | None:
            last = stand_ins.statuses[-1] if stand_ins.statuses else None
            if last and last["observedGeneration"] == 3 and conditions(last)["Degraded"]["status"] == "True":
                return last
            return None

        status = await until(rolled_back, "the failed update in the status")
        assert status["state"] == "Ready" and status["nodesReady"] == ["n1"]
        degraded = conditions(status)["Degraded"]
        assert degraded["reason"] == "UpdateFailed"
        assert (
            "no such repository" in degraded["message"]
            and "previous version still serving" in degraded["message"]
        )
        assert stand_ins.serving["n1"] == "two"
        assert stand_ins.labels[-1] == ("n1", "Ready")
        failures = await handle.query(ModelWorkflow.update_failures)
        assert failures["n1"].reason == "NotFoundError"
        assert "UpdateFailed" in [e.reason for e in stand_ins.events]
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_update_and_failed_update.json")


async def updating_status(check):  # type: ignore[no-untyped-def]
    return await until(check, "a status saying the node is updating")


async def update(handle: WorkflowHandle, name: str, request: AdminRequest) -> AdminPlan:
    return await handle.execute_update(name, request, result_type=AdminPlan)


async def refused(handle: WorkflowHandle, name: str, request: AdminRequest) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await update(handle, name, request)
    return str(caught.value.cause)


async def test_admin_redownload_retry_and_rollback(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1", "n2"])
    ref = new_ref("admin")
    async with workers(client, stand_ins):
        handle = await start(client, ref, keep_versions=2)
        await nodes_are(handle, {"n1": ("Ready", "one"), "n2": ("Ready", "one")})

        # validators refuse, before anything runs
        downloads = len(stand_ins.download_inputs)
        assert "not among the model's nodes" in await refused(
            handle, UPDATE_REDOWNLOAD, AdminRequest(nodes=["n9"])
        )
        assert "keeps no previous version" in await refused(handle, UPDATE_ROLLBACK, AdminRequest())
        assert "no node has failed" in await refused(handle, UPDATE_RETRY, AdminRequest())
        assert len(stand_ins.download_inputs) == downloads

        # redownload n1: a fresh copy into a new version, the old one kept
        plan = await update(
            handle,
            UPDATE_REDOWNLOAD,
            AdminRequest(nodes=["n1"], requested_by="cli:alice@h", reason="suspect disk"),
        )
        assert plan.nodes == ["n1"]
        nodes = await until(lambda: _fresh_version(handle, "n1"), "n1's fresh version")
        fresh = stand_ins.download_inputs[-1]
        assert fresh.node == "n1" and fresh.fresh_tag and nodes["n1"].version_id == f"one-{fresh.fresh_tag}"
        assert nodes["n1"].kept_versions == ["one"] and nodes["n2"].version_id == "one"
        assert any(
            e.reason == "AdminRedownload" and "cli:alice@h: suspect disk" in e.message
            for e in stand_ins.events
        )

        # rollback: a version not kept is refused; the kept one serves again, verified first
        message = await refused(handle, UPDATE_ROLLBACK, AdminRequest(nodes=["n1"], to_version="zzz"))
        assert "version zzz is not kept on node n1; kept: one" in message
        plan = await update(handle, UPDATE_ROLLBACK, AdminRequest(nodes=["n1"], requested_by="cli:bob@h"))
        assert plan.to_version == {"n1": "one"}
        await nodes_are(handle, {"n1": ("Ready", "one"), "n2": ("Ready", "one")})
        assert stand_ins.verified[-1] == ("n1", "one")
        assert stand_ins.serving["n1"] == "one"
        # a rollback sticks: nothing re-delivers the spec over it
        await handle.signal(ModelWorkflow.placement_changed, "resync")
        await asyncio.sleep(0.5)
        assert stand_ins.serving["n1"] == "one"

        # retry: a permanent failure waits for a new generation, or an admin
        stand_ins.broken = {"hf://org/two"}
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 2, "two"))
        await until(lambda: _has_update_failures(handle, {"n1", "n2"}), "both updates failed")
        stand_ins.broken = set()  # the source appeared
        plan = await update(handle, UPDATE_RETRY, AdminRequest(nodes=["n2"], token="modelferry.io/retry=1"))
        assert plan.nodes == ["n2"]
        await until(lambda: _serves(stand_ins, "n2", "two"), "n2 retried")
        again = await update(handle, UPDATE_RETRY, AdminRequest(nodes=["n1"], token="modelferry.io/retry=1"))
        assert again.already_handled
        await asyncio.sleep(0.5)
        assert stand_ins.serving["n1"] == "one", "an annotation value already handled ran again"
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_admin_actions.json")


async def _fresh_version(handle: WorkflowHandle, node: str) -> dict[str, NodeOutcome] | None:
    nodes = await handle.query(ModelWorkflow.nodes)
    running = await handle.query(ModelWorkflow.running)
    return nodes if "-" in nodes[node].version_id and not running else None


async def _has_update_failures(handle: WorkflowHandle, want: set[str]) -> bool:
    return set(await handle.query(ModelWorkflow.update_failures)) == want


async def _serves(stand_ins: VersionedStandIns, node: str, version: str) -> bool:
    return stand_ins.serving.get(node) == version


async def test_a_damage_report_repairs_only_the_damaged_files_on_that_node(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1", "n2"])
    ref = new_ref("repair")
    async with workers(client, stand_ins):
        handle = await start(client, ref)
        await nodes_are(handle, {"n1": ("Ready", "one"), "n2": ("Ready", "one")})
        # about another resource under this name, or a version no longer served: ignored
        await handle.signal(SIGNAL_REPORT_DAMAGE, DamageReport(node="n1", version_id="one", uid="other-uid"))
        await handle.signal(SIGNAL_REPORT_DAMAGE, DamageReport(node="n1", version_id="old", uid=ref.uid))
        report = DamageReport(
            node="n1", version_id="one", files=["model-00002.safetensors"], check="deep", uid=ref.uid
        )
        await handle.signal(SIGNAL_REPORT_DAMAGE, report)
        nodes = await until(lambda: _fresh_version(handle, "n1"), "n1 repaired")
        repair = stand_ins.download_inputs[-1]
        assert (repair.node, repair.repair_from, repair.damaged_files) == (
            "n1",
            "one",
            ["model-00002.safetensors"],
        )
        assert len(stand_ins.download_inputs) == 3, "only the damaged node fetched anything"
        assert (
            nodes["n1"].reason == "Repaired"
            and "1 damaged file(s) fetched again (10 bytes)" in nodes["n1"].message
        )
        assert nodes["n2"].version_id == "one"
        reasons = [e.reason for e in stand_ins.events]
        assert "DamageFound" in reasons and "Repaired" in reasons
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_repair.json")


async def test_a_resource_recreated_under_its_name_gets_a_fresh_delivery(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1"])
    removed: list[str] = []
    stand_ins_node = stand_ins.node

    def node_with_removals(name: str) -> list:
        @activity.defn(name="remove_model_files")
        def remove_model_files(inp: RemoveModelFilesInput) -> RemoveModelFilesResult:
            removed.append(f"{inp.ref.uid}:{inp.spec.storage.path}")
            return RemoveModelFilesResult(removed=True, path=inp.spec.storage.path)

        return [a for a in stand_ins_node(name) if a.__name__ != "remove_model_files"] + [remove_model_files]

    stand_ins.node = node_with_removals  # type: ignore[method-assign]
    ref = new_ref("recreate")
    async with workers(client, stand_ins):
        handle = await start(client, ref)
        await nodes_are(handle, {"n1": ("Ready", "one")})
        # The watcher's order for a new uid under a known name: delete the old, apply the new.
        recreated = ref.model_copy(update={"uid": str(uuid.uuid4())})
        new_spec = ModelRevision(
            generation=1,
            uid=recreated.uid,
            spec={"storage": {"storageUri": "hf://org/two", "path": "/raid/models/other"}},
        )
        await handle.signal(ModelWorkflow.request_delete)
        await handle.signal(ModelWorkflow.apply_revision, new_spec)
        fresh = client.get_workflow_handle(handle.id)
        await until(lambda: _serves(stand_ins, "n1", "two"), "the new resource delivered")
        # the old resource's files were swept with its own spec (its path), by its own uid
        assert removed == [f"{ref.uid}:/raid/models/m"]
        nodes = await nodes_are(fresh, {"n1": ("Ready", "two")})
        assert nodes["n1"].generation == 1
        await finish(fresh)


class PeerStandIns(VersionedStandIns):
    """Downloads report the node's peer server and, when given peers, that the first one fed them."""

    def node(self, name: str) -> list:
        @activity.defn(name="download_model")
        def download_model(inp: DownloadModelInput) -> DownloadModelResult:
            self.download_inputs.append(inp)
            uri = inp.spec.storage.storage_uri
            if uri in self.broken and not inp.peers:
                raise ApplicationError(f"{uri}: origin unreachable", type="SourceUnavailableError")
            fed = {inp.peers[0].node: 100} if inp.peers else {}
            return DownloadModelResult(
                revision=uri,
                version_id=uri.rsplit("/", 1)[-1],
                total_bytes=100,
                bytes_transferred=100,
                files=10,
                bytes_from_peers=fed,
                peer_url=f"http://{name}.peers:8090",
            )

        return [download_model] + [a for a in super().node(name) if a.__name__ != "download_model"]


async def test_peer_delivery_fetches_once_from_the_origin_and_spreads_from_nodes(temporal):
    client = await connect(temporal)
    nodes = ["n1", "n2", "n3", "n4"]
    stand_ins = PeerStandIns(nodes=nodes)
    ref = new_ref("peers")
    async with workers(client, stand_ins):
        handle = await start(client, ref, peer_delivery=True, peer_origin_fetchers=1)
        ready = await nodes_are(handle, {n: ("Ready", "one") for n in nodes})
        from_origin = [i for i in stand_ins.download_inputs if not i.peers]
        assert len(from_origin) == 1, "one node fetches from the origin, the others from it"
        first = from_origin[0].node
        fed = [i for i in stand_ins.download_inputs if i.peers]
        assert sorted(i.node for i in fed) == sorted(n for n in nodes if n != first)
        assert all(first in [p.node for p in i.peers] for i in fed)
        assert all(i.node not in [p.node for p in i.peers] for i in fed), "a node never feeds itself"
        assert all(
            p.url == f"http://{p.node}.peers:8090" and p.version_id == "one" for i in fed for p in i.peers
        )
        # which node fed which is in the outcome (and the history)
        assert any("fed by" in ready[n].message for n in nodes if n != first)
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_peer_delivery.json")
