"""Process assembly: connect to Temporal and build the control and node workers.

The control worker (queue `modelferry-control`) runs the workflows and the activities that only
talk to the Kubernetes API. A node worker polls one node's queue and runs the activities that
touch the node's disk; it is the only place model bytes are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.continuous_verify import ContinuousVerifier, models_roots_on_host, temporal_damage_sender
from activities.download import DownloadActivities
from activities.events import EventActivities
from activities.files import FilesActivities
from activities.kube import KubeClient
from activities.label import LabelActivities
from activities.nodeworker import NodeWorkerActivities, wake_nodes_holding_models
from activities.parse import ParseActivities
from activities.progress import ProgressActivities
from activities.resources import ResourceActivities
from activities.storage.engine import download_slots
from modelferry import metrics
from modelferry.commands.tracing import tracing_interceptors
from modelferry.names import CONTROL_TASK_QUEUE, node_task_queue
from modelferry.settings import Settings, WorkerMode
from workflows.model import ModelWorkflow
from workflows.node import NodeWorkflow

WORKFLOWS = [ModelWorkflow, NodeWorkflow]
WORKFLOW_TYPES = tuple(workflow.__name__ for workflow in WORKFLOWS)

log = logging.getLogger(__name__)


async def connect_temporal(settings: Settings, *, tracer_provider: Any = None) -> Client:
    """The process's Temporal client. With tracing on (`modelferry.commands.tracing`, or a
    `tracer_provider` given) it carries the TracingInterceptor, and so does every worker built
    from it (temporalio hands a client's worker interceptors on to its workers)."""
    t = settings.temporal
    tls: TLSConfig | bool = False
    if t.tls or t.tls_client_cert_path or t.tls_server_ca_path:
        tls = TLSConfig(
            server_root_ca_cert=t.tls_server_ca_path.read_bytes() if t.tls_server_ca_path else None,
            client_cert=t.tls_client_cert_path.read_bytes() if t.tls_client_cert_path else None,
            client_private_key=t.tls_client_key_path.read_bytes() if t.tls_client_key_path else None,
        )
    api_key = (os.environ.get(t.api_key_env) or None) if t.api_key_env else None
    return await Client.connect(
        t.address,
        namespace=t.namespace,
        tls=tls,
        api_key=api_key,
        data_converter=pydantic_data_converter,
        interceptors=tracing_interceptors(tracer_provider),
    )


def control_activities(*, client: Client, kube: KubeClient, settings: Settings) -> list[Any]:
    resources = ResourceActivities(kube=kube, ome_manager=settings.kube.ome_manager)
    labels = LabelActivities(
        kube=kube,
        agent_namespace=settings.kube.agent_namespace,
        formats=settings.kube.report_formats,
        conflict_attempts=settings.kube.node_label_retry,
    )
    workers = NodeWorkerActivities(kube=kube, settings=settings)
    events = EventActivities(kube=kube)
    progress = ProgressActivities(client=client, labels=labels)
    return [
        resources.ensure_finalizer,
        resources.release_finalizer,
        resources.plan_placement,
        resources.write_spec_metadata,
        resources.write_model_status,
        labels.set_node_model_status,
        labels.remove_node_model_status,
        workers.ensure_node_worker,
        events.record_model_event,
        progress.report_node_progress,  # async: runs on the worker's event loop, not a thread
    ]


def node_activities(*, kube: KubeClient | None, settings: Settings, peer_url: str = "") -> list[Any]:
    """The node queue's activities; `peer_url`: where this node's peer server serves, "" none."""
    download = DownloadActivities(settings=settings, secrets=kube, peer_url=peer_url)
    files = FilesActivities(settings=settings)
    parse = ParseActivities(settings=settings)
    return [
        download.download_model,
        files.verify_model,
        files.activate_model_version,
        files.remove_model_files,
        parse.parse_model,
    ]


# Threads for the control queue's blocking activities (Kubernetes writes).
CONTROL_ACTIVITY_THREADS = 32
# Activity slots: more than threads, because a progress reporter (async, mostly asleep) holds a
# slot for a whole download; with slots == threads, 32 downloads in flight starved every status,
# label and event write of a slot (bench/bench_many_models.py).
CONTROL_ACTIVITY_SLOTS = 256
# Workflows kept in the control worker's cache: past the SDK's default 1,000 open workflows,
# tasks replayed from scratch began to time out (bench/bench_many_models.py, docs/scale.md).
CONTROL_CACHED_WORKFLOWS = 5_000


def build_control_worker(*, client: Client, kube: KubeClient, settings: Settings) -> Worker:
    return Worker(
        client,
        task_queue=CONTROL_TASK_QUEUE,
        workflows=WORKFLOWS,
        activities=control_activities(client=client, kube=kube, settings=settings),
        activity_executor=ThreadPoolExecutor(
            max_workers=CONTROL_ACTIVITY_THREADS, thread_name_prefix="control-activity"
        ),
        max_concurrent_activities=CONTROL_ACTIVITY_SLOTS,
        max_cached_workflows=CONTROL_CACHED_WORKFLOWS,
        interceptors=[SlotsInUse(task_queue=CONTROL_TASK_QUEUE, slots=CONTROL_ACTIVITY_SLOTS)],
    )


class SlotsInUse(Interceptor):
    """Keeps `modelferry_worker_activity_slots{,_used}` for one worker: its activity slots, and
    how many activities it is running now."""

    def __init__(self, *, task_queue: str, slots: int) -> None:
        metrics.ACTIVITY_SLOTS.labels(task_queue).set(slots)
        self._used = metrics.ACTIVITY_SLOTS_USED.labels(task_queue)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        used = self._used

        class _Counting(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                used.inc()
                try:
                    return await super().execute_activity(input)
                finally:
                    used.dec()

        return _Counting(next)


class IdleTracker(Interceptor):
    """Knows when the worker last ran an activity or a continuous-verification check, so a
    Job-mode worker can exit when idle, but not in the middle of a long deep check."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.running = 0
        self.last_active = clock()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """The worker is not idle while inside (an activity, a check)."""
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.last_active = self._clock()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        tracker = self

        class _Tracking(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                with tracker.busy():
                    return await super().execute_activity(input)

        return _Tracking(next)

    def idle_for(self) -> float:
        return 0.0 if self.running else self._clock() - self.last_active


def build_node_worker(
    *,
    client: Client,
    node: str,
    kube: KubeClient | None,
    settings: Settings,
    task_queue: str | None = None,
    idle: IdleTracker | None = None,
    peer_url: str = "",
) -> Worker:
    slots = settings.worker.max_concurrent_activities
    download_slots(settings.download.num_download_worker)  # the per-node cap on concurrent models
    queue = task_queue or node_task_queue(node)
    interceptors: list[Interceptor] = [SlotsInUse(task_queue=queue, slots=slots)]
    return Worker(
        client,
        task_queue=queue,
        activities=node_activities(kube=kube, settings=settings, peer_url=peer_url),
        activity_executor=ThreadPoolExecutor(max_workers=slots, thread_name_prefix="node-activity"),
        max_concurrent_activities=slots,
        interceptors=[*interceptors, idle] if idle else interceptors,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_until_idle(worker: Worker, idle: IdleTracker, *, idle_exit_seconds: float) -> None:
    """Run the worker; return once no activity has run for `idle_exit_seconds`."""
    task = asyncio.create_task(worker.run())
    try:
        while not task.done():
            await asyncio.sleep(min(5.0, max(idle_exit_seconds / 4, 0.2)))
            if idle.idle_for() >= idle_exit_seconds:
                break
    finally:
        if not task.done():
            await worker.shutdown()
        await task


WORKFLOWS_RUNNING_INTERVAL = 30.0  # seconds between counts: a visibility query, cheap at this rate


async def report_workflows_running(
    client: Client,
    *,
    stop: asyncio.Event,
    interval: float = WORKFLOWS_RUNNING_INTERVAL,
    workflow_types: Sequence[str] = WORKFLOW_TYPES,
) -> None:
    """Keep `modelferry_workflows_running{workflow_type}` from Temporal's visibility store until
    `stop` (a count that fails is skipped: a metric never stops the controller)."""
    while not stop.is_set():
        for name in workflow_types:
            try:
                counted = await client.count_workflows(
                    f"WorkflowType = '{name}' AND ExecutionStatus = 'Running'"
                )
            except Exception as error:
                log.debug("counting running %s workflows failed: %s", name, error)
                continue
            metrics.WORKFLOWS_RUNNING.labels(name).set(counted.count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def verify_sweep_interval(settings: Settings) -> float:
    """How often Job mode wakes the nodes that hold models: every verify interval (or, with cheap
    checks off, every deep interval); 0 when there is no Job to wake or nothing to check."""
    if settings.worker.mode is not WorkerMode.JOB:
        return 0.0
    node = settings.node
    return node.verify_interval if node.verify_interval > 0 else node.deep_verify_interval


async def wake_nodes_for_verification(
    *, kube: KubeClient, settings: Settings, stop: asyncio.Event, interval: float | None = None
) -> None:
    """Job mode: every `interval` (first after one interval; default `verify_sweep_interval`)
    ensure the worker Job of each node that holds a model, which runs the checks due and exits
    when idle, until `stop`. Every manager replica sweeps: ensuring a Job is idempotent, so the
    only cost of two is a few more reads. A failed sweep is logged and tried again."""
    every = verify_sweep_interval(settings)
    if every <= 0:
        return
    every = every if interval is None else interval
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        if stop.is_set():
            return
        try:
            sweep = await asyncio.to_thread(wake_nodes_holding_models, kube=kube, settings=settings)
        except Exception as error:
            log.warning("verify sweep failed; trying again in %ss: %s", every, error)
            continue
        log.info(
            "verify sweep: worker Jobs created on %d nodes, already running on %d, failed on %d",
            len(sweep.created),
            len(sweep.running),
            len(sweep.failed),
        )


def build_node_verifier(
    *, client: Client, node: str, settings: Settings, idle: IdleTracker | None = None
) -> ContinuousVerifier:
    """The continuous verification beside a node worker: checks the models this node holds and
    signals damage to their workflows (`activities.continuous_verify`); `run(stop)` runs it.
    With `idle`, a check keeps the worker from its idle exit."""
    return ContinuousVerifier(
        node=node,
        models_roots=models_roots_on_host(settings),
        verify_interval=settings.node.verify_interval,
        deep_interval=settings.node.deep_verify_interval,
        send=temporal_damage_sender(client),
        busy=idle.busy if idle is not None else contextlib.nullcontext,
    )
