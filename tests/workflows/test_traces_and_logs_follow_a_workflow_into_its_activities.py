"""Tracing and JSON logs through a real worker on the Temporal dev server: the client from
`connect_temporal` carries temporalio's TracingInterceptor, so starting a workflow, running it and
running its activity are spans of one trace (the worker inherits the interceptor from the client),
down to each file the node's download and verify activities fetch and check;
and a JSON log line inside the workflow or the activity carries the workflow ID and the model read
back from it, an activity's line the trace ID too. Beside them, the metrics a worker keeps of
Temporal: activity slots in use, and running workflows counted from visibility."""

from __future__ import annotations

import io
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import activities.download as download_module
    from activities.download import DownloadActivities
    from activities.files import FilesActivities
    from modelferry.commands.logs import setup_logging
    from modelferry.commands.runtime import connect_temporal
    from modelferry.dev.temporal_server import TemporalDevServer
    from modelferry.messages import (
        DownloadModelInput,
        DownloadModelResult,
        ModelRef,
        VerifyModelInput,
        VerifyModelResult,
    )
    from modelferry.names import ModelKind
    from modelferry.settings import load_settings
    from tests.storage.fakes import MemoryBackend


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


@workflow.defn
class TracedDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DownloadModelInput) -> int:
        once = RetryPolicy(maximum_attempts=1)
        downloaded = await workflow.execute_activity(
            "download_model",
            inp,
            result_type=DownloadModelResult,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=once,
        )
        work = VerifyModelInput(ref=inp.ref, spec=inp.spec, node=inp.node, version_id=downloaded.version_id)
        verified = await workflow.execute_activity(
            "verify_model",
            work,
            result_type=VerifyModelResult,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=once,
        )
        return verified.files


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


async def test_the_download_and_verify_activities_have_a_span_per_file(
    temporal: TemporalDevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spans
):
    """The interceptor's spans and the per-file spans (made through the global provider, from the
    engine's worker threads) land in one exporter: the `spans` fixture's."""
    files = {"a.bin": b"A" * 700_000, "b.bin": b"B" * 3000, "c.txt": b"C" * 10}
    monkeypatch.setattr(download_module, "open_backend", lambda *a, **k: MemoryBackend(dict(files)))
    (tmp_path / "node").mkdir()
    settings = load_settings(
        environ={}, overrides={"temporal.address": temporal.address, "node.root": str(tmp_path / "node")}
    )
    client = await connect_temporal(settings, tracer_provider=trace.get_tracer_provider())
    queue = f"delivery-{uuid.uuid4().hex[:8]}"
    inp = DownloadModelInput(
        ref=ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="traced", uid="u1"),
        spec={"storage": {"storageUri": "s3://weights/traced", "path": "/raid/models/traced"}},
        node="node-1",
    )
    activities = [
        DownloadActivities(settings=settings, secrets=None).download_model,
        FilesActivities(settings=settings).verify_model,
    ]
    with ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[TracedDeliveryWorkflow],
            activities=activities,
            activity_executor=executor,
        ):
            verified = await client.execute_workflow(
                TracedDeliveryWorkflow.run, inp, id=f"delivery-{queue}", task_queue=queue
            )
    assert verified == len(files)

    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    for activity_name, child in [("download_model", "download file"), ("verify_model", "verify file")]:
        (run,) = [s for s in finished if s.name == f"RunActivity:{activity_name}"]
        children = [s for s in finished if s.name == child]
        assert sorted(s.attributes["modelferry.file.name"] for s in children) == sorted(files)
        assert {s.parent.span_id for s in children} == {run.context.span_id}
