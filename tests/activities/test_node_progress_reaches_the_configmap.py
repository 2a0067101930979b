"""`report_node_progress` on a real Temporal dev server with the embedded API server: a workflow
starts the reporter on its control queue, runs a stand-in `download_model` on a node queue that
heartbeats progress dicts as the real one does, then cancels the reporter. While the download ran,
the node's ConfigMap entry carried a `progress` object (both formats) with the heartbeat's
numbers and kept its status and config; the reporter ended quietly (completed, not failed); the
final Ready write dropped the progress."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import ActivityCancellationType

from activities.kube import KubeClient
from activities.label import LabelActivities
from activities.progress import ProgressActivities
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.messages import ModelRef, ReportNodeProgressInput, SetNodeModelStatusInput
from modelferry.names import ModelKind

NODE = "gpu-1"
REF = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="llama", uid="u-1")
DOCS_KEY, OME_KEY = "team-a_llama", "team-a.basemodel.llama"
CONFIG = {"modelType": "llama"}
TOTAL = 1000
STEPS = [(0, 0), (250, 1), (600, 2), (1000, 4)]  # (bytes done, files done) as the download beats


@activity.defn(name="download_model")
async def stand_in_download() -> None:
    for done, files in STEPS:
        activity.heartbeat(
            {
                "revision": "r1",
                "version_id": "v-1",
                "bytes_done": done,
                "bytes_total": TOTAL,
                "files_done_count": files,
                "files_total": 4,
                "bytes_per_second": 100,
                "eta_seconds": (TOTAL - done) / 100,
            }
        )
        await asyncio.sleep(1.2)  # past the SDK's heartbeat throttle (0.8 x 1 s): each beat lands


@workflow.defn(name="ProgressProbe")
class ProgressProbe:
    """The node workflow's call pattern: reporter beside the download, cancelled after it."""

    @workflow.run
    async def run(self, reporter: ReportNodeProgressInput, control_queue: str, node_queue: str) -> None:
        handle = workflow.start_activity_method(
            ProgressActivities.report_node_progress,
            reporter,
            task_queue=control_queue,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=2),
            cancellation_type=ActivityCancellationType.TRY_CANCEL,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        await workflow.execute_activity(
            "download_model",
            task_queue=node_queue,
            start_to_close_timeout=timedelta(minutes=1),
            heartbeat_timeout=timedelta(seconds=1),
        )
        handle.cancel()
        # TRY_CANCEL does not wait; stay open until the cancellation reached the reporter (its
        # next heartbeat, within 0.8 x 2 s) so the test can see how it ended.
        await workflow.sleep(timedelta(seconds=4))


@pytest.fixture(scope="module")
def temporal() -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(ui_port=None)
    server.start()
    yield server
    server.stop()


def _entries(core: k8s.CoreV1Api) -> dict[str, dict[str, Any]]:
    data = core.read_namespaced_config_map(NODE, "ome").data or {}
    return {k: json.loads(v) for k, v in data.items()}


async def test_progress_reaches_the_entry_while_downloading_and_the_reporter_ends_quietly(
    temporal: TemporalDevServer,
) -> None:
    await temporal.wait_ready()
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    suffix = uuid.uuid4().hex[:6]
    control_queue, node_queue, workflow_id = f"control-{suffix}", f"node-{suffix}", f"progress-{suffix}"
    with running_apiserver(nodes=[NODE]) as api:
        kube = KubeClient(api_client(api))
        core = k8s.CoreV1Api(api_client(api))
        labels = LabelActivities(kube=kube, agent_namespace="ome")
        labels.set_node_model_status(
            SetNodeModelStatusInput(ref=REF, node=NODE, status="Updating", config=CONFIG)
        )
        reporter = ProgressActivities(client=client, labels=labels)
        seen: list[dict[str, dict[str, Any]]] = []
        with ThreadPoolExecutor(max_workers=2) as pool:
            async with (
                Worker(
                    client,
                    task_queue=control_queue,
                    workflows=[ProgressProbe],
                    activities=[reporter.report_node_progress],
                    activity_executor=pool,
                    workflow_runner=UnsandboxedWorkflowRunner(),
                ),
                Worker(client, task_queue=node_queue, activities=[stand_in_download]),
            ):
                inp = ReportNodeProgressInput(
                    ref=REF,
                    node=NODE,
                    node_workflow_id=workflow_id,
                    status="Updating",
                    interval_seconds=0.2,
                    min_percent_step=5.0,
                )
                handle = await client.start_workflow(
                    ProgressProbe.run,
                    args=[inp, control_queue, node_queue],
                    id=workflow_id,
                    task_queue=control_queue,
                )
                run = asyncio.ensure_future(handle.result())
                while not run.done():
                    seen.append(await asyncio.to_thread(_entries, core))
                    await asyncio.sleep(0.1)
                await run
                history = [e async for e in handle.fetch_history_events()]

        with_progress = [s for s in seen if "progress" in s[DOCS_KEY]]
        assert with_progress, "no progress was written while the download ran"
        for entries in with_progress:
            docs, ome = entries[DOCS_KEY], entries[OME_KEY]
            assert docs["status"] == ome["status"] == "Updating"
            assert docs["config"] == ome["config"] == CONFIG
            progress = docs["progress"]
            assert progress["phase"] == "Downloading" and progress["lastUpdated"].endswith("Z")
            assert ome["progress"] == {k: v for k, v in progress.items() if k != "etaSeconds"}
            if progress["totalBytes"] == 0:  # the download started, its first heartbeat not in yet
                assert progress["completedBytes"] == progress["totalFiles"] == 0
                continue
            assert (progress["totalBytes"], progress["totalFiles"]) == (TOTAL, 4)
            assert (progress["completedBytes"], progress["completedFiles"]) in STEPS
            assert progress["speedBytesPerSec"] == 100.0
            assert progress["etaSeconds"] == (TOTAL - progress["completedBytes"]) / 100
        counted = {e[DOCS_KEY]["progress"]["completedBytes"] for e in with_progress}
        assert len(counted - {0}) >= 2  # it moved with the download

        # The reporter was asked to cancel and answered with its result: completed, not failed.
        kinds = [e.event_type for e in history]
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in kinds
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED not in kinds
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT not in kinds
        completed = [e for e in history if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
        assert len(completed) == 2  # the download and the reporter
        results = [
            (await client.data_converter.decode(e.activity_task_completed_event_attributes.result.payloads))
            for e in completed
        ]
        assert any(isinstance(r[0], dict) and r[0].get("writes", 0) >= 2 for r in results if r)

        labels.set_node_model_status(SetNodeModelStatusInput(ref=REF, node=NODE, status="Ready"))
        final = _entries(core)
        assert all(e["status"] == "Ready" and "progress" not in e for e in final.values())
