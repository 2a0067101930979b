"""A whole modelferry on one machine for end-to-end tests: a Kubernetes API (the embedded API
server, or the real control plane of tests/controlplane with process kubelets: `fixtures.py`), a
real Temporal dev server, the watcher, the control worker and one node worker per node (each node
with its own filesystem root).

On the real control plane the components authenticate as deploy/rbac's ServiceAccounts (the
watcher and the control worker as `modelferry-controller`, the node workers as
`modelferry-node-worker`) while the test itself acts as a cluster admin, so whatever RBAC
refuses a component shows up as the failure it would be in a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException
from temporalio.client import Client
from temporalio.worker import Worker

from activities.kube import KubeClient
from modelferry.admission import admission_policy
from modelferry.apiserver import EmbeddedApiServer
from modelferry.commands.runtime import build_control_worker, build_node_worker, connect_temporal
from modelferry.dev.stack import crd_manifests
from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.names import API_GROUP, API_VERSION, ModelKind
from modelferry.options import pipeline_options
from modelferry.settings import Settings, WorkerMode, load_settings
from watcher.run import run_watcher
from watcher.temporal import TemporalGateway

# Settings overrides that make a failing test fail in seconds; a test adds its own (`overrides=`).
FAST_SETTINGS: dict[str, Any] = {
    "worker.schedule_to_start_seconds": 20.0,
    "pipeline.failed_node_retry_seconds": 3600.0,
    "pipeline.download_heartbeat_seconds": 4.0,
    "download.stall_timeout": 10.0,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def cluster_model(name: str, *, uri: str, path: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"vendor": "test", "version": "1.0.0", "storage": {"storageUri": uri, "path": path}, **spec},
    }


@dataclass
class Cluster:
    """`kubeconfig` is the test's own identity (an admin); the components use theirs, which on the
    embedded server (no authorization) are the same file."""

    api: EmbeddedApiServer | None  # None: a real cluster
    kubeconfig: Path
    controller_kubeconfig: Path | None = None  # the watcher and the control worker; None: `kubeconfig`
    node_worker_kubeconfig: Path | None = None  # the node workers; None: `kubeconfig`

    def api_client(self) -> k8s.ApiClient:
        return kube_config.new_client_from_config(config_file=str(self.kubeconfig))

    def controller_api_client(self) -> k8s.ApiClient:
        return kube_config.new_client_from_config(
            config_file=str(self.controller_kubeconfig or self.kubeconfig)
        )

    def node_worker_api_client(self) -> k8s.ApiClient:
        return kube_config.new_client_from_config(
            config_file=str(self.node_worker_kubeconfig or self.kubeconfig)
        )


@contextlib.contextmanager
def embedded_cluster(tmp: Path, nodes: dict[str, dict[str, str]]):  # type: ignore[no-untyped-def]
    api = EmbeddedApiServer(nodes=[])
    api.start()
    try:
        for crd in crd_manifests():
            api.apply_manifest(crd)
        for name, labels in nodes.items():
            api.add_node(name, labels)
        kubeconfig = tmp / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        yield Cluster(api=api, kubeconfig=kubeconfig)
    finally:
        api.stop()


@dataclass
class Pipeline:
    cluster: Cluster
    temporal: TemporalDevServer
    client: Client
    settings: Settings
    node_roots: dict[str, Path]
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    node_workers: dict[str, tuple[Worker, asyncio.Task[Any]]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.api_client = self.cluster.api_client()
        self.core = k8s.CoreV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    # --- node workers -----------------------------------------------------------------------

    def node_settings(self, node: str) -> Settings:
        return self.settings.model_copy(
            update={"node": self.settings.node.model_copy(update={"root": self.node_roots[node]})}
        )

    def start_node_worker(self, node: str) -> None:
        worker = build_node_worker(
            client=self.client,
            node=node,
            kube=KubeClient(self.cluster.node_worker_api_client()),
            settings=self.node_settings(node),
        )
        self.node_workers[node] = (worker, asyncio.create_task(worker.run(), name=f"node-{node}"))

    async def stop_node_worker(self, node: str) -> None:
        worker, task = self.node_workers.pop(node)
        await worker.shutdown()
        with contextlib.suppress(BaseException):
            await task

    # --- resources --------------------------------------------------------------------------

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = ModelKind(obj["kind"])
        return await asyncio.to_thread(
            self.custom.create_cluster_custom_object, API_GROUP, API_VERSION, kind.plural, obj
        )

    async def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        kind = ModelKind(obj["kind"])
        try:
            return await asyncio.to_thread(
                self.custom.get_cluster_custom_object,
                API_GROUP,
                API_VERSION,
                kind.plural,
                obj["metadata"]["name"],
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        kind = ModelKind(obj["kind"])
        return await asyncio.to_thread(
            self.custom.patch_cluster_custom_object,
            API_GROUP,
            API_VERSION,
            kind.plural,
            obj["metadata"]["name"],
            patch,
        )

    async def delete(self, obj: dict[str, Any]) -> None:
        kind = ModelKind(obj["kind"])
        await asyncio.to_thread(
            self.custom.delete_cluster_custom_object,
            API_GROUP,
            API_VERSION,
            kind.plural,
            obj["metadata"]["name"],
        )

    async def wait_for(
        self, probe: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await probe() if asyncio.iscoroutinefunction(probe) else await asyncio.to_thread(probe)
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    async def wait_state(self, obj: dict[str, Any], state: str, *, timeout: float = 60.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            got = await self.get(obj)
            status = (got or {}).get("status") or {}
            if (
                got
                and status.get("state") == state
                and status.get("observedGeneration") == got["metadata"]["generation"]
            ):
                return got
            return None

        try:
            return await self.wait_for(probe, timeout=timeout, what=f"{obj['metadata']['name']} {state}")
        except AssertionError as e:
            raise AssertionError(
                f"{e}; status now: {json.dumps(((await self.get(obj)) or {}).get('status'))}"
            ) from None

    def configmap_entry(self, node: str, key: str) -> dict[str, Any] | None:
        try:
            cm = self.core.read_namespaced_config_map(node, self.settings.kube.agent_namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        value = (cm.data or {}).get(key)
        return json.loads(value) if value else None

    def node_labels(self, node: str) -> dict[str, str]:
        return dict(self.core.read_node(node).metadata.labels or {})

    def label_node(self, node: str, labels: dict[str, str | None]) -> None:
        self.core.patch_node(node, {"metadata": {"labels": labels}})


@contextlib.asynccontextmanager
async def running_pipeline(
    *,
    cluster: Cluster,
    tmp: Path,
    nodes: list[str],
    pvcs: dict[str, Path] | None = None,
    worker_mode: WorkerMode = WorkerMode.STATIC,
    start_node_workers: bool = True,
    overrides: dict[str, Any] | None = None,
    temporal_db: Path | None = None,
) -> AsyncIterator[Pipeline]:
    """`overrides`: dotted settings over FAST_SETTINGS; the watcher hands the workflows their
    `pipeline_options`, as the controller does. `temporal_db`: persist Temporal's state there (a
    test that restarts the server needs it)."""
    temporal = TemporalDevServer(db_file=temporal_db, ui_port=None, log_file=tmp / "temporal.log")
    temporal.start()
    try:
        await temporal.wait_ready()
        settings = load_settings(
            environ={},
            overrides={
                **FAST_SETTINGS,
                "temporal.address": temporal.address,
                "kube.kubeconfig": str(cluster.controller_kubeconfig or cluster.kubeconfig),
                "worker.mode": worker_mode.value,
                "node.pvc_mounts": {k: str(v) for k, v in (pvcs or {}).items()},
                # The e2e models read claims in `default`, as a cluster admin would allow.
                "policy.cluster_claim_namespaces": ["default"],
                **(overrides or {}),
            },
        )
        client = await connect_temporal(settings)
        roots = {n: tmp / "nodes" / n for n in nodes}
        for root in roots.values():
            root.mkdir(parents=True, exist_ok=True)
        p = Pipeline(cluster=cluster, temporal=temporal, client=client, settings=settings, node_roots=roots)
        control = build_control_worker(
            client=client, kube=KubeClient(cluster.controller_api_client()), settings=settings
        )
        p.tasks.append(asyncio.create_task(control.run(), name="control"))
        p.tasks.append(
            asyncio.create_task(
                run_watcher(
                    api_client=cluster.controller_api_client(),
                    gateway=TemporalGateway(client=client, options=pipeline_options(settings)),
                    stop=p.stop,
                    agent_namespace=settings.kube.agent_namespace,
                    identity="e2e",
                    leader_election=False,
                    resync_seconds=30.0,
                    admission=admission_policy(settings),
                ),
                name="watcher",
            )
        )
        if start_node_workers:
            for node in nodes:
                p.start_node_worker(node)
        try:
            yield p
        finally:
            p.stop.set()
            for node in list(p.node_workers):
                await p.stop_node_worker(node)
            await control.shutdown()
            for t in p.tasks:
                t.cancel()
            for t in p.tasks:
                with contextlib.suppress(BaseException):
                    await t
    finally:
        temporal.stop()
