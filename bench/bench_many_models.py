"""Many models onto many nodes: what 200 models on 20 nodes cost the Kubernetes API, Temporal and
the processes, end to end.

    .venv/bin/python bench/bench_many_models.py [--models 200] [--nodes 20] [--groups 1]

The whole product as it is deployed, on one machine: the Temporal dev server (in memory), the
embedded API server (in this process), `modelferry controller` (watcher with leader election and
control worker, one process) and one `modelferry worker` process per simulated node (static mode,
each node with its own filesystem root). Every model is a ClusterBaseModel whose source is its own
tiny Llama checkpoint (~20 KB, the dev example's architecture at a smaller size, other weights per
model) on a PVC mapped to a local directory, so no network origin is involved and the figures are
the orchestration's. Nodes are labelled `bench.modelferry.io/group=0..G-1` round-robin and model i
selects group `i % G` through `spec.storage.nodeSelector`: `--groups 1` (the default) puts every
model on every node, the worst case for a node's labels and ConfigMap.

Each component reaches the API server on a port of its own (all serving the one store), so every
request is counted per component, verb and resource. An idle window before the models are applied
gives each component's background rate (leader Lease renewals), which is taken out of the
per-delivery figure.

Reports: time from the first apply to every model Ready on all its nodes, and to every model
settled (parsed metadata written into the spec, status current); API requests per delivery (one
model on one node) and the peak request rate; Temporal events per model run and per node workflow,
the largest of each, and the largest payload in any history; peak and final RSS of the controller,
the node workers, the Temporal server and this process (which holds the API server); the biggest
per-node report (ConfigMap bytes, with overflow ConfigMaps) and the node label count. Raw figures
go to bench/out/bench_many_models.json. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from bench_model_at_scale import measure  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as kube_config  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from temporalio.api.enums.v1 import EventType, TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from modelferry.apiserver import EmbeddedApiServer  # noqa: E402
from modelferry.apiserver.endpoints import ApiEndpoints, ApiRequest, ApiResponse, WatchStream  # noqa: E402
from modelferry.apiserver.handler import ApiHttpServer  # noqa: E402
from modelferry.apiserver.routing import parse_resource_path  # noqa: E402
from modelferry.commands.runtime import CONTROL_ACTIVITY_SLOTS  # noqa: E402
from modelferry.dev.example import _CONFIG, _tensors  # noqa: E402
from modelferry.dev.stack import DevOptions, crd_manifests, dev_settings  # noqa: E402
from modelferry.dev.temporal_server import TemporalDevServer, free_port  # noqa: E402
from modelferry.names import (  # noqa: E402
    API_GROUP,
    API_VERSION,
    CONTROL_TASK_QUEUE,
    OME_LABEL_DOMAIN,
    node_task_queue,
)
from modelferry.reportsplit import data_size, entry_size, overflow_index  # noqa: E402

GROUP_LABEL = "bench.modelferry.io/group"
CLAIM = "bench"
PLURAL = "clusterbasemodels"
# The dev example's architecture, small: ~20 KB of weights, a parse like a real checkpoint's.
TINY_CONFIG = {
    **_CONFIG,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "vocab_size": 64,
}
COMPONENTS = ("controller", "node workers", "bench")


# --- counting requests at the API server ---------------------------------------------------------


class RequestCounts:
    """Requests by component, verb and resource, and by component and second (for the peak rate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_kind: Counter[tuple[str, str, str]] = Counter()
        self.by_second: Counter[tuple[str, int]] = Counter()

    def add(self, component: str, req: ApiRequest) -> None:
        verb, what = classify(req)
        with self._lock:
            self.by_kind[(component, verb, what)] += 1
            self.by_second[(component, int(time.monotonic()))] += 1

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            return Counter(self.by_kind)

    def peak_rate(self, component: str, *, start: float, end: float, window: int) -> float:
        """The highest mean rate (requests/s) over `window` consecutive seconds in [start, end]."""
        with self._lock:
            per = [self.by_second[(component, s)] for s in range(int(start), int(end) + 1)]
        if not per:
            return 0.0
        sums = [sum(per[i : i + window]) for i in range(max(1, len(per) - window + 1))]
        return max(sums) / min(window, len(per))


def classify(req: ApiRequest) -> tuple[str, str]:
    """(verb, resource[/subresource]) as Kubernetes' audit log would name them."""
    route = parse_resource_path(req.path.rstrip("/"))
    if route is None:
        return req.method.lower(), "discovery"
    what = route.plural + (f"/{route.subresource}" if route.subresource else "")
    if route.watch_path or req.query.get("watch") in ("true", "1"):
        return "watch", what
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if req.method == "GET":
        return ("get" if route.name else "list"), what
    return verbs.get(req.method, req.method.lower()), what


class CountingEndpoints(ApiEndpoints):
    def __init__(self, inner: ApiEndpoints, *, counts: RequestCounts, component: str) -> None:
        self.__dict__.update(inner.__dict__)
        self._counts, self._component = counts, component

    def handle(self, req: ApiRequest) -> ApiResponse | WatchStream:
        self._counts.add(self._component, req)
        return super().handle(req)


@dataclass
class Door:
    """One component's own port onto the embedded API server's store."""

    component: str
    httpd: ApiHttpServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "bench", "cluster": {"server": self.url}}],
            "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
            "current-context": "bench",
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def close(self) -> None:
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.close_connections()
        self.httpd.server_close()
        self.thread.join()


def open_door(api: EmbeddedApiServer, *, component: str, counts: RequestCounts) -> Door:
    httpd = ApiHttpServer(("127.0.0.1", 0), store=api.store, bookmark_interval=30.0)
    httpd.endpoints = CountingEndpoints(httpd.endpoints, counts=counts, component=component)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"api-{component}", daemon=True
    )
    thread.start()
    return Door(component, httpd, thread)


# --- processes and their memory ------------------------------------------------------------------


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in bytes; (0, 0) once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values: dict[str, int] = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) * 1024  # reported in kB
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class Role:
    name: str  # "controller" or the node's name
    proc: subprocess.Popen[bytes]
    peak_rss: int = 0
    last_rss: int = 0
    cpu_seconds: float = 0.0

    def sample(self) -> None:
        rss, hwm = proc_memory(self.proc.pid)
        if rss:
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss, hwm)
            self.cpu_seconds = proc_cpu_seconds(self.proc.pid)


# `modelferry ARGS` with the Temporal SDK's workflow cache (`max_cached_workflows`, 1,000 by
# default, not a setting of ours) set for every worker of the process: an experiment, `--workflow-cache`.
_WITH_WORKFLOW_CACHE = """
import functools, sys
import temporalio.worker
size = int(sys.argv.pop(1))
init = temporalio.worker.Worker.__init__
@functools.wraps(init)
def sized(self, *args, **kwargs):
    kwargs["max_cached_workflows"] = size
    init(self, *args, **kwargs)
temporalio.worker.Worker.__init__ = sized
from modelferry.cli import main
sys.exit(main())
"""


def spawn(args: list[str], *, log: Path, workflow_cache: int | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFERRY_")}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "modelferry.cli"]
    if workflow_cache is not None:
        command = [sys.executable, "-c", _WITH_WORKFLOW_CACHE, str(workflow_cache)]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*command, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


def cpu_now(roles: list[Role], temporal: TemporalDevServer) -> dict[str, float]:
    """CPU seconds so far: the controller, all node workers together, the Temporal server, and this
    process (the embedded API server's threads and the bench's polling)."""
    for role in roles:
        role.sample()
    return {
        "controller": roles[0].cpu_seconds,
        "node workers": sum(r.cpu_seconds for r in roles[1:]),
        "temporal server": proc_cpu_seconds(temporal.process.pid) if temporal.process else 0.0,
        "api server + bench": time.process_time(),
    }


def control_slots_used(port: int) -> float | None:
    """The controller's `modelferry_worker_activity_slots_used` for the control queue, from /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("modelferry_worker_activity_slots_used{") and CONTROL_TASK_QUEUE in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def write_settings(path: Path, settings: Any) -> Path:
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return path


# --- the models ----------------------------------------------------------------------------------


def write_tiny_model(directory: Path, *, seed: int) -> None:
    directory.mkdir(parents=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in _tensors(TINY_CONFIG, seed=seed).items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(TINY_CONFIG, indent=2) + "\n")


def model_resource(index: int, *, groups: int) -> dict[str, Any]:
    name = f"bench-{index:04d}"
    storage: dict[str, Any] = {"storageUri": f"pvc://default:{CLAIM}/{name}", "path": f"/raid/models/{name}"}
    storage["nodeSelector"] = {GROUP_LABEL: str(index % groups)}
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"vendor": "bench", "version": "1.0.0", "storage": storage},
    }


@dataclass
class Progress:
    expected: dict[str, int]  # model name -> nodes it selects
    ready_at: dict[str, float] = field(default_factory=dict)  # Ready on all its nodes (any generation)
    settled_at: dict[str, float] = field(default_factory=dict)  # ... and metadata written, status current
    failed: dict[str, Any] = field(default_factory=dict)

    def observe(self, items: list[dict[str, Any]], now: float) -> None:
        for obj in items:
            name, status = obj["metadata"]["name"], obj.get("status") or {}
            if name not in self.expected:
                continue
            if status.get("nodesFailed"):
                self.failed[name] = status
            full = (
                status.get("state") == "Ready" and len(status.get("nodesReady") or []) == self.expected[name]
            )
            if full:
                self.ready_at.setdefault(name, now)
                current = status.get("observedGeneration") == obj["metadata"].get("generation")
                if current and "modelArchitecture" in obj["spec"]:
                    self.settled_at.setdefault(name, now)


# --- Temporal -------------------------------------------------------------------------------------


async def wait_pollers(
    client: Client, queues: list[tuple[str, TaskQueueType.ValueType]], *, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    for queue, kind in queues:
        while True:
            answer = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind
                )
            )
            if answer.pollers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no worker polls {queue} after {timeout:.0f} s")
            await asyncio.sleep(0.5)


_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
}


def activity_timings(history: WorkflowHistory) -> dict[str, dict[str, list[float]]]:
    """By activity type: seconds waiting for a worker slot (`wait`, scheduled to started), holding
    it (`held`, started to closed) and, for a cancelled one, from the cancel request to its close
    (`cancel_lag`). An activity still open when its workflow closed has no `held`."""
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    cancel_requested: dict[int, float] = {}
    out: dict[str, dict[str, list[float]]] = {}

    def add(name: str, what: str, seconds: float) -> None:
        out.setdefault(name, {}).setdefault(what, []).append(seconds)

    for event in history.events:
        at = event.event_time.ToDatetime().timestamp()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            sid = event.activity_task_started_event_attributes.scheduled_event_id
            started[sid] = at
            add(scheduled[sid][0], "wait", at - scheduled[sid][1])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
            cancel_requested[event.activity_task_cancel_requested_event_attributes.scheduled_event_id] = at
        elif kind in _CLOSED:
            sid = getattr(event, _CLOSED[kind]).scheduled_event_id
            if sid in started:
                add(scheduled[sid][0], "held", at - started[sid])
            if sid in cancel_requested:
                add(scheduled[sid][0], "cancel_lag", at - cancel_requested[sid])
    return out


async def histories(client: Client, workflow_type: str) -> list[dict[str, Any]]:
    """Every run of every workflow of `workflow_type`, measured (events, bytes, largest payload,
    schedule-to-start of each activity)."""
    runs = [(w.id, w.run_id) async for w in client.list_workflows(f"WorkflowType = '{workflow_type}'")]
    gate = asyncio.Semaphore(8)

    async def one(workflow_id: str, run_id: str) -> dict[str, Any]:
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            return {"id": workflow_id, **measure(history), "timings": activity_timings(history)}

    return list(await asyncio.gather(*(one(w, r) for w, r in runs)))


# --- the run --------------------------------------------------------------------------------------


def node_reports(core: Any, namespace: str) -> dict[str, dict[str, Any]]:
    """Per node: its primary ConfigMap's bytes and entries, and its overflow ConfigMaps'."""
    out: dict[str, dict[str, Any]] = {}
    for cm in core.list_namespaced_config_map(namespace).items:
        name, data = cm.metadata.name, dict(cm.data or {})
        node = name.split(".modelferry-")[0] if overflow_index(name) else name
        row = out.setdefault(
            node,
            {"primary_bytes": 0, "primary_entries": 0, "overflows": 0, "total_bytes": 0, "entry_bytes": {}},
        )
        row["total_bytes"] += data_size(data)
        for key, value in data.items():  # OME's keys name the kind (`clusterbasemodel.NAME`)
            fmt = "ome" if key.startswith("clusterbasemodel.") or ".basemodel." in key else "docs"
            row["entry_bytes"].setdefault(fmt, []).append(entry_size(key, value))
        if overflow_index(name):
            row["overflows"] += 1
        else:
            row["primary_bytes"], row["primary_entries"] = data_size(data), len(data)
    return out


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):.2f}, p95 {p95:.2f}, max {ordered[-1]:.2f} (n={len(ordered)})"


def spread(values: list[float], fmt: Callable[[float], str] = lambda v: f"{v:,.0f}") -> str:
    if not values:
        return "none"
    return f"min {fmt(min(values))}, median {fmt(statistics.median(values))}, max {fmt(max(values))}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mf-bench-many-"))
    claim = work / "claim"
    for i in range(args.models):
        write_tiny_model(claim / f"bench-{i:04d}", seed=i)
    nodes = [f"node-{i:03d}" for i in range(1, args.nodes + 1)]
    group_of = {n: i % args.groups for i, n in enumerate(nodes)}
    temporal = TemporalDevServer(ui_port=None, log_file=work / "temporal.log")
    api = EmbeddedApiServer()
    counts = RequestCounts()
    doors: dict[str, Door] = {}
    roles: list[Role] = []
    result: dict[str, Any] = {"models": args.models, "nodes": args.nodes, "groups": args.groups}
    temporal.start()
    api.start()
    try:
        for crd in crd_manifests():
            api.apply_manifest(crd)
        for name in nodes:
            api.add_node(name, {GROUP_LABEL: str(group_of[name])})
        doors = {c: open_door(api, component=c, counts=counts) for c in COMPONENTS}
        kubeconfigs = {c: d.kubeconfig(work / f"kubeconfig-{c.replace(' ', '-')}") for c, d in doors.items()}
        await temporal.wait_ready()
        metrics_port = free_port()
        opts = DevOptions(
            home=work,
            pvcs={f"default:{CLAIM}": claim},
            nodes=args.nodes,
            settings={
                "health.port": metrics_port,  # the controller's /metrics: its activity slots in use
                "health.worker_port": None,
                "kube.report_formats": args.report_formats,
            },
        )
        controller_settings = dev_settings(
            opts, temporal_address=temporal.address, kubeconfig=kubeconfigs["controller"]
        )
        result["report_formats"] = controller_settings.kube.report_formats.value
        agent_namespace = controller_settings.kube.agent_namespace
        roles.append(
            Role(
                "controller",
                spawn(
                    [
                        "controller",
                        "--config",
                        str(write_settings(work / "controller.yaml", controller_settings)),
                        "--identity",
                        "bench",
                    ],
                    log=work / "controller.log",
                    workflow_cache=args.workflow_cache,
                ),
            )
        )
        for name in nodes:
            root = work / "nodes" / name
            root.mkdir(parents=True)
            settings = dev_settings(
                opts,
                temporal_address=temporal.address,
                kubeconfig=kubeconfigs["node workers"],
                node_root=root,
            )
            config = write_settings(work / f"worker-{name}.yaml", settings)
            roles.append(
                Role(
                    name,
                    spawn(
                        ["worker", "--node", name, "--config", str(config)], log=work / f"worker-{name}.log"
                    ),
                )
            )
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        queues = [(CONTROL_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)]
        queues += [(node_task_queue(n), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY) for n in nodes]
        started = time.monotonic()
        await wait_pollers(client, queues, timeout=120 + 3 * args.nodes)
        print(f"{len(roles)} processes up in {time.monotonic() - started:.1f} s; work dir {work}", flush=True)

        sampler_stop = asyncio.Event()
        slots: list[tuple[float, float]] = []  # (monotonic time, control activity slots in use)

        async def sample_memory() -> None:
            while not sampler_stop.is_set():
                for role in roles:
                    role.sample()
                used = await asyncio.to_thread(control_slots_used, metrics_port)
                if used is not None:
                    slots.append((time.monotonic(), used))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample_memory())
        idle_start, before_idle = time.monotonic(), counts.snapshot()
        await asyncio.sleep(args.idle_seconds)
        idle_seconds = time.monotonic() - idle_start
        idle = counts.snapshot() - before_idle
        result["idle_requests_per_second"] = {
            c: sum(v for (comp, _, _), v in idle.items() if comp == c) / idle_seconds for c in COMPONENTS[:2]
        }
        result["idle_requests"] = {f"{c} {v} {w}": n for (c, v, w), n in idle.items()}

        api_client = kube_config.new_client_from_config(config_file=str(kubeconfigs["bench"]))
        custom, core = k8s.CustomObjectsApi(api_client), k8s.CoreV1Api(api_client)
        objs = [model_resource(i, groups=args.groups) for i in range(args.models)]
        expected = {
            o["metadata"]["name"]: sum(1 for n in nodes if group_of[n] == i % args.groups)
            for i, o in enumerate(objs)
        }
        deliveries = sum(expected.values())
        result["deliveries"] = deliveries
        progress = Progress(expected)
        before = counts.snapshot()
        cpu_before = cpu_now(roles, temporal)
        t0 = time.monotonic()
        for obj in objs:
            await asyncio.to_thread(custom.create_cluster_custom_object, API_GROUP, API_VERSION, PLURAL, obj)
        result["seconds_to_apply"] = time.monotonic() - t0
        print(
            f"applied {args.models} models ({deliveries} deliveries) in {result['seconds_to_apply']:.1f} s",
            flush=True,
        )
        last_line = 0.0
        while len(progress.settled_at) < args.models:
            now = time.monotonic()
            if now - t0 > args.timeout:
                result["timed_out"] = True
                print(f"TIMEOUT after {args.timeout:.0f} s", flush=True)
                break
            listed = await asyncio.to_thread(
                custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL
            )
            progress.observe(listed["items"], now - t0)
            if now - last_line >= 10:
                last_line = now
                print(
                    f"  {now - t0:6.0f} s  {len(progress.ready_at)}/{args.models} Ready on all their nodes, "
                    f"{len(progress.settled_at)} settled, {len(progress.failed)} with failed nodes",
                    flush=True,
                )
            await asyncio.sleep(args.poll_seconds)
        done = time.monotonic()
        cpu_after = cpu_now(roles, temporal)
        result["cpu_seconds"] = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
        window = [u for t, u in slots if t0 <= t <= done]
        result["control_slots_used"] = {
            "max": max(window, default=0),
            "mean": statistics.fmean(window) if window else 0.0,
            "share_of_samples_at_max_slots": (
                sum(1 for u in window if u >= CONTROL_ACTIVITY_SLOTS) / len(window) if window else 0.0
            ),
            "slots": CONTROL_ACTIVITY_SLOTS,
        }
        await asyncio.sleep(args.quiet_seconds)  # writes a settled model still makes (its last status)
        end = time.monotonic()
        during = counts.snapshot() - before
        result["failed"] = progress.failed
        result["seconds_to_all_ready"] = max(progress.ready_at.values(), default=float("nan"))
        result["seconds_to_all_settled"] = max(progress.settled_at.values(), default=float("nan"))
        result["seconds_ready_spread"] = sorted(progress.ready_at.values())
        result["window_seconds"] = end - t0
        requests: dict[str, Any] = {}
        for comp in COMPONENTS[:2]:
            total = sum(v for (c, _, _), v in during.items() if c == comp)
            background = result["idle_requests_per_second"][comp] * (end - t0)
            requests[comp] = {
                "total": total,
                "background_estimate": background,
                "less_background": total - background,
                "peak_per_second_1s": counts.peak_rate(comp, start=t0, end=done, window=1),
                "peak_per_second_10s": counts.peak_rate(comp, start=t0, end=done, window=10),
                "mean_per_second": total / (done - t0),
                "by_kind": {f"{v} {w}": n for (c, v, w), n in sorted(during.items()) if c == comp},
            }
        result["requests"] = requests

        sampler_stop.set()
        await sampler
        for role in roles:
            role.sample()
        workers = [r for r in roles if r.name != "controller"]
        controller = roles[0]
        result["rss"] = {
            "controller_peak": controller.peak_rss,
            "controller_end": controller.last_rss,
            "node_worker_peak": [r.peak_rss for r in workers],
            "node_worker_end": [r.last_rss for r in workers],
            "temporal_server_end": proc_memory(temporal.process.pid)[0] if temporal.process else 0,
            "temporal_server_peak": proc_memory(temporal.process.pid)[1] if temporal.process else 0,
            "bench_and_api_server_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }

        log_text = (work / "controller.log").read_text(errors="replace")
        result["workflow_cache"] = args.workflow_cache or 1000
        result["slow_workflow_tasks"] = log_text.count("TMPRL1104")  # the SDK: a task took over 5 s
        result["lost_workflow_tasks"] = log_text.count("Task not found when completing")  # timed out
        reports = node_reports(core, agent_namespace)
        result["node_reports"] = reports
        labels = {n.metadata.name: dict(n.metadata.labels or {}) for n in core.list_node().items}
        result["node_labels"] = {
            name: {
                "all": len(v),
                "models": sum(1 for k in v if k.startswith(("models.ome/", f"{OME_LABEL_DOMAIN}/"))),
            }
            for name, v in labels.items()
        }
        print("reading every workflow history ...", flush=True)
        result["model_runs"] = await histories(client, "ModelWorkflow")
        result["node_runs"] = await histories(client, "NodeWorkflow")
        # Deliveries done: every one when all settled; after a timeout, the node workflows that
        # completed (the per-delivery figures divide by this).
        completed = sum(1 for n in result["node_runs"] if n["ends"] == "WORKFLOW_EXECUTION_COMPLETED")
        result["deliveries_done"] = deliveries if not result.get("timed_out") else completed
        for q in requests.values():
            q["per_delivery"] = q["less_background"] / max(1, result["deliveries_done"])
        return result
    finally:
        for role in roles:
            if role.proc.poll() is None:
                role.proc.send_signal(signal.SIGTERM)
        for role in roles:
            try:
                role.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                role.proc.kill()
                role.proc.wait()
        for door in doors.values():
            door.close()
        api.stop()
        temporal.stop()
        if args.keep:
            print(f"logs and state kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    mib, kib = 1024 * 1024, 1024
    print()
    print(
        f"{r['models']} models x {r['nodes']} nodes, {r['groups']} node group(s): "
        f"{r['deliveries']} deliveries; "
        f"report formats {r['report_formats']}"
    )
    if r.get("timed_out"):
        print(
            f"TIMED OUT with {r['deliveries_done']} deliveries done: the figures below cover what was "
            "done by then (per delivery: per node workflow completed)"
        )
    if r["failed"]:
        print(f"models with failed nodes: {len(r['failed'])} (first: {next(iter(r['failed'].items()))})")
    print(f"apply (all creates): {r['seconds_to_apply']:.1f} s")
    print(
        f"first apply -> all Ready on every node: {r['seconds_to_all_ready']:.1f} s "
        f"({r['deliveries'] / r['seconds_to_all_ready']:.1f} deliveries/s)"
    )
    ready = r["seconds_ready_spread"]
    if ready:
        print(f"  per model apply->Ready: {spread(ready, lambda v: f'{v:.1f} s')}")
    print(
        "first apply -> all settled (metadata in the spec, status current): "
        f"{r['seconds_to_all_settled']:.1f} s"
    )
    for comp, q in r["requests"].items():
        print(
            f"API requests, {comp}: {q['total']:,} in {r['window_seconds']:.0f} s "
            f"(idle background ~{q['background_estimate']:.0f}); {q['per_delivery']:.1f} per delivery; "
            f"mean {q['mean_per_second']:.1f}/s, peak {q['peak_per_second_10s']:.1f}/s over 10 s, "
            f"{q['peak_per_second_1s']:.0f} in 1 s"
        )
        top = sorted(q["by_kind"].items(), key=lambda kv: -kv[1])
        print(
            "    "
            + ", ".join(f"{k} {v / r['deliveries_done']:.2f}" for k, v in top if v >= 1)
            + "  (per delivery)"
        )
    idle = ", ".join(f"{c} {v:.2f}/s" for c, v in r["idle_requests_per_second"].items())
    print(f"  idle background: {idle}")
    model_runs, node_runs = r["model_runs"], r["node_runs"]
    per_model: Counter[str] = Counter()
    for run_ in model_runs:
        per_model[run_["id"]] += 1
    events = [m["events"] for m in model_runs]
    print(
        f"model workflow runs: {len(model_runs)} for {len(per_model)} models "
        f"({sum(per_model.values()) - len(per_model)} continue-as-new); events per run {spread(events)}"
    )
    print(f"  bytes per run: {spread([m['bytes'] for m in model_runs], lambda v: f'{v / kib:.1f} KB')}")
    node_events = [n["events"] for n in node_runs]
    print(f"node workflow runs: {len(node_runs)}; events per run {spread(node_events)}")
    print(f"  bytes per run: {spread([n['bytes'] for n in node_runs], lambda v: f'{v / kib:.1f} KB')}")
    everything = model_runs + node_runs
    if everything:
        big = max(everything, key=lambda h: h["largest_payload"])
        print(
            f"largest payload in any history: {big['largest_payload'] / kib:.1f} KB "
            f"in {big['largest_payload_in']} of {big['id']}"
        )
    slots = r["control_slots_used"]
    print(
        f"control worker activity slots in use (1 s samples): max {slots['max']:.0f} of {slots['slots']}, "
        f"mean {slots['mean']:.1f}; all {slots['slots']} busy in "
        f"{slots['share_of_samples_at_max_slots']:.0%} of samples"
    )
    timings: dict[str, dict[str, list[float]]] = {}
    for h in everything:
        for name, kinds in h["timings"].items():
            for what, values in kinds.items():
                timings.setdefault(name, {}).setdefault(what, []).extend(values)
    print("activities (seconds; wait: scheduled to started, held: started to closed, cancel lag):")
    for name, kinds in sorted(timings.items(), key=lambda kv: -statistics.median(kv[1].get("wait", [0.0]))):
        print(
            f"  {name}: " + "; ".join(f"{what} {quantiles(values)}" for what, values in sorted(kinds.items()))
        )
    print(
        f"control worker workflow tasks (cache {r['workflow_cache']}): {r['slow_workflow_tasks']} took over "
        f"5 s, {r['lost_workflow_tasks']} timed out before completing"
    )
    cpu = ", ".join(f"{k} {v:.0f} s" for k, v in r["cpu_seconds"].items())
    print(f"CPU seconds from first apply to all settled: {cpu}")
    rss = r["rss"]
    print(
        f"RSS controller (watcher + control worker): peak {rss['controller_peak'] / mib:.0f} MiB, "
        f"end {rss['controller_end'] / mib:.0f} MiB"
    )
    print(f"RSS node worker, peak: {spread(rss['node_worker_peak'], lambda v: f'{v / mib:.0f} MiB')}")
    print(f"RSS node worker, end:  {spread(rss['node_worker_end'], lambda v: f'{v / mib:.0f} MiB')}")
    print(
        f"RSS Temporal dev server (in memory): peak {rss['temporal_server_peak'] / mib:.0f} MiB, "
        f"end {rss['temporal_server_end'] / mib:.0f} MiB"
    )
    print(
        "RSS this process (embedded API server + bench): "
        f"peak {rss['bench_and_api_server_peak'] / mib:.0f} MiB"
    )
    reports = r["node_reports"]
    if reports:
        node, biggest = max(reports.items(), key=lambda kv: kv[1]["total_bytes"])
        print(
            f"biggest node report: {node}: {biggest['total_bytes'] / kib:.1f} KiB in all, primary ConfigMap "
            f"{biggest['primary_bytes'] / kib:.1f} KiB with {biggest['primary_entries']} entries, "
            f"{biggest['overflows']} overflow ConfigMap(s)"
        )
        for fmt, sizes in sorted(biggest["entry_bytes"].items()):
            print(f"  {fmt}-format entries: {len(sizes)}, bytes each {spread(sizes)}")
    labels = r["node_labels"]
    if labels:
        most = max(labels.items(), key=lambda kv: kv[1]["all"])
        print(f"most node labels: {most[0]}: {most[1]['all']} ({most[1]['models']} model labels)")


async def run_cancellable(args: argparse.Namespace) -> dict[str, Any]:
    """`run`, cancelled by SIGTERM or SIGINT (ignored in a background job) so that its cleanup
    stops every process it started."""
    task = asyncio.ensure_future(run(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--groups", type=int, default=1, help="node groups; model i selects group i %% G")
    parser.add_argument("--report-formats", choices=["both", "docs", "ome"], default="both")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds from the first apply")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="background rate window")
    parser.add_argument("--quiet-seconds", type=float, default=5.0, help="after the last model settled")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="status polling (one list)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, settings)")
    parser.add_argument(
        "--workflow-cache",
        type=int,
        default=None,
        help="experiment: the control worker's max_cached_workflows (SDK default 1000)",
    )
    args = parser.parse_args()
    if not 1 <= args.groups <= args.nodes:
        parser.error("--groups must be between 1 and --nodes")
    result = asyncio.run(run_cancellable(args))
    report(result)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_many_models.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
