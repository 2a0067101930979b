"""The model's workflow is the one writer of status, on the real Temporal dev server with stand-in
activities: generation N is Ready, the watcher refuses generation N+1 (`mark_invalid`), and every
status write from then on describes N+1 as InvalidSpec, even when N's delivery finishes after the
refusal; the files of N stay on the node. A resource the watcher never applied gets a workflow
(signal-with-start) whose only write is its InvalidSpec. A newer valid generation is Ready again.
Each run's history replays, and records the patch that guards the new commands."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.messages import (
    DownloadModelInput,
    DownloadModelResult,
    InvalidRevision,
    ModelRef,
    ModelRevision,
    ModelWorkflowInput,
    PipelineOptions,
    RemoveModelFilesInput,
    RemoveModelFilesResult,
)
from modelferry.names import ModelKind, model_workflow_id
from tests.workflows.test_model_workflow_orchestrates_nodes import StandIns, workers
from watcher.temporal import TemporalGateway
from workflows.model import PATCH_INVALID_SPEC_STATUS, ModelWorkflow
from workflows.node import NodeWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "data" / "histories"


class GatedStandIns(StandIns):
    """Downloads wait for `gate`; file removals are recorded (none may happen here)."""

    def __init__(self, *, nodes: list[str]) -> None:
        super().__init__(nodes=nodes)
        self.gate = threading.Event()
        self.gate.set()
        self.removed: list[str] = []

    def node(self, name: str) -> list:
        @activity.defn(name="download_model")
        def download_model(inp: DownloadModelInput) -> DownloadModelResult:
            assert self.gate.wait(timeout=20), "the test never opened the gate"
            self.downloads.append(name)
            return DownloadModelResult(
                revision="abc", version_id="v-abc", total_bytes=10, bytes_transferred=10, files=1
            )

        @activity.defn(name="remove_model_files")
        def remove_model_files(_: RemoveModelFilesInput) -> RemoveModelFilesResult:
            self.removed.append(name)
            return RemoveModelFilesResult(removed=True, path="/x")

        kept = [a for a in super().node(name) if a.__name__ not in ("download_model", "remove_model_files")]
        return [download_model, *kept, remove_model_files]


async def connect(temporal: TemporalDevServer) -> Client:
    await temporal.wait_ready()
    return await Client.connect(temporal.address, data_converter=pydantic_data_converter)


def new_ref(prefix: str) -> ModelRef:
    return ModelRef(
        kind=ModelKind.CLUSTER_BASE_MODEL, name=f"{prefix}-{uuid.uuid4().hex[:6]}", uid=str(uuid.uuid4())
    )


def revision(ref: ModelRef, generation: int) -> ModelRevision:
    spec = {"storage": {"storageUri": "hf://acme/tiny", "path": f"/m/{ref.name}"}}
    return ModelRevision(generation=generation, spec=spec, uid=ref.uid)


def refusal(ref: ModelRef, generation: int) -> InvalidRevision:
    return InvalidRevision(
        generation=generation, field="spec.storage.path", rule="must be absolute", uid=ref.uid
    )


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def says_refused(status: dict[str, Any], generation: int) -> bool:
    condition = ready(status)
    return (
        status.get("state") == "Failed"
        and status["observedGeneration"] == generation
        and (condition["status"], condition["reason"], condition["observedGeneration"])
        == ("False", "InvalidSpec", generation)
        and condition["message"] == "spec.storage.path: must be absolute"
    )


async def until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what} not reached in {timeout}s"
        await asyncio.sleep(0.05)


async def settle(handle: WorkflowHandle) -> None:
    """Give the workflow a moment to write anything it still would (it must not)."""
    await asyncio.sleep(1.0)
    await handle.query(ModelWorkflow.state)


async def check_history(handle: WorkflowHandle, *, record_as: str | None = None) -> None:
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert any(PATCH_INVALID_SPEC_STATUS.encode() in m.SerializeToString() for m in markers), (
        "the new commands must run behind workflow.patched"
    )
    replayer = Replayer(workflows=[ModelWorkflow, NodeWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    if record_as and os.environ.get("MODELFERRY_RECORD_HISTORIES"):
        (HISTORIES / record_as).write_text(history.to_json())
        ids_file = HISTORIES / "workflow_ids.txt"
        ids = dict(line.split(" ", 1) for line in ids_file.read_text().splitlines())
        ids[record_as] = handle.id
        ids_file.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))


async def test_ready_then_a_refused_generation_is_the_status_until_a_valid_one(temporal, caplog):
    caplog.set_level(logging.INFO)
    client = await connect(temporal)
    stand_ins = GatedStandIns(nodes=["n1", "n2"])
    gateway = TemporalGateway(client=client, options=PipelineOptions(failed_node_retry_seconds=3600))
    ref = new_ref("refused")
    async with workers(client, stand_ins):
        await gateway.apply_model(ref=ref, revision=revision(ref, 1))
        handle = client.get_workflow_handle(model_workflow_id(kind=ref.kind, namespace=None, name=ref.name))
        await until(lambda: stand_ins.statuses and stand_ins.statuses[-1].get("state") == "Ready", "Ready")
        assert ready(stand_ins.statuses[-1])["observedGeneration"] == 1

        await gateway.mark_invalid(ref=ref, invalid=refusal(ref, 2))
        await until(lambda: says_refused(stand_ins.statuses[-1], 2), "InvalidSpec for generation 2")
        refused = stand_ins.statuses[-1]
        assert refused["nodesReady"] == ["n1", "n2"]  # generation 1 keeps serving where it is

        # Anything that makes the workflow reconcile again writes no older generation.
        await handle.signal(ModelWorkflow.placement_changed, "node n3 appeared")
        await gateway.mark_invalid(ref=ref, invalid=refusal(ref, 2))  # a resync re-sends it
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 1))  # a late Apply of gen 1
        await settle(handle)
        assert says_refused(stand_ins.statuses[-1], 2)
        assert stand_ins.removed == [] and sorted(stand_ins.downloads) == ["n1", "n2"]

        await gateway.apply_model(ref=ref, revision=revision(ref, 3))  # the user fixes the spec
        await until(
            lambda: (
                stand_ins.statuses[-1].get("state") == "Ready"
                and stand_ins.statuses[-1]["observedGeneration"] == 3
            ),
            "Ready for generation 3",
        )
        await gateway.delete_model(ref=ref)
        assert await handle.result() == "Deleted"
    await check_history(handle, record_as="model_workflow_ready_then_refused.json")

    # Logs: one INFO line per node that became Ready, naming model, node, version and bytes.
    for node in ("n1", "n2"):
        said = f"ClusterBaseModel/{ref.name} ready on node {node}: version v-abc, 10 bytes"
        lines = [r for r in caplog.records if r.getMessage().startswith(said)]
        assert [r.levelno for r in lines] == [logging.INFO], [r.getMessage() for r in caplog.records]


async def test_a_refusal_during_delivery_wins_over_the_older_ready(temporal):
    client = await connect(temporal)
    stand_ins = GatedStandIns(nodes=["n1"])
    stand_ins.gate.clear()  # generation 1's download hangs until the refusal is reported
    gateway = TemporalGateway(client=client, options=PipelineOptions(failed_node_retry_seconds=3600))
    ref = new_ref("race")
    async with workers(client, stand_ins):
        await gateway.apply_model(ref=ref, revision=revision(ref, 1))
        handle = client.get_workflow_handle(model_workflow_id(kind=ref.kind, namespace=None, name=ref.name))
        await until(
            lambda: stand_ins.statuses and stand_ins.statuses[-1].get("state") == "Creating", "Creating"
        )

        await gateway.mark_invalid(ref=ref, invalid=refusal(ref, 2))
        # Reported while the node work still runs, not once it is done.
        await until(lambda: says_refused(stand_ins.statuses[-1], 2), "InvalidSpec while delivering")
        assert stand_ins.downloads == []
        first_refusal = len(stand_ins.statuses) - 1

        stand_ins.gate.set()  # generation 1 lands on the node after the refusal
        await until(lambda: stand_ins.downloads == ["n1"], "the delivery to finish")
        await until(lambda: stand_ins.statuses[-1].get("nodesReady") == ["n1"], "node n1 Ready")
        await settle(handle)
        later = stand_ins.statuses[first_refusal:]
        assert all(says_refused(s, 2) for s in later), later  # never generation 1's Ready
        assert later[-1]["nodesReady"] == ["n1"]  # yet the node's state is told as it is
        await gateway.delete_model(ref=ref)
        assert await handle.result() == "Deleted"
    await check_history(handle, record_as="model_workflow_refused_while_delivering.json")


async def test_a_resource_never_applied_gets_a_workflow_that_reports_the_refusal(temporal):
    client = await connect(temporal)
    stand_ins = GatedStandIns(nodes=["n1"])
    gateway = TemporalGateway(client=client, options=PipelineOptions(failed_node_retry_seconds=3600))
    ref = new_ref("never")
    async with workers(client, stand_ins):
        await gateway.mark_invalid(ref=ref, invalid=refusal(ref, 1))  # signal-with-start
        handle = client.get_workflow_handle(model_workflow_id(kind=ref.kind, namespace=None, name=ref.name))
        await until(lambda: bool(stand_ins.statuses), "a status write")
        await settle(handle)
        assert stand_ins.statuses == [
            {
                "state": "Failed",
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "InvalidSpec",
                        "message": "spec.storage.path: must be absolute",
                        "observedGeneration": 1,
                    }
                ],
            }
        ]
        assert stand_ins.downloads == []
        assert await handle.query(ModelWorkflow.state) == "Failed"

        await gateway.apply_model(ref=ref, revision=revision(ref, 2))
        await until(lambda: stand_ins.statuses[-1].get("state") == "Ready", "Ready for generation 2")
        assert stand_ins.statuses[-1]["observedGeneration"] == 2
        await gateway.delete_model(ref=ref)
        assert await handle.result() == "Deleted"
    await check_history(handle, record_as="model_workflow_started_for_a_refused_spec.json")


async def test_a_refusal_is_carried_over_continue_as_new(temporal):
    client = await connect(temporal)
    stand_ins = GatedStandIns(nodes=["n1"])
    # A history limit this low makes every reconcile end in continue-as-new.
    options = PipelineOptions(failed_node_retry_seconds=3600, max_history_events=40)
    gateway = TemporalGateway(client=client, options=options)
    ref = new_ref("carried")
    wid = model_workflow_id(kind=ref.kind, namespace=None, name=ref.name)
    async with workers(client, stand_ins):
        await gateway.apply_model(ref=ref, revision=revision(ref, 1))
        await until(lambda: stand_ins.statuses and stand_ins.statuses[-1].get("state") == "Ready", "Ready")
        first_run = (await client.get_workflow_handle(wid).describe()).run_id
        await gateway.mark_invalid(ref=ref, invalid=refusal(ref, 2))
        await until(lambda: says_refused(stand_ins.statuses[-1], 2), "InvalidSpec for generation 2")
        refused_at = len(stand_ins.statuses) - 1

        async def continued() -> ModelWorkflowInput | None:
            latest = client.get_workflow_handle(wid)
            if (await latest.describe()).run_id == first_run:
                return None
            history = await latest.fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            (inp,) = await client.data_converter.decode(started.input.payloads, [ModelWorkflowInput])
            return inp if inp.invalid is not None else None

        carried = None
        for _ in range(50):
            carried = await continued()
            if carried is not None:
                break
            # Each reconcile grows the history; one ends past the limit, in continue-as-new.
            await client.get_workflow_handle(wid).signal(ModelWorkflow.placement_changed, "nudge")
            await asyncio.sleep(0.3)
        assert carried is not None and carried.invalid == refusal(ref, 2)
        latest = client.get_workflow_handle(wid)
        await settle(latest)
        assert await latest.query(ModelWorkflow.state) in ("Failed", "")  # "" before its first write
        assert all(says_refused(s, 2) for s in stand_ins.statuses[refused_at:])
        await gateway.delete_model(ref=ref)
        assert await latest.result() == "Deleted"
