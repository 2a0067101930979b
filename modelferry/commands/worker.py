"""`modelferry worker --node NAME`: serve one node's task queue (static, DaemonSet or Job mode)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

from modelferry.commands.logs import add_log_format_flag
from modelferry.commands.settingflags import (
    add_agent_flags,
    add_download_flags,
    add_temporal_flags,
    flag_overrides,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run the node-pinned worker for one node")
    node = os.environ.get("NODE_NAME") or None  # how OME's agent learns it
    p.add_argument(
        "--node",
        "--node-name",
        dest="node",
        required=node is None,
        default=node,
        help="this node's name (default $NODE_NAME, the Downward API's spec.nodeName, as OME's agent)",
    )
    p.add_argument("--task-queue", default=None, help="override the node's queue (pvc:// Jobs use their own)")
    p.add_argument("--config", type=Path, default=None, help="settings YAML (deploy/config)")
    p.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        help="exit after this many idle seconds (Job mode: the controller passes worker.idle_exit_seconds)",
    )
    p.add_argument(
        "--pvc",
        action="append",
        default=[],
        metavar="CLAIM=DIR",
        help="where a claim is mounted, e.g. ns:claim=/mnt/claim (repeatable)",
    )
    p.add_argument(
        "--node-root",
        type=Path,
        default=None,
        help="prefix of storage.path on this host (default /; dev simulates a node under a directory)",
    )
    p.add_argument(
        "--allow-claims",
        action="append",
        default=[],
        metavar="NAMESPACE[:CLAIM]",
        help="claims cluster-scoped models may read (repeatable; '*' for any; default the agent namespace)",
    )
    p.add_argument("--no-kube", action="store_true", help="no Kubernetes access (no storageKey secrets)")
    add_download_flags(p)
    add_agent_flags(p, node_label_retry="accepted")
    add_temporal_flags(p)
    add_verify_flags(p)
    add_port_flag(p)
    p.add_argument(
        "--bind-address",
        default=None,
        help="address of the probes and /metrics (setting health.bind_address; default 127.0.0.1)",
    )
    add_log_format_flag(p)
    p.set_defaults(func=run)


def parse_port(text: str) -> int | str:
    if text == "off":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port {text!r}: expected a port number, 0 for a free one, or off")
    return value


def add_port_flag(p: argparse.ArgumentParser) -> None:
    """`--port` (setting `health.worker_port`): probes and Prometheus /metrics of `modelferry worker`
    and `modelferry dev`; 0 picks a free port (printed)."""
    p.add_argument(
        "--port",
        type=parse_port,
        default=None,
        help="serve /metrics, /livez, /healthz, /readyz on this port (default 8080; 0: a free port; off)",
    )


def _duration_flag(flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from modelferry.durations import DurationError, parse_duration

        try:
            return parse_duration(text, field=flag)
        except DurationError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def add_verify_flags(p: argparse.ArgumentParser) -> None:
    """`--verify-interval` and `--deep-verify-interval` (node.verify_interval, node.deep_verify_interval),
    shared by `modelferry worker` and `modelferry dev`."""
    p.add_argument(
        "--verify-interval",
        type=_duration_flag("--verify-interval"),
        default=None,
        metavar="DURATION",
        help="check the node's models (presence, sizes) this often, e.g. 10m (default); 0 or off: never",
    )
    p.add_argument(
        "--deep-verify-interval",
        type=_duration_flag("--deep-verify-interval"),
        default=None,
        metavar="DURATION",
        help="hash every byte of the node's models this often, e.g. 7d (default); 0 or off: never",
    )


def verify_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.verify_interval is not None:
        overrides["node.verify_interval"] = args.verify_interval
    if args.deep_verify_interval is not None:
        overrides["node.deep_verify_interval"] = args.deep_verify_interval
    return overrides


def settings_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The flags that were given, as `load_settings` overrides (a Job's flags carry the
    controller's `download` settings: `modelferry.nodejob`)."""
    overrides: dict[str, object] = flag_overrides(args)
    if args.pvc:
        overrides["node.pvc_mounts"] = dict(item.split("=", 1) for item in args.pvc)
    if args.node_root:
        overrides["node.root"] = str(args.node_root)
    if args.allow_claims:
        overrides["policy.cluster_claim_namespaces"] = list(args.allow_claims)
    overrides.update(verify_overrides(args))
    if args.port is not None:
        overrides["health.worker_port"] = None if args.port == "off" else args.port
    if args.bind_address is not None:
        overrides["health.bind_address"] = args.bind_address
    return overrides


def run(args: argparse.Namespace) -> int:
    from activities.continuous_verify import models_roots_on_host
    from activities.kube import KubeClient
    from activities.peer_server import start_peer_server
    from modelferry.commands.health import Health, roots_writable, start_health_server
    from modelferry.commands.logs import setup_logging
    from modelferry.commands.runtime import (
        IdleTracker,
        build_node_verifier,
        build_node_worker,
        connect_temporal,
        run_until_idle,
    )
    from modelferry.commands.tracing import configure_tracing
    from modelferry.names import node_task_queue
    from modelferry.settings import load_settings

    settings = load_settings(args.config, overrides=settings_overrides(args))
    setup_logging(log_format=settings.log.format, level=settings.log.level.logging_level(), node=args.node)
    configure_tracing(service_name="modelferry-node-worker")
    kube = None if args.no_kube else KubeClient.from_settings(settings.kube)

    async def main() -> int:
        client = await connect_temporal(settings)
        idle = IdleTracker()
        # Peer delivery: this node's complete versions, for the node workers of its cluster.
        peers = await start_peer_server(settings)
        worker = build_node_worker(
            client=client,
            node=args.node,
            kube=kube,
            settings=settings,
            task_queue=args.task_queue,
            idle=idle,
            peer_url=peers.url if peers is not None else "",
        )
        stop = asyncio.Event()

        async def temporal_serving() -> None:
            if not await client.service_client.check_health():
                raise RuntimeError("Temporal's health check says it is not serving")

        health = Health(
            checks={"temporal": temporal_serving},
            local_checks={"models roots": roots_writable(models_roots_on_host(settings))},
        )
        server = await start_health_server(
            health, host=settings.health.bind_address, port=settings.health.worker_port, what="node worker"
        )
        # Continuous verification beside the node's own worker (a pvc Job's worker on its own
        # queue serves the same node: one verifier per node is enough).
        verifier = None
        if args.task_queue in (None, node_task_queue(args.node)):
            verifier = asyncio.create_task(
                build_node_verifier(client=client, node=args.node, settings=settings, idle=idle).run(stop),
                name="continuous-verification",
            )
        try:
            if args.idle_exit > 0:
                await run_until_idle(worker, idle, idle_exit_seconds=args.idle_exit)
                return 0
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            running = asyncio.create_task(worker.run(), name="node worker")
            health.tasks["node worker"] = running  # type: ignore[assignment]
            stopped = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                if not running.done():
                    await worker.shutdown()
                await running  # raises what ended the worker, if anything did
            return 0
        finally:
            stop.set()
            if server is not None:
                server.close()
            if peers is not None:
                await peers.stop()
            if verifier is not None:
                await verifier

    return asyncio.run(main())
