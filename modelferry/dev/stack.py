"""Compose the one-machine stack and run it until stopped (or until the example is Ready)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelferry.admission import admission_policy
from modelferry.dev.temporal_server import TemporalDevServer, supervise
from modelferry.errors import KubeConflictError
from modelferry.messages import ModelRef
from modelferry.names import (
    AGENT_NAMESPACE_DEFAULT,
    DEV_NODE_INDEX_LABEL,
    DEV_NODE_ROOT_ANNOTATION,
    ModelKind,
)
from modelferry.settings import Settings, WorkerMode, load_settings

if TYPE_CHECKING:
    from modelferry.apiserver import EmbeddedApiServer
    from modelferry.dev.kube.cluster import ControlPlane

log = logging.getLogger("modelferry.dev")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_CLAIM_NAMESPACE = "default"  # a bare `--pvc NAME=DIR` claim, and the example's


@dataclass
class DevOptions:
    home: Path
    kube_port: int = 0
    temporal_port: int = 7233
    ui_port: int | None = 8233
    node_name: str = field(default_factory=socket.gethostname)
    node_root: Path | None = None
    pvcs: dict[str, Path] = field(default_factory=dict)
    example: bool = False
    exit_when_ready: bool = False
    ready_timeout: float = 300.0
    apply: list[Path] = field(default_factory=list)
    kubeconfig: Path | None = None  # an existing cluster instead of the embedded API server
    # "real": a real control plane started for this run (modelferry.dev.kube), with a process
    # kubelet per node, instead of the embedded API server.
    kube: str = "embedded"
    nodes: int = 1  # simulated nodes, each with its own filesystem root and worker (not with kubeconfig)
    verify_interval: float | None = None  # node.verify_interval (seconds); None: the default
    deep_verify_interval: float | None = None  # node.deep_verify_interval (seconds); None: the default
    keep_versions: int | None = None  # pipeline.keep_versions; None: the default (1)
    port: int | None = None  # probes and /metrics (`--port`, 8080 on the command line); None: none
    # Peer delivery (`--peer-delivery`): each node's worker serves its versions on its own free
    # port of 127.0.0.1, and nodes fetch from the nodes that hold a version (`peer.enabled`).
    peer_delivery: bool = False
    # Settings from dev's flags (`--concurrency`, `--namespace`, `--models-root-dir`...), as
    # `load_settings` overrides; what dev itself decides (addresses, roots, mode) wins over them.
    settings: dict[str, Any] = field(default_factory=dict)


def crd_manifests() -> list[dict[str, Any]]:
    """Our CRDs: the checked-in deploy/crd files when running from a checkout, else generated."""
    crd_dir = PROJECT_ROOT / "deploy" / "crd"
    docs: list[dict[str, Any]] = []
    if crd_dir.is_dir():
        for path in sorted(crd_dir.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    docs.append(doc)
    if not docs:
        from modelferry.spec.crdgen import build_crds  # generated from the same pydantic models

        docs = list(build_crds())
    return docs


@dataclass(frozen=True)
class DevNode:
    """One simulated node: its Node name, index (1..N) and the directory playing its filesystem."""

    name: str
    index: int
    root: Path


def dev_nodes(opts: DevOptions) -> list[DevNode]:
    """The nodes `dev` serves. One node keeps the name and the layout dev always had
    (`<home>/node`); N nodes are `<node-name>-1..N`, each under `<home>/nodes/<name>` (or
    `<node-root>/<name>`)."""
    if opts.nodes < 1:
        raise ValueError(f"--nodes {opts.nodes}: at least one node")
    if opts.nodes == 1:
        return [DevNode(opts.node_name, 1, opts.node_root or opts.home / "node")]
    parent = opts.node_root or opts.home / "nodes"
    names = [f"{opts.node_name}-{i}" for i in range(1, opts.nodes + 1)]
    return [DevNode(name, i, parent / name) for i, name in enumerate(names, start=1)]


def dev_node_labels(node: DevNode) -> dict[str, str]:
    return {DEV_NODE_INDEX_LABEL: str(node.index)}


def dev_settings(
    opts: DevOptions, *, temporal_address: str, kubeconfig: Path, node_root: Path | None = None
) -> Settings:
    """The settings every part of the stack runs with; `node_root`: one simulated node's."""
    mounts = {dev_claim_key(k): str(v) for k, v in opts.pvcs.items()}
    verify = {
        f"node.{name}": value
        for name, value in (
            ("verify_interval", opts.verify_interval),
            ("deep_verify_interval", opts.deep_verify_interval),
        )
        if value is not None
    }
    if opts.keep_versions is not None:
        verify["pipeline.keep_versions"] = opts.keep_versions
    peer: dict[str, Any] = {}
    if opts.peer_delivery or opts.settings.get("peer.enabled"):
        # Every simulated node serves peers from this one machine: each on a free port of its own.
        peer = {
            "peer.enabled": True,
            "peer.port": 0,
            "peer.bind_address": "127.0.0.1",
            "peer.advertise_url": None,
        }
    agent_namespace = opts.settings.get("kube.agent_namespace", AGENT_NAMESPACE_DEFAULT)
    return load_settings(
        environ={},
        overrides={
            **opts.settings,
            **verify,
            **peer,
            "temporal.address": temporal_address,
            "kube.kubeconfig": str(kubeconfig),
            "worker.mode": WorkerMode.STATIC.value,
            "worker.schedule_to_start_seconds": 60.0,
            "node.root": str(node_root or opts.node_root or opts.home / "node"),
            "node.pvc_mounts": mounts,
            # The one person using dev is the cluster admin: the claims they mounted are allowed.
            "policy.cluster_claim_namespaces": sorted(
                {agent_namespace} | {k.partition(":")[0] for k in mounts}
            ),
        },
    )


def dev_claim_key(name: str) -> str:
    """`--pvc NAME=DIR` names a claim in the `default` namespace; `NS:NAME=DIR` one in NS."""
    return name if ":" in name else f"{DEV_CLAIM_NAMESPACE}:{name}"


def model_ref(obj: dict[str, Any]) -> ModelRef:
    kind = ModelKind(obj["kind"])
    namespace = (obj["metadata"].get("namespace") or "default") if kind.namespaced else None
    return ModelRef(kind=kind, name=obj["metadata"]["name"], namespace=namespace)


def apply_object(kube: Any, obj: dict[str, Any]) -> None:
    """Create or update one of our model resources through the API (what kubectl apply does);
    `kube` is an `activities.kube.KubeClient`."""
    ref = model_ref(obj)
    try:
        kube.create_model(ref, obj)
    except KubeConflictError:  # it exists: bring its spec up to date
        kube.patch_model(ref, {"spec": obj["spec"]})


async def wait_ready(kube: Any, obj: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[str, Any] = {}
    while loop.time() < deadline:
        last = await asyncio.to_thread(kube.get_model, model_ref(obj))
        status = last.get("status") or {}
        if status.get("state") == "Ready" and status.get("observedGeneration") == last["metadata"].get(
            "generation"
        ):
            if status.get("nodesFailed"):  # Ready somewhere is not enough: every eligible node
                ready, failed = status.get("nodesReady") or [], status["nodesFailed"]
                raise RuntimeError(
                    f"{obj['metadata']['name']} is Ready on {', '.join(ready)} but failed on "
                    f"{', '.join(failed)}: {json.dumps(status.get('conditions'))}"
                )
            return last
        if status.get("state") == "Failed" and status.get("observedGeneration") == last["metadata"].get(
            "generation"
        ):
            raise RuntimeError(f"{obj['metadata']['name']} failed: {json.dumps(status.get('conditions'))}")
        await asyncio.sleep(0.2)
    raise TimeoutError(
        f"{obj['metadata']['name']} not Ready after {timeout}s; last status: {last.get('status')}"
    )


async def run_dev(opts: DevOptions, *, stop: asyncio.Event | None = None) -> int:
    """Run the stack until `stop` is set (or the applied resources are Ready with `exit_when_ready`).

    The Temporal dev server is supervised meanwhile: restarted in place when it dies, and the run
    ends with `TemporalServerFailed` when it keeps dying or cannot be started again.
    """
    from modelferry.apiserver import EmbeddedApiServer
    from modelferry.dev.example import EXAMPLE_CLAIM, write_example_model

    stop = stop or asyncio.Event()
    if opts.kube == "real" and opts.kubeconfig is not None:
        raise RuntimeError("--kube real starts a cluster of its own; --kubeconfig names an existing one")
    if opts.nodes != 1 and opts.kubeconfig is not None:
        raise RuntimeError(
            f"--nodes {opts.nodes} simulates nodes in the embedded API server; with --kubeconfig this "
            "machine plays the one node --node-name names"
        )
    home = opts.home.resolve()
    opts.home = home  # everything below (node root, PVC dirs) is absolute, whatever the cwd
    if opts.node_root is not None:
        opts.node_root = opts.node_root.resolve()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # new homes owner-only: the API state holds Secrets
    if opts.example:
        example_dir = home / "pvc" / EXAMPLE_CLAIM
        write_example_model(example_dir / "tiny-llama")
        opts.pvcs.setdefault(f"{DEV_CLAIM_NAMESPACE}:{EXAMPLE_CLAIM}", example_dir)

    real_cluster = contextlib.ExitStack()
    real: ControlPlane | None = None
    if opts.kube == "real":
        real = _start_real_cluster(opts, real_cluster)
    temporal = TemporalDevServer(
        db_file=home / "temporal.db",
        port=opts.temporal_port,
        ui_port=opts.ui_port,
        log_file=home / "temporal.log",
    )
    try:
        temporal.start()
    except BaseException:
        real_cluster.close()
        raise
    api = None
    if opts.kubeconfig is None and real is None:
        api = EmbeddedApiServer(port=opts.kube_port, state_path=home / "kube-state.json")
        api.start()
        sync_dev_nodes(api, dev_nodes(opts), single_name=opts.node_name)
    supervisor = asyncio.create_task(supervise(temporal, stop=stop), name="temporal-supervisor")
    stack = asyncio.create_task(
        _run_stack(opts, temporal=temporal, api=api, real=real, stop=stop), name="stack"
    )
    try:
        await asyncio.wait([supervisor, stack], return_when=asyncio.FIRST_COMPLETED)
        if supervisor.done() and not stack.done():
            supervisor.result()  # raises TemporalServerFailed; returns only once `stop` is set
        return await stack
    finally:
        stop.set()
        for t in (stack, supervisor):
            t.cancel()
        for t in (stack, supervisor):
            with contextlib.suppress(BaseException):
                await t
        if api is not None:
            api.stop()
        temporal.stop()  # after the supervisor is gone, so it cannot restart what this stops
        real_cluster.close()


def _start_real_cluster(opts: DevOptions, stack: contextlib.ExitStack) -> ControlPlane:
    """`--kube real`: the control plane and a process kubelet per dev node, entered into `stack`.
    Started from this (the main) thread: its components die with the thread that started them."""
    from modelferry.dev.kube.devcluster import (
        RealNode,
        kubelet_claims,
        real_kube_binaries,
        running_real_cluster,
    )

    binaries = real_kube_binaries()
    nodes = [RealNode(n.name, n.root, dev_node_labels(n)) for n in dev_nodes(opts)]
    for node in nodes:
        node.root.mkdir(parents=True, exist_ok=True)
    print(f"starting a real control plane from {binaries} ...", flush=True)
    claims = kubelet_claims({dev_claim_key(k): v for k, v in opts.pvcs.items()})
    return stack.enter_context(
        running_real_cluster(opts.home / "kube", nodes=nodes, claims=claims, binaries=binaries)
    )


def sync_dev_nodes(api: EmbeddedApiServer, nodes: list[DevNode], *, single_name: str) -> None:
    """Make the embedded API server's Nodes the ones this run serves, labelled with their index and
    annotated with their root. A node an earlier run simulated (it carries the index label, or is
    the one-node name) that this run does not serve is deleted: no model waits for its worker."""
    wanted = {n.name for n in nodes}
    for name, labels in api.node_labels().items():
        if name not in wanted and (DEV_NODE_INDEX_LABEL in labels or name == single_name):
            api.remove_node(name)
    for node in nodes:
        node.root.mkdir(parents=True, exist_ok=True)
        api.add_node(node.name, dev_node_labels(node), annotations={DEV_NODE_ROOT_ANNOTATION: str(node.root)})


async def _run_stack(
    opts: DevOptions,
    *,
    temporal: TemporalDevServer,
    api: EmbeddedApiServer | None,
    real: ControlPlane | None = None,
    stop: asyncio.Event,
) -> int:
    """Workers and watcher against the started servers; apply, and wait for Ready if asked."""
    from activities.kube import KubeClient
    from activities.peer_server import PeerServer, start_peer_server
    from modelferry.commands.health import bound_port
    from modelferry.commands.runtime import (
        build_control_worker,
        build_node_verifier,
        build_node_worker,
        connect_temporal,
        report_workflows_running,
    )
    from modelferry.dev.example import example_resource
    from modelferry.kubeclient import load_api_client
    from modelferry.options import pipeline_options
    from watcher.run import run_watcher
    from watcher.temporal import TemporalGateway

    home = opts.home
    tasks: list[asyncio.Task[Any]] = []
    peer_servers: list[PeerServer] = []
    try:
        await temporal.wait_ready()
        if api is not None:
            kubeconfig = home / "kubeconfig"
            api.write_kubeconfig(kubeconfig)
            for crd in crd_manifests():
                api.apply_manifest(crd)
        elif real is not None:
            kubeconfig = real.admin_kubeconfig
        else:
            assert opts.kubeconfig is not None
            kubeconfig = opts.kubeconfig.resolve()
        settings = dev_settings(opts, temporal_address=temporal.address, kubeconfig=kubeconfig)
        write_dev_settings_file(home, settings=settings)  # the CLI beside dev reads it
        api_client = load_api_client(settings.kube)  # one pool for the workers and the watcher
        kube = KubeClient(api_client)
        if api is None:
            await _prepare_existing_cluster(
                kube, nodes=[n.name for n in dev_nodes(opts)], agent_namespace=settings.kube.agent_namespace
            )
        client = await connect_temporal(settings)
        if settings.peer.enabled and not os.environ.get(settings.peer.token_env):
            # dev is the whole cluster: one token for its nodes, made up for this run.
            os.environ[settings.peer.token_env] = secrets.token_urlsafe(32)
        control = build_control_worker(client=client, kube=kube, settings=settings)
        tasks = [asyncio.create_task(control.run(), name="control-worker")]
        for dev_node in dev_nodes(opts):  # one worker per node, on its queue, over its own root
            node_settings = dev_settings(
                opts, temporal_address=temporal.address, kubeconfig=kubeconfig, node_root=dev_node.root
            )
            peer_server = await start_peer_server(node_settings)
            if peer_server is not None:
                peer_servers.append(peer_server)
            node = build_node_worker(
                client=client,
                node=dev_node.name,
                kube=kube,
                settings=node_settings,
                peer_url=peer_server.url if peer_server is not None else "",
            )
            verifier = build_node_verifier(client=client, node=dev_node.name, settings=node_settings)
            tasks += [
                asyncio.create_task(node.run(), name=f"node-worker-{dev_node.name}"),
                asyncio.create_task(verifier.run(stop), name=f"continuous-verification-{dev_node.name}"),
            ]
        tasks += [
            asyncio.create_task(
                run_watcher(
                    api_client=api_client,
                    gateway=TemporalGateway(client=client, options=pipeline_options(settings)),
                    stop=stop,
                    agent_namespace=settings.kube.agent_namespace,
                    identity=f"dev-{opts.node_name}",
                    leader_election=False,
                    resync_seconds=60.0,
                    admission=admission_policy(settings),
                ),
                name="watcher",
            ),
        ]
        server = await _serve_probes(opts, client=client, tasks=tasks)
        if server is not None:
            tasks.append(asyncio.create_task(_close_on_stop(server, stop), name="probes"))
        tasks.append(asyncio.create_task(report_workflows_running(client, stop=stop), name="workflow counts"))
        _print_banner(
            opts,
            temporal=temporal,
            kubeconfig=kubeconfig,
            api_url=(
                api.url
                if api is not None
                else f"{real.url} (a real control plane, logs in {real.directory})"
                if real is not None
                else f"the cluster of {kubeconfig}"
            ),
        )
        if server is not None:
            print(f"  metrics, probes  http://127.0.0.1:{bound_port(server)}/metrics", flush=True)
        applied: list[dict[str, Any]] = []
        if opts.example:
            applied.append(example_resource())
        for path in opts.apply:
            applied += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        for obj in applied:
            await asyncio.to_thread(apply_object, kube, obj)
            print(f"applied {obj['kind']}/{obj['metadata']['name']}", flush=True)
        if opts.exit_when_ready:
            for obj in applied:
                ready = await wait_ready(kube, obj, timeout=opts.ready_timeout)
                roots = {n.name: n.root for n in dev_nodes(opts)}
                _print_ready(ready, settings=settings, kube=kube, roots=roots)
            return 0
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
        return 0
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for peer_server in peer_servers:
            await peer_server.stop()


async def _serve_probes(
    opts: DevOptions, *, client: Any, tasks: list[asyncio.Task[Any]]
) -> asyncio.Server | None:
    """`/metrics` and the probes of the whole stack on `opts.port` (None: not served): every part
    must keep running, each node's simulated filesystem must take a file, and Temporal answer."""
    from modelferry.commands.health import Health, roots_writable, start_health_server

    async def temporal_serving() -> None:
        if not await client.service_client.check_health():
            raise RuntimeError("Temporal's health check says it is not serving")

    health = Health(
        tasks={t.get_name(): t for t in tasks},
        checks={"temporal": temporal_serving},
        local_checks={"node roots": roots_writable([n.root for n in dev_nodes(opts)])},
    )
    return await start_health_server(health, host="127.0.0.1", port=opts.port, what="modelferry dev")


async def _close_on_stop(server: asyncio.Server, stop: asyncio.Event) -> None:
    try:
        await stop.wait()
    finally:
        server.close()


async def _prepare_existing_cluster(kube: Any, *, nodes: list[str], agent_namespace: str) -> None:
    """Our CRDs and the agent namespace (node reports live there) installed, or exactly what is
    missing said; and the nodes this host serves known (--kubeconfig: the one --node-name)."""
    if await asyncio.to_thread(kube.ensure_namespace, agent_namespace):
        print(f"created namespace {agent_namespace}", flush=True)
    crds = crd_manifests()
    created = await asyncio.to_thread(kube.install_missing_crds, crds)
    if created:
        print(f"installed CRDs: {', '.join(created)}", flush=True)
    for name in (str(c["metadata"]["name"]) for c in crds):
        deadline = asyncio.get_running_loop().time() + 60
        while not await asyncio.to_thread(kube.crd_established, name):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"CRD {name} is not Established after 60s")
            await asyncio.sleep(0.5)
    for node in nodes:
        if await asyncio.to_thread(kube.node_exists, node):
            continue
        known = ", ".join(sorted(n for n, _ in await asyncio.to_thread(kube.list_nodes))) or "none"
        raise RuntimeError(
            f"the cluster has no node {node!r} for this machine's worker to serve (its nodes: {known}); "
            "pass --node-name with one of them"
        )


def _print_banner(opts: DevOptions, *, temporal: TemporalDevServer, kubeconfig: Path, api_url: str) -> None:
    ui = f"http://127.0.0.1:{temporal.ui_port}" if temporal.ui_port else "(headless)"
    print(
        f"modelferry dev is up\n"
        f"  kubernetes API   {api_url}   (export KUBECONFIG={kubeconfig.resolve()})\n"
        f"  temporal         {temporal.address}   UI {ui}\n"
        + "\n".join(f"  node             {n.name}   filesystem under {n.root}" for n in dev_nodes(opts)),
        flush=True,
    )


def _print_ready(obj: dict[str, Any], *, settings: Settings, kube: Any, roots: dict[str, Path]) -> None:
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    nodes = status.get("nodesReady") or []
    path = spec.get("storage", {}).get("path")
    where = ", ".join(f"{roots[n]}{path}" for n in nodes if n in roots) or str(path)
    print(
        f"{obj['kind']}/{obj['metadata']['name']} is Ready on {', '.join(nodes)}: "
        f"{spec.get('modelArchitecture')}, {spec.get('modelParameterSize')} parameters "
        f"(maxTokens {spec.get('maxTokens')}) at {where}",
        flush=True,
    )
    for node in nodes:
        try:
            cm = kube.get_configmap(settings.kube.agent_namespace, node)
            for key, value in sorted((cm.get("data") or {}).items()):
                print(f"  ConfigMap {settings.kube.agent_namespace}/{node} [{key}] = {value}", flush=True)
        except Exception as e:  # a report line only
            print(f"  (ConfigMap {node} not readable: {e})", file=sys.stderr)


def write_dev_settings_file(home: Path, *, settings: Settings) -> Path:
    """`<home>/settings.yaml`: where this dev run's Temporal and Kubernetes API are, so
    `modelferry status|history|redownload...` run beside it just work
    (`modelferry.commands.clicontext` reads it). Written atomically, owner-only like the home."""
    from modelferry.commands.clicontext import DEV_SETTINGS_FILE_NAME

    body = {
        "temporal": {"address": settings.temporal.address, "namespace": settings.temporal.namespace},
        "kube": {
            "kubeconfig": str(settings.kube.kubeconfig) if settings.kube.kubeconfig else None,
            "agent_namespace": settings.kube.agent_namespace,
        },
    }
    target = home / DEV_SETTINGS_FILE_NAME
    partial = target.with_name(f".{target.name}.partial")
    header = "# written by `modelferry dev`; rewritten at each start\n"
    partial.write_text(header + yaml.safe_dump(body, sort_keys=False))
    partial.chmod(0o600)
    partial.replace(target)
    return target
