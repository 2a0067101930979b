"""Tracing and JSON logs through a real worker on the Temporal dev server: the client from
`connect_temporal` carries temporalio's TracingInterceptor, so starting a workflow, running it and
running its activity are spans of one trace (the worker inherits the interceptor from the client);
and a JSON log line inside the workflow or the activity carries the workflow ID and the model read
back from it, an activity's line the trace ID too. Beside them, the metrics a worker keeps of
Temporal: activity slots in use, and running workflows counted from visibility."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from modelferry.commands.logs import setup_logging
    from modelferry.commands.runtime import connect_temporal
    from modelferry.dev.temporal_server import TemporalDevServer
    from modelferry.settings import load_settings


@activity.defn
async def greet(name: str) -> str:
    activity.logger.info("greeting %s", name)
    return f"hello {name}"


@activity.defn
async def peek_slots(queue: str) -> float:
    from modelferry import metrics

    return metrics.ACTIVITY_SLOTS_USED.labels(queue)._value.get()


@workflow.defn
class PeekWorkflow:
    @workflow.run
    async def run(self, queue: str) -> float:
        return await workflow.execute_activity(
            peek_slots, queue, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn
class TracedWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        workflow.logger.info("asking for a greeting")
        return await workflow.execute_activity(greet, name, start_to_close_timeout=timedelta(seconds=30))


async def test_a_workflow_and_its_activity_are_one_trace_and_their_logs_say_which(
    temporal: TemporalDevServer,
):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stream = io.StringIO()
    handler = setup_logging(log_format="json", level=logging.INFO, stream=stream, forward_core_logs=False)
    try:
        settings = load_settings(environ={}, overrides={"temporal.address": temporal.address})
        client = await connect_temporal(settings, tracer_provider=provider)
        queue = f"traced-{uuid.uuid4().hex[:8]}"
        workflow_id = f"ome/clusterbasemodel/traced-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[TracedWorkflow], activities=[greet]):
            result = await client.execute_workflow(
                TracedWorkflow.run, "llama", id=workflow_id, task_queue=queue
            )
    finally:
        logging.getLogger().removeHandler(handler)
        activity.logger.activity_info_on_message = True
        workflow.logger.workflow_info_on_message = True
    assert result == "hello llama"

    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {
        "StartWorkflow:TracedWorkflow",
        "RunWorkflow:TracedWorkflow",
        "StartActivity:greet",
        "RunActivity:greet",
    } <= names
    trace_ids = {span.context.trace_id for span in spans}
    assert len(trace_ids) == 1
    (start,) = [s for s in spans if s.name == "StartWorkflow:TracedWorkflow"]
    assert start.parent is None  # the client's call is the root the rest hangs from

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    model = workflow_id.removeprefix("ome/clusterbasemodel/")
    (asked,) = [e for e in entries if e["message"] == "asking for a greeting"]
    assert asked["workflow_id"] == workflow_id and asked["model"] == f"ClusterBaseModel/{model}"
    assert asked["workflow_type"] == "TracedWorkflow"
    (greeted,) = [e for e in entries if e["message"] == "greeting llama"]
    assert greeted["workflow_id"] == workflow_id and greeted["activity_type"] == "greet"
    assert greeted["task_queue"] == queue
    assert greeted["trace_id"] == f"{trace_ids.pop():032x}"


async def test_running_workflows_are_counted_from_visibility(temporal: TemporalDevServer):
    import asyncio

    from modelferry import metrics
    from modelferry.commands.runtime import report_workflows_running

    settings = load_settings(environ={}, overrides={"temporal.address": temporal.address})
    client = await connect_temporal(settings)
    kind = f"WaitingWorkflow{uuid.uuid4().hex[:6]}"
    handles = [
        await client.start_workflow(kind, id=f"waiting-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls")
        for _ in range(2)
    ]
    stop = asyncio.Event()
    counting = asyncio.create_task(
        report_workflows_running(client, stop=stop, interval=0.2, workflow_types=[kind])
    )
    try:
        for _ in range(100):  # visibility is eventually consistent
            if (
                metrics.REGISTRY.get_sample_value("modelferry_workflows_running", {"workflow_type": kind})
                == 2
            ):
                break
            await asyncio.sleep(0.1)
        assert metrics.REGISTRY.get_sample_value("modelferry_workflows_running", {"workflow_type": kind}) == 2
    finally:
        stop.set()
        await counting
        for handle in handles:
            await handle.terminate()


async def test_activity_slots_in_use_are_counted(temporal: TemporalDevServer):
    from modelferry import metrics
    from modelferry.commands.runtime import SlotsInUse

    settings = load_settings(environ={}, overrides={"temporal.address": temporal.address})
    client = await connect_temporal(settings)
    queue = f"slots-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PeekWorkflow],
        activities=[peek_slots],
        interceptors=[SlotsInUse(task_queue=queue, slots=3)],
    ):
        in_use = await client.execute_workflow(PeekWorkflow.run, queue, id=queue, task_queue=queue)
    assert in_use == 1
    assert (
        metrics.REGISTRY.get_sample_value("modelferry_worker_activity_slots_used", {"task_queue": queue}) == 0
    )
    assert metrics.REGISTRY.get_sample_value("modelferry_worker_activity_slots", {"task_queue": queue}) == 3
