"""One model onto 1,000 nodes: what the model's Temporal histories cost at that scale.

    .venv/bin/python bench/bench_model_at_scale.py [--nodes 1000] [--max-history-events 5000] [--update]

Runs the real `ModelWorkflow` and `NodeWorkflow` (sandboxed, as the control worker runs them) on a
real Temporal dev server (in memory), with stand-in activities that answer at once:
`plan_placement` makes every one of the N nodes eligible; `ensure_node_worker` sends every node's
work to one shared queue (one worker instead of N; the histories are the same); download, verify,
activate and parse return at once (parse returns what the real parser says of the generated
example model); status, label, ConfigMap and Event writes only count and measure their input;
`report_node_progress` heartbeats until cancelled, like the real one. With `--update`, a second
generation with another source follows once all nodes are Ready (each node fetches it beside the
serving version).

Reports, against Temporal's default limits (50,000 events or 50 MB per history run, 2 MB per
payload; warnings from 10,240 events, 10 MB and 512 KB): events and size of each run of the
model's workflow (and how many runs continue-as-new made), events per node workflow, the largest
payload in any history event, the activities the model's runs issued, and the wall time to Ready.
Raw figures go to bench/out/bench_model_at_scale.json. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.protobuf import json_format  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from temporalio import activity  # noqa: E402
from temporalio.api.common.v1 import Payload  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.service import RPCError, RPCStatusCode  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from modelferry.dev.example import write_example_model  # noqa: E402
from modelferry.dev.temporal_server import TemporalDevServer  # noqa: E402
from modelferry.messages import (  # noqa: E402
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
    SetNodeModelStatusInput,
    VerifyModelInput,
    VerifyModelResult,
    WriteModelStatusInput,
)
from modelferry.metadata import parse_model_dir  # noqa: E402
from modelferry.names import CONTROL_TASK_QUEUE, ModelKind, model_workflow_id, node_workflow_id  # noqa: E402
from workflows.model import ModelWorkflow  # noqa: E402
from workflows.node import NodeWorkflow  # noqa: E402

NODE_QUEUE = "bench-nodes"  # every stand-in node's work, on one worker
LIMIT_EVENTS, WARN_EVENTS = 51_200, 10_240  # Temporal's defaults (limit.historyCount.error/warn)
LIMIT_BYTES, WARN_BYTES = 50 * 1024 * 1024, 10 * 1024 * 1024  # limit.historySize.error/warn
LIMIT_PAYLOAD, WARN_PAYLOAD = 2 * 1024 * 1024, 512 * 1024  # limit.blobSize.error/warn


class DevServer(TemporalDevServer):
    """The dev server, optionally with `frontend.searchAttributesSizeOfValueLimit` raised (default
    2 KB, as on a production server), to measure what else happens once that limit is out of the way."""

    search_attribute_value_limit: int | None = None

    def command(self) -> list[str]:
        cmd = super().command()
        if self.search_attribute_value_limit:
            cmd += [
                "--dynamic-config-value",
                f"frontend.searchAttributesSizeOfValueLimit={self.search_attribute_value_limit}",
            ]
        return cmd


class WorkflowEnded(Exception):
    """The model's workflow closed while the benchmark waited (the server terminated it)."""


class StandIns:
    def __init__(self, nodes: list[str], metadata: dict[str, Any]) -> None:
        self.nodes = nodes
        self.metadata = metadata
        self.calls: Counter[str] = Counter()
        self.largest_status = 0
        self.statuses: list[dict[str, Any]] = []

    def control(self) -> list[Any]:
        @activity.defn(name="ensure_finalizer")
        def ensure_finalizer(_: object) -> bool:
            self.calls["ensure_finalizer"] += 1
            return True

        @activity.defn(name="release_finalizer")
        def release_finalizer(_: object) -> bool:
            return True

        @activity.defn(name="plan_placement")
        def plan_placement(_: PlanPlacementInput) -> PlanPlacementResult:
            self.calls["plan_placement"] += 1
            return PlanPlacementResult(eligible=list(self.nodes), existing_nodes=list(self.nodes))

        @activity.defn(name="write_spec_metadata")
        def write_spec_metadata(_: object) -> bool:
            self.calls["write_spec_metadata"] += 1
            return True

        @activity.defn(name="write_model_status")
        def write_model_status(inp: WriteModelStatusInput) -> bool:
            self.calls["write_model_status"] += 1
            self.largest_status = max(self.largest_status, len(json.dumps(inp.status)))
            self.statuses.append(inp.status)
            return True

        @activity.defn(name="set_node_model_status")
        def set_node_model_status(_: SetNodeModelStatusInput) -> None:
            self.calls["set_node_model_status"] += 1

        @activity.defn(name="remove_node_model_status")
        def remove_node_model_status(_: object) -> None:
            return None

        @activity.defn(name="ensure_node_worker")
        def ensure_node_worker(_: EnsureNodeWorkerInput) -> EnsureNodeWorkerResult:
            self.calls["ensure_node_worker"] += 1
            return EnsureNodeWorkerResult(task_queue=NODE_QUEUE, mode="static")

        @activity.defn(name="record_model_event")
        def record_model_event(_: RecordModelEventInput) -> RecordModelEventResult:
            self.calls["record_model_event"] += 1
            return RecordModelEventResult(recorded=True)

        @activity.defn(name="report_node_progress")
        async def report_node_progress(_: ReportNodeProgressInput) -> ReportNodeProgressResult:
            self.calls["report_node_progress"] += 1
            try:
                while True:
                    activity.heartbeat()
                    await asyncio.sleep(1.0)
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

    def node(self) -> list[Any]:
        @activity.defn(name="download_model")
        def download_model(inp: DownloadModelInput) -> DownloadModelResult:
            self.calls["download_model"] += 1
            version = inp.spec.storage.storage_uri.rsplit("/", 1)[-1]
            return DownloadModelResult(
                revision=version,
                version_id=version,
                total_bytes=16 * 10**9,
                bytes_transferred=16 * 10**9,
                files=7,
            )

        @activity.defn(name="verify_model")
        def verify_model(_: VerifyModelInput) -> VerifyModelResult:
            return VerifyModelResult(files=7, total_bytes=16 * 10**9)

        @activity.defn(name="activate_model_version")
        def activate_model_version(inp: ActivateModelVersionInput) -> ActivateModelVersionResult:
            kept = [] if inp.version_id == "v1" else ["v1"]
            return ActivateModelVersionResult(version_id=inp.version_id, kept=kept)

        @activity.defn(name="parse_model")
        def parse_model(_: ParseModelInput) -> ParseModelResult:
            return ParseModelResult(metadata=self.metadata)

        @activity.defn(name="remove_model_files")
        def remove_model_files(_: RemoveModelFilesInput) -> RemoveModelFilesResult:
            return RemoveModelFilesResult(removed=True, path="/raid/models/m")

        return [download_model, verify_model, activate_model_version, parse_model, remove_model_files]


def payload_sizes(message: Message) -> Iterator[int]:
    """The serialized size of every Payload anywhere inside `message`."""
    if isinstance(message, Payload):
        yield message.ByteSize()
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            if isinstance(item, Message):
                yield from payload_sizes(item)


def measure(history: WorkflowHistory) -> dict[str, Any]:
    largest, largest_event = 0, ""
    activities: Counter[str] = Counter()
    children = 0
    for event in history.events:
        for size in payload_sizes(event):
            if size > largest:
                largest, largest_event = size, EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            children += 1
    return {
        "events": len(history.events),
        "bytes": sum(e.ByteSize() for e in history.events),
        "largest_payload": largest,
        "largest_payload_in": largest_event,
        "activities": dict(activities),
        "children": children,
        "ends": EventType.Name(history.events[-1].event_type).removeprefix("EVENT_TYPE_"),
    }


async def model_runs(client: Client, workflow_id: str, first_run: str) -> list[dict[str, Any]]:
    runs, run_id = [], first_run
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        info = (await handle.describe()).raw_description.workflow_execution_info
        runs.append({"run_id": run_id, **measure(history), "server_history_bytes": info.history_size_bytes})
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else ""
        )
    return runs


async def node_histories(client: Client, model_id: str, nodes: list[str]) -> list[dict[str, Any]]:
    """The latest run of every node's workflow (each node has one run per delivery)."""
    gate = asyncio.Semaphore(16)

    async def one(node: str) -> dict[str, Any] | None:
        async with gate:
            handle = client.get_workflow_handle(node_workflow_id(model_workflow_id=model_id, node_name=node))
            try:
                return measure(await handle.fetch_history())
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return None  # never started (the model's workflow ended first)
                raise

    return [r for r in await asyncio.gather(*(one(n) for n in nodes)) if r is not None]


async def wait_all(handle: Any, *, count: int, version: str, timeout: float, started: float) -> float:
    """Seconds from `started` until every node is Ready on `version` and nothing runs."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            history = await handle.fetch_history()
            ended = history.events[-1]
            raise WorkflowEnded(
                f"{description.status.name} after {time.monotonic() - started:.1f} s, "
                f"{len(history.events)} events: {json_format.MessageToJson(ended)}"
            )
        try:
            nodes = await handle.query(ModelWorkflow.nodes)
            running = await handle.query(ModelWorkflow.running)
        except Exception as err:  # a query during continue-as-new can fail; ask again
            last = f"query failed: {err}"
            await asyncio.sleep(1.0)
            continue
        ready = sum(1 for o in nodes.values() if o.state == "Ready" and o.version_id == version)
        line = f"{ready}/{count} Ready on {version}, {len(running)} running"
        if line != last:
            print(f"  {time.monotonic() - started:7.1f} s  {line}", flush=True)
            last = line
        if ready == count and not running:
            return time.monotonic() - started
        await asyncio.sleep(1.0)
    raise SystemExit(f"not done after {timeout:.0f} s: {last}")


def source_revision(ref: ModelRef, generation: int, version: str) -> ModelRevision:
    return ModelRevision(
        generation=generation,
        uid=ref.uid,
        spec={"storage": {"storageUri": f"hf://org/{version}", "path": "/raid/models/m"}},
    )


def example_metadata() -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="mf-bench-scale-")) / "m"
    write_example_model(directory)
    return parse_model_dir(directory).metadata.model_dump(by_alias=True, exclude_none=True, mode="json")


def spread(values: list[int]) -> str:
    return f"min {min(values):,}, median {statistics.median(values):,.0f}, max {max(values):,}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = DevServer(ui_port=None)
    server.search_attribute_value_limit = args.search_attribute_value_limit
    server.start()
    try:
        await server.wait_ready()
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        nodes = [f"node-{i:04d}" for i in range(1, args.nodes + 1)]
        stand_ins = StandIns(nodes, example_metadata())
        pool = ThreadPoolExecutor(max_workers=args.nodes + 100)  # threads start only as needed
        control = Worker(
            client,
            task_queue=CONTROL_TASK_QUEUE,
            workflows=[ModelWorkflow, NodeWorkflow],
            activities=stand_ins.control(),
            activity_executor=pool,
            max_concurrent_activities=args.nodes + 100,  # progress reporters wait for their node
        )
        node_worker = Worker(
            client, task_queue=NODE_QUEUE, activities=stand_ins.node(), activity_executor=pool
        )
        ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="scale", uid=str(uuid.uuid4()))
        workflow_id = model_workflow_id(kind=ref.kind, namespace=None, name=ref.name)
        revision = source_revision(ref, 1, "v1")
        options = PipelineOptions(max_history_events=args.max_history_events)
        result: dict[str, Any] = {"nodes": args.nodes, "max_history_events": args.max_history_events}
        async with control, node_worker:
            started = time.monotonic()
            handle = await client.start_workflow(
                ModelWorkflow.run,
                ModelWorkflowInput(ref=ref, revision=revision, options=options),
                id=workflow_id,
                task_queue=CONTROL_TASK_QUEUE,
            )
            first_run = handle.result_run_id or ""
            limit = args.search_attribute_value_limit or "server default (2048)"
            print(
                f"{args.nodes} nodes, max_history_events {args.max_history_events}, "
                f"search attribute value limit {limit}: delivering v1"
            )
            try:
                result["seconds_to_ready"] = await wait_all(
                    handle, count=args.nodes, version="v1", timeout=args.timeout, started=started
                )
                result["status_writes_to_ready"] = stand_ins.calls["write_model_status"]
                if args.update:
                    print("generation 2 (another source): every node fetches v2 beside v1")
                    update_started = time.monotonic()
                    await handle.signal(ModelWorkflow.apply_revision, source_revision(ref, 2, "v2"))
                    result["seconds_to_update"] = await wait_all(
                        handle, count=args.nodes, version="v2", timeout=args.timeout, started=update_started
                    )
                await asyncio.sleep(3.0)  # let an idle loop past its limit continue as new
                result["state"] = await handle.query(ModelWorkflow.state)
            except WorkflowEnded as ended:
                result["ended"] = str(ended)
                print(f"THE MODEL'S WORKFLOW ENDED: {ended}")
            result["wall_seconds"] = time.monotonic() - started
            result["model_runs"] = await model_runs(client, workflow_id, first_run)
            result["node_runs"] = await node_histories(client, workflow_id, nodes)
            result["calls"] = dict(stand_ins.calls)
            result["largest_status_json"] = stand_ins.largest_status
            last = stand_ins.statuses[-1] if stand_ins.statuses else {}
            result["last_status_ready"] = len(last.get("nodesReady") or [])
            if "ended" not in result:
                await handle.terminate("benchmark done")
        return result
    finally:
        server.stop()


def report(result: dict[str, Any]) -> None:
    runs, node_runs = result["model_runs"], result["node_runs"]
    mb = 1024 * 1024
    print()
    print(f"nodes: {result['nodes']}; options.max_history_events: {result['max_history_events']}")
    print(
        f"Temporal defaults: {LIMIT_EVENTS:,} events / {LIMIT_BYTES // mb} MB per history run (warn at "
        f"{WARN_EVENTS:,} / {WARN_BYTES // mb} MB), {LIMIT_PAYLOAD // mb} MB per payload "
        f"(warn at {WARN_PAYLOAD // 1024} KB)"
    )
    print(
        f"wall time to all Ready: {result.get('seconds_to_ready', float('nan')):.1f} s"
        + (f"; update to v2: {result['seconds_to_update']:.1f} s" if "seconds_to_update" in result else "")
    )
    if "ended" in result:
        print(f"the model's workflow did not survive: {result['ended']}")
    print(
        f"model state: {result.get('state', 'ended')}; "
        f"last status lists {result['last_status_ready']} Ready node(s)"
    )
    print(f"model workflow runs: {len(runs)} ({len(runs) - 1} continue-as-new)")
    for i, r in enumerate(runs, 1):
        share_events = r["events"] / LIMIT_EVENTS
        share_bytes = r["server_history_bytes"] / LIMIT_BYTES
        print(
            f"  run {i}: {r['events']:,} events ({share_events:.1%} of the limit), "
            f"{r['server_history_bytes'] / mb:.2f} MB ({share_bytes:.1%}), ends {r['ends']}, "
            f"{r['children']} children; largest payload {r['largest_payload'] / 1024:.1f} KB "
            f"in {r['largest_payload_in']}"
        )
        print(f"         activities: {', '.join(f'{k} {v}' for k, v in sorted(r['activities'].items()))}")
    if not node_runs:
        return
    events = [n["events"] for n in node_runs]
    sizes = [n["bytes"] for n in node_runs]
    print(
        f"node workflows (latest run each, {len(node_runs)}): events {spread(events)}; bytes {spread(sizes)}"
    )
    largest = max([r["largest_payload"] for r in runs] + [n["largest_payload"] for n in node_runs])
    print(f"largest payload in any history: {largest / 1024:.1f} KB ({largest / LIMIT_PAYLOAD:.2%} of 2 MB)")
    print(f"largest status written: {result['largest_status_json'] / 1024:.1f} KB of JSON")
    print(f"stand-in calls: {', '.join(f'{k} {v}' for k, v in sorted(result['calls'].items()))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--max-history-events", type=int, default=PipelineOptions().max_history_events)
    parser.add_argument("--update", action="store_true", help="then a generation with another source")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per phase")
    parser.add_argument(
        "--search-attribute-value-limit",
        type=int,
        default=None,
        help="raise the server's frontend.searchAttributesSizeOfValueLimit (bytes) to measure past it",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_model_at_scale.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
