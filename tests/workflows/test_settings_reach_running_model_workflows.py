"""A changed setting reaches a model workflow that is already running, on the real Temporal dev
server: the watcher's gateway hands it the `PipelineOptions` its settings make
(`modelferry.options.pipeline_options`), the workflow adopts them, passes them to the node work it
starts next (schedule-to-start, start-to-close and heartbeat timeouts of the download), waits the
new failed-node retry interval, continues as new past the new history limit, and carries them into
the new run. The recorded history of such a run replays."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.messages import ModelRef, ModelRevision, ModelWorkflowInput, PipelineOptions
from modelferry.names import ModelKind, model_workflow_id
from modelferry.options import pipeline_options
from modelferry.settings import load_settings
from tests.workflows.test_model_workflow_orchestrates_nodes import StandIns, wait_state, workers
from watcher.temporal import TemporalGateway
from workflows.model import ModelWorkflow
from workflows.node import NodeWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "data" / "histories"
RECORDED = "model_workflow_adopts_options.json"

# (setting, a value other than the default, the download activity's timeout it must become)
DOWNLOAD_TIMEOUTS = [
    ("worker.schedule_to_start_seconds", 61.0, "schedule_to_start_timeout"),
    ("pipeline.download_timeout_seconds", 7201.0, "start_to_close_timeout"),
    ("pipeline.download_heartbeat_seconds", 31.0, "heartbeat_timeout"),
]
# Above what a continued run with nothing to deliver records (~25 events), below this first run (~90).
MAX_HISTORY_EVENTS = 40
FAILED_NODE_RETRY_SECONDS = 1234.0


async def connect(temporal: TemporalDevServer) -> Client:
    await temporal.wait_ready()
    return await Client.connect(temporal.address, data_converter=pydantic_data_converter)


def gateway(client: Client, overrides: dict[str, Any]) -> TemporalGateway:
    """The watcher's gateway as an entry point builds it, from a settings tree."""
    return TemporalGateway(
        client=client, options=pipeline_options(load_settings(environ={}, overrides=overrides))
    )


def revision(ref: ModelRef, generation: int, repo: str) -> ModelRevision:
    spec = {"storage": {"storageUri": f"hf://acme/{repo}", "path": f"/m/{ref.name}"}}
    return ModelRevision(generation=generation, spec=spec, uid=ref.uid)


def new_ref(prefix: str) -> ModelRef:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    return ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=name, uid=str(uuid.uuid4()))


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """The first truthy value of `check()` (awaited when it is a coroutine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def events(handle: WorkflowHandle, event_type: EventType.ValueType) -> list[Any]:
    return [e for e in (await handle.fetch_history()).events if e.event_type == event_type]


async def test_a_running_model_adopts_new_options_and_keeps_them_across_continue_as_new(temporal):
    client = await connect(temporal)
    stand_ins = StandIns(nodes=["n1"])
    ref = new_ref("adopt")
    wid = model_workflow_id(kind=ref.kind, namespace=None, name=ref.name)
    changed = {setting: value for setting, value, _ in DOWNLOAD_TIMEOUTS}
    changed["pipeline.max_history_events"] = MAX_HISTORY_EVENTS
    async with workers(client, stand_ins):
        # Started by a watcher with the default settings...
        await gateway(client, {}).apply_model(ref=ref, revision=revision(ref, 1, "one"))
        first = client.get_workflow_handle(wid)
        await wait_state(first, "Ready")
        first = client.get_workflow_handle(wid, run_id=(await first.describe()).run_id)
        # ...then a watcher restarted with changed settings applies a new generation.
        await gateway(client, changed).apply_model(ref=ref, revision=revision(ref, 2, "two"))
        await until(lambda: len(stand_ins.downloads) == 2, "the second delivery")

        # The node work it started uses the new timeouts.
        node = client.get_workflow_handle(f"{wid}/node/n1")
        await until(lambda: events(node, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED), "node work")
        (download,) = [
            e.activity_task_scheduled_event_attributes
            for e in await events(node, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
            if e.activity_task_scheduled_event_attributes.activity_type.name == "download_model"
        ]
        for setting, value, timeout in DOWNLOAD_TIMEOUTS:
            assert getattr(download, timeout).ToTimedelta() == timedelta(seconds=value), setting

        # Past the new history limit the run continues as new, carrying the adopted options.
        await until(
            lambda: events(first, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW), "continue-as-new"
        )
        latest = client.get_workflow_handle(wid)
        (started,) = await events(latest, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
        attributes = started.workflow_execution_started_event_attributes
        assert attributes.continued_execution_run_id == first.run_id
        (carried,) = await client.data_converter.decode(attributes.input.payloads, [ModelWorkflowInput])
        assert carried.options == pipeline_options(load_settings(environ={}, overrides=changed))
        assert carried.options != PipelineOptions()
        await wait_state(latest, "Ready")
        assert len(stand_ins.downloads) == 2  # the new run knows the node is done
        await latest.signal(ModelWorkflow.request_delete)
        assert await latest.result() == "Deleted"

    history = await first.fetch_history()
    replayer = Replayer(workflows=[ModelWorkflow, NodeWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    if os.environ.get("MODELFERRY_RECORD_HISTORIES"):
        record(history.to_json(), workflow_id=wid)


async def test_a_failed_node_is_retried_after_the_new_interval(temporal):
    client = await connect(temporal)
    stand_ins = StandIns(nodes=["n1"], fail_download_on="n1")
    ref = new_ref("retry")
    wid = model_workflow_id(kind=ref.kind, namespace=None, name=ref.name)
    async with workers(client, stand_ins):
        await gateway(client, {}).apply_model(ref=ref, revision=revision(ref, 1, "one"))
        handle = client.get_workflow_handle(wid)
        await wait_state(handle, "Failed")
        changed = {"pipeline.failed_node_retry_seconds": FAILED_NODE_RETRY_SECONDS}
        await gateway(client, changed).apply_model(ref=ref, revision=revision(ref, 2, "two"))

        async def timers() -> list[timedelta]:
            started = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
            waits = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for e in started]
            return [w for w in waits if w > timedelta(seconds=60)]  # not the short status coalescing

        waited = await until(lambda: _at_least_two(timers()), "the second retry timer")
        # A retry waits out what is left of the interval since the failure (a few events later).
        assert _about(waited[0], PipelineOptions().failed_node_retry_seconds)
        assert _about(waited[-1], FAILED_NODE_RETRY_SECONDS)
        await handle.signal(ModelWorkflow.request_delete)
        assert await handle.result() == "Deleted"


def _about(waited: timedelta, interval: float) -> bool:
    return timedelta(seconds=interval - 10) <= waited <= timedelta(seconds=interval)


async def _at_least_two(found: Awaitable[list[timedelta]]) -> list[timedelta] | None:
    timers = await found
    return timers if len(timers) >= 2 else None


def record(history_json: str, *, workflow_id: str) -> None:
    """Add this path to the replay set (tests/unit/test_workflow_histories_replay.py)."""
    (HISTORIES / RECORDED).write_text(history_json)
    ids_file = HISTORIES / "workflow_ids.txt"
    ids = dict(line.split(" ", 1) for line in ids_file.read_text().splitlines())
    ids[RECORDED] = workflow_id
    ids_file.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))
