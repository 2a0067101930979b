"""Three paths of a model's long life, on the real Temporal dev server with the versioned stand-ins,
each recorded into the replay set (tests/unit/test_workflow_histories_replay.py):

- the live loop continues as new (a small `max_history_events`) and the new run knows what the old
  one knew: each node's serving and kept versions (a rollback to a version kept before the switch
  works after it), and the admin tokens already handled (the same token again is `already_handled`
  and runs nothing); every run's history is recorded on its own;
- a revision that changes the source while a node still downloads the previous one cancels that
  node work (its NodeWorkflow ends Canceled) and delivers the new source;
- a node failure that can heal by itself (not a spec error) is tried again on the model's own
  timer, after `failed_node_retry_seconds`, with no signal from anyone.
"""

from __future__ import annotations

import asyncio
import os

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from modelferry.messages import AdminRequest
from modelferry.names import UPDATE_REDOWNLOAD, UPDATE_ROLLBACK
from tests.workflows.test_model_life_after_ready import (
    HISTORIES,
    VersionedStandIns,
    connect,
    finish,
    new_ref,
    nodes_are,
    replays,
    revision,
    start,
    until,
    update,
)
from tests.workflows.test_model_workflow_orchestrates_nodes import workers
from workflows.model import ModelWorkflow
from workflows.node import NodeWorkflow


async def run_ids(client: Client, workflow_id: str, first_run_id: str) -> list[str]:
    """Every run of the workflow, oldest first, following each run's continue-as-new event."""
    runs = [first_run_id]
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=runs[-1]).fetch_history()
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return runs
        runs.append(last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


async def current_run(handle: WorkflowHandle) -> str:
    return (await handle.describe()).run_id


async def record_node_history(history: WorkflowHistory, *, record_as: str) -> None:
    """A NodeWorkflow run replays against today's code; with MODELFERRY_RECORD_HISTORIES=1 it joins
    the replay set (the model runs go through `replays`, which also checks their patch)."""
    replayer = Replayer(workflows=[ModelWorkflow, NodeWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    if os.environ.get("MODELFERRY_RECORD_HISTORIES"):
        (HISTORIES / record_as).write_text(history.to_json())
        ids_file = HISTORIES / "workflow_ids.txt"
        ids = dict(line.split(" ", 1) for line in ids_file.read_text().splitlines())
        ids[record_as] = history.workflow_id
        ids_file.write_text("".join(f"{k} {v}\n" for k, v in sorted(ids.items())))


async def test_versions_and_handled_tokens_survive_continue_as_new(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1", "n2"])
    ref = new_ref("renew")
    async with workers(client, stand_ins):
        # 60 events: the first delivery alone passes it, so the loop continues as new once idle.
        handle = await start(client, ref, keep_versions=2, max_history_events=60)
        first_run = handle.result_run_id
        assert first_run
        await nodes_are(handle, {"n1": ("Ready", "one"), "n2": ("Ready", "one")})

        plan = await update(
            handle, UPDATE_REDOWNLOAD, AdminRequest(nodes=["n1"], token="modelferry.io/redownload=1")
        )
        assert plan.nodes == ["n1"] and not plan.already_handled

        async def fresh_on_n1() -> bool:
            version = stand_ins.serving.get("n1", "")
            return version.startswith("one-")

        await until(fresh_on_n1, "n1's fresh version")
        fresh = stand_ins.serving["n1"]
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 2, "two"))
        await nodes_are(handle, {"n1": ("Ready", "two"), "n2": ("Ready", "two")})

        async def renewed() -> str | None:
            run = await current_run(handle)
            return run if run != first_run and not await handle.query(ModelWorkflow.running) else None

        await until(renewed, "a continue-as-new", timeout=30)
        # The new run knows each node's serving and kept versions, from the old run's outcomes.
        nodes = await nodes_are(handle, {"n1": ("Ready", "two"), "n2": ("Ready", "two")})
        assert nodes["n1"].kept_versions == [fresh, "one"]
        assert nodes["n2"].kept_versions == ["one"]
        assert await handle.query(ModelWorkflow.state) == "Ready"

        # A token handled by an earlier run is still known: nothing runs again.
        downloads = len(stand_ins.download_inputs)
        again = await update(
            handle, UPDATE_REDOWNLOAD, AdminRequest(nodes=["n1"], token="modelferry.io/redownload=1")
        )
        assert again.already_handled and "handled before" in again.message
        await asyncio.sleep(0.5)
        assert len(stand_ins.download_inputs) == downloads, "a handled token ran again after continue-as-new"

        # A version kept before the switch is a rollback target after it (verified, then served).
        plan = await update(
            handle, UPDATE_ROLLBACK, AdminRequest(nodes=["n2"], token="modelferry.io/rollback=1")
        )
        assert plan.to_version == {"n2": "one"}
        await nodes_are(handle, {"n1": ("Ready", "two"), "n2": ("Ready", "one")})
        assert stand_ins.verified[-1] == ("n2", "one")
        assert len(stand_ins.download_inputs) == downloads
        await finish(handle)

    runs = await run_ids(client, handle.id, first_run)
    assert len(runs) >= 2, runs
    for number, run in enumerate(runs, start=1):
        # Each run replays on its own: the first ends in ContinueAsNew, the next start from its input.
        await replays(
            client,
            client.get_workflow_handle(handle.id, run_id=run),
            record_as=f"model_workflow_continue_as_new_run{number}.json" if number <= 3 else "",
        )


async def test_a_new_source_cancels_the_download_in_flight_and_is_delivered(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1"])
    stand_ins.held = {"n1"}
    ref = new_ref("supersede")
    async with workers(client, stand_ins):
        handle = await start(client, ref)

        async def downloading_one() -> bool:
            return any(i.spec.storage.storage_uri == "hf://org/one" for i in stand_ins.download_inputs)

        await until(downloading_one, "n1 downloading source one")
        # Only the download already waiting stays held; the next one runs through.
        stand_ins.held = set()
        await handle.signal(ModelWorkflow.apply_revision, revision(ref, 2, "two"))
        nodes = await nodes_are(handle, {"n1": ("Ready", "two")})
        assert nodes["n1"].generation == 2
        assert [i.spec.storage.storage_uri for i in stand_ins.download_inputs] == [
            "hf://org/one",
            "hf://org/two",
        ]
        assert stand_ins.verified == [("n1", "two")], "the superseded download went on to verify"
        assert stand_ins.serving == {"n1": "two"}
        # Cancelled work is no failure: the node never showed Failed, and no Warning was recorded.
        assert ("n1", "Failed") not in stand_ins.labels
        assert [e.reason for e in stand_ins.events if e.type == "Warning"] == []
        stand_ins.release.set()  # the stand-in's thread returns; its result is no longer wanted

        # The superseded NodeWorkflow ended Canceled, and the model's history says so.
        node_id = f"{handle.id}/node/n1"
        model_history = await handle.fetch_history()
        started = [
            e.child_workflow_execution_started_event_attributes.workflow_execution.run_id
            for e in model_history.events
            if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
        ]
        canceled = [
            e
            for e in model_history.events
            if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED
        ]
        assert len(started) == 2 and len(canceled) == 1
        superseded = client.get_workflow_handle(node_id, run_id=started[0])
        assert (await superseded.describe()).status == WorkflowExecutionStatus.CANCELED
        node_history = await superseded.fetch_history()
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_supersede.json")
    await record_node_history(node_history, record_as="node_workflow_superseded.json")


async def test_a_failure_that_can_heal_is_retried_on_the_models_timer(temporal):
    client = await connect(temporal)
    stand_ins = VersionedStandIns(nodes=["n1"])
    stand_ins.broken = {"hf://org/one"}
    ref = new_ref("heal")
    async with workers(client, stand_ins):
        handle = await start(client, ref, failed_node_retry_seconds=2)

        async def failed() -> bool:
            nodes = await handle.query(ModelWorkflow.nodes)
            return "n1" in nodes and nodes["n1"].state == "Failed"

        await until(failed, "n1 Failed")
        nodes = await handle.query(ModelWorkflow.nodes)
        assert nodes["n1"].reason == "NotFoundError" and nodes["n1"].retryable
        stand_ins.broken = set()  # the source appeared; nobody tells the workflow
        await nodes_are(handle, {"n1": ("Ready", "one")})
        assert len(stand_ins.download_inputs) >= 2
        retried = [e for e in stand_ins.events if e.reason == "DownloadStarted"][-1]
        assert "retry of generation 1 after a failure" in retried.message

        async def ready_written() -> bool:  # status writes are coalesced: they trail the query
            return bool(stand_ins.statuses) and stand_ins.statuses[-1]["state"] == "Ready"

        await until(ready_written, "Ready written")
        statuses = [s["state"] for s in stand_ins.statuses]
        assert "Failed" in statuses and statuses[-1] == "Ready"

        # The retry came from the model's timer, set to the retry interval.
        history = await handle.fetch_history()
        timers = [
            e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        ]
        fired = [i for i, e in enumerate(history.events) if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
        children = [
            i
            for i, e in enumerate(history.events)
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        ]
        # (shorter timers may space status writes; the retry's waits out what is left of 2 s)
        assert [t for t in timers if 1.0 <= t <= 2.0], timers
        assert all(t <= 2.0 for t in timers), timers
        assert fired and len(children) >= 2 and children[1] > fired[0]
        await finish(handle)
    await replays(client, handle, record_as="model_workflow_retry_after_failure.json")
