"""ModelWorkflow and NodeWorkflow on the real Temporal dev server with stand-in activities:
node work runs on each node's own queue, in parallel across nodes; a failing status write does not
stop the workflow; a permanent download failure is reported once with its reason."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from modelferry.messages import (
    ActivateModelVersionInput,
    ActivateModelVersionResult,
    DownloadModelInput,
    DownloadModelResult,
    EnsureNodeWorkerInput,
    EnsureNodeWorkerResult,
    ModelRef,
    ModelRevision,
    ModelWorkflowInput,
    ParseModelInput,
    ParseModelResult,
    PipelineOptions,
    PlanPlacementInput,
    PlanPlacementResult,
    RecordModelEventInput,
    RecordModelEventResult,
    RemoveModelFilesInput,
    RemoveModelFilesResult,
    ReportNodeProgressInput,
    ReportNodeProgressResult,
    VerifyModelInput,
    VerifyModelResult,
    WriteModelStatusInput,
)
from modelferry.names import CONTROL_TASK_QUEUE, ModelKind, model_workflow_id, node_task_queue
from workflows.model import ModelWorkflow
from workflows.node import NodeWorkflow


class StandIns:
    """Activities with the real names; record what ran, and fail where a test asks."""

    def __init__(self, *, nodes: list[str], fail_status: bool = False, fail_download_on: str | None = None):
        self.nodes = nodes
        self.fail_status = fail_status
        self.fail_download_on = fail_download_on
        self.statuses: list[dict] = []
        self.downloads: list[str] = []
        self.events: list[RecordModelEventInput] = []

    def control(self) -> list:
        @activity.defn(name="ensure_finalizer")
        def ensure_finalizer(_: object) -> bool:
            return True

        @activity.defn(name="release_finalizer")
        def release_finalizer(_: object) -> bool:
            return True

        @activity.defn(name="plan_placement")
        def plan_placement(inp: PlanPlacementInput) -> PlanPlacementResult:
            return PlanPlacementResult(eligible=self.nodes, existing_nodes=self.nodes)

        @activity.defn(name="write_spec_metadata")
        def write_spec_metadata(_: object) -> bool:
            return True

        @activity.defn(name="write_model_status")
        def write_model_status(inp: WriteModelStatusInput) -> bool:
            if self.fail_status:
                raise ApplicationError(
                    "status subresource refused", type="KubeInvalidError", non_retryable=True
                )
            self.statuses.append(inp.status)
            return True

        @activity.defn(name="set_node_model_status")
        def set_node_model_status(_: object) -> None:
            return None

        @activity.defn(name="remove_node_model_status")
        def remove_node_model_status(_: object) -> None:
            return None

        @activity.defn(name="ensure_node_worker")
        def ensure_node_worker(inp: EnsureNodeWorkerInput) -> EnsureNodeWorkerResult:
            return EnsureNodeWorkerResult(task_queue=node_task_queue(inp.node), mode="static")

        @activity.defn(name="record_model_event")
        def record_model_event(inp: RecordModelEventInput) -> RecordModelEventResult:
            self.events.append(inp)
            return RecordModelEventResult(recorded=True)

        @activity.defn(name="report_node_progress")
        async def report_node_progress(_: ReportNodeProgressInput) -> ReportNodeProgressResult:
            try:
                while True:
                    activity.heartbeat()
                    await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                return ReportNodeProgressResult()

        return [
            ensure_finalizer,
            release_finalizer,
            plan_placement,
            write_spec_metadata,
            write_model_status,
            set_node_model_status,
            remove_node_model_status,
            ensure_node_worker,
            record_model_event,
            report_node_progress,
        ]

    def node(self, name: str) -> list:
        @activity.defn(name="download_model")
        def download_model(inp: DownloadModelInput) -> DownloadModelResult:
            assert inp.node == name, "node work reached another node's worker"
            self.downloads.append(name)
            if name == self.fail_download_on:
                raise ApplicationError(
                    "gated: request access or set storageKey", type="GatedRepoError", non_retryable=True
                )
            return DownloadModelResult(
                revision="abc", version_id="abc", total_bytes=10, bytes_transferred=10, files=1
            )

        @activity.defn(name="verify_model")
        def verify_model(_: VerifyModelInput) -> VerifyModelResult:
            return VerifyModelResult(files=1, total_bytes=10)

        @activity.defn(name="activate_model_version")
        def activate_model_version(inp: ActivateModelVersionInput) -> ActivateModelVersionResult:
            return ActivateModelVersionResult(version_id=inp.version_id)

        @activity.defn(name="parse_model")
        def parse_model(_: ParseModelInput) -> ParseModelResult:
            return ParseModelResult(metadata={"modelType": "llama"})

        @activity.defn(name="remove_model_files")
        def remove_model_files(_: RemoveModelFilesInput) -> RemoveModelFilesResult:
            return RemoveModelFilesResult(removed=True, path="/x")

        return [download_model, verify_model, activate_model_version, parse_model, remove_model_files]


@asynccontextmanager
async def workers(client: Client, stand_ins: StandIns) -> AsyncIterator[None]:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=16)
    all_workers = [
        Worker(
            client,
            task_queue=CONTROL_TASK_QUEUE,
            workflows=[ModelWorkflow, NodeWorkflow],
            activities=stand_ins.control(),
            activity_executor=pool,
        )
    ]
    all_workers += [
        Worker(client, task_queue=node_task_queue(n), activities=stand_ins.node(n), activity_executor=pool)
        for n in stand_ins.nodes
    ]
    async with contextlib_all(all_workers):
        yield


@asynccontextmanager
async def contextlib_all(items: list[Worker]) -> AsyncIterator[None]:
    for w in items:
        await w.__aenter__()
    try:
        yield
    finally:
        for w in reversed(items):
            await w.__aexit__(None, None, None)


def start_input(name: str) -> tuple[ModelRef, ModelWorkflowInput]:
    ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=name, uid=str(uuid.uuid4()))
    revision = ModelRevision(generation=1, spec={"storage": {"storageUri": "hf://a/b", "path": "/m/b"}})
    return ref, ModelWorkflowInput(
        ref=ref, revision=revision, options=PipelineOptions(failed_node_retry_seconds=3600)
    )


async def wait_state(handle, state: str) -> None:
    for _ in range(200):
        if await handle.query("state") == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"state never became {state}: {await handle.query('state')}")


async def test_node_work_runs_on_each_nodes_queue_in_parallel(temporal):
    await temporal.wait_ready()
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    stand_ins = StandIns(nodes=["n1", "n2"])
    ref, inp = start_input(f"m-{uuid.uuid4().hex[:6]}")
    async with workers(client, stand_ins):
        handle = await client.start_workflow(
            ModelWorkflow.run,
            inp,
            id=model_workflow_id(kind=ref.kind, namespace=None, name=ref.name),
            task_queue=CONTROL_TASK_QUEUE,
        )
        await wait_state(handle, "Ready")
        assert sorted(stand_ins.downloads) == ["n1", "n2"]
        assert stand_ins.statuses[-1]["nodesReady"] == ["n1", "n2"]
        for node in ("n1", "n2"):
            history = await client.get_workflow_handle(f"{handle.id}/node/{node}").fetch_history()
            scheduled = [
                e.activity_task_scheduled_event_attributes
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ]
            queues = {a.activity_type.name: a.task_queue.name for a in scheduled}
            for name in ("download_model", "verify_model", "activate_model_version", "parse_model"):
                assert queues[name] == node_task_queue(node)
            assert queues["set_node_model_status"] == CONTROL_TASK_QUEUE
        # a repeated signal of the same generation changes nothing
        await handle.signal("apply_revision", inp.revision)
        await asyncio.sleep(0.5)
        assert sorted(stand_ins.downloads) == ["n1", "n2"]
        await handle.signal("request_delete")
        assert await handle.result() == "Deleted"


async def test_permanent_failure_on_one_node_and_refused_status_writes_do_not_stop_the_workflow(temporal):
    await temporal.wait_ready()
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    stand_ins = StandIns(nodes=["n1", "n2"], fail_download_on="n2", fail_status=True)
    ref, inp = start_input(f"m-{uuid.uuid4().hex[:6]}")
    async with workers(client, stand_ins):
        handle = await client.start_workflow(
            ModelWorkflow.run,
            inp,
            id=model_workflow_id(kind=ref.kind, namespace=None, name=ref.name),
            task_queue=CONTROL_TASK_QUEUE,
        )
        for _ in range(200):
            nodes = await handle.query(ModelWorkflow.nodes)
            if {n: o.state for n, o in nodes.items()} == {"n1": "Ready", "n2": "Failed"}:
                break
            await asyncio.sleep(0.05)
        nodes = await handle.query(ModelWorkflow.nodes)
        # Access can be granted later without a spec change: the node heals on the model's retry
        # timer (retryable outcome), but no activity attempt is wasted meanwhile.
        assert nodes["n2"].reason == "GatedRepoError" and nodes["n2"].retryable
        assert "gated" in nodes["n2"].message
        assert stand_ins.downloads.count("n2") == 1  # non-retryable activity: no second attempt
        # the status write kept failing, yet the workflow is alive and still answers signals
        await handle.signal("request_delete")
        assert await handle.result() == "Deleted"
