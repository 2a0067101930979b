"""`modelferry worker --node NAME`: serve one node's task queue (static, DaemonSet or Job mode)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from modelferry.commands.logs import add_log_format_flag, log_format_override


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run the node-pinned worker for one node")
    p.add_argument("--node", required=True, help="this node's name (the Downward API's spec.nodeName)")
    p.add_argument("--task-queue", default=None, help="override the node's queue (pvc:// Jobs use their own)")
    p.add_argument("--config", type=Path, default=None, help="settings YAML")
    p.add_argument(
        "--idle-exit", type=float, default=0.0, help="exit after this many idle seconds (Job mode)"
    )
    p.add_argument(
        "--pvc",
        action="append",
        default=[],
        metavar="CLAIM=DIR",
        help="where a claim is mounted, e.g. ns:claim=/mnt/claim (repeatable)",
    )
    p.add_argument("--node-root", type=Path, default=None)
    p.add_argument(
        "--models-root",
        action="append",
        default=[],
        help="storage.path must lie below one of these (repeatable; default /mnt/models and /raid/models)",
    )
    p.add_argument(
        "--allow-claims",
        action="append",
        default=[],
        metavar="NAMESPACE[:CLAIM]",
        help="claims cluster-scoped models may read (repeatable; '*' for any; default the agent namespace)",
    )
    p.add_argument("--no-kube", action="store_true", help="no Kubernetes access (no storageKey secrets)")
    p.add_argument("--concurrency", type=int, default=None, help="files of one model in flight")
    p.add_argument(
        "--multipart-concurrency", type=int, default=None, help="ranged parts of one file in flight"
    )
    p.add_argument("--download-retry", type=int, default=None, help="retries per part")
    p.add_argument(
        "--num-download-worker", type=int, default=None, help="models downloading at once on this node"
    )
    p.add_argument("--stall-timeout", type=float, default=None, help="seconds without bytes: retry the part")
    p.add_argument("--connect-timeout", type=float, default=None, help="seconds to connect to storage")
    p.add_argument("--read-timeout", type=float, default=None, help="seconds one read may see no byte")
    add_verify_flags(p)
    add_port_flag(p)
    p.add_argument(
        "--bind-address",
        default=None,
        help="address of the probes and /metrics (setting health.bind_address; default 127.0.0.1)",
    )
    add_log_format_flag(p)
    p.set_defaults(func=run)


def _port(text: str) -> int | str:
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
        type=_port,
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
    from modelferry.settings import DownloadSettings

    overrides: dict[str, object] = {}
    if args.pvc:
        overrides["node.pvc_mounts"] = dict(item.split("=", 1) for item in args.pvc)
    if args.node_root:
        overrides["node.root"] = str(args.node_root)
    if args.models_root:
        overrides["policy.models_roots"] = list(args.models_root)
    if args.allow_claims:
        overrides["policy.cluster_claim_namespaces"] = list(args.allow_claims)
    for name in DownloadSettings.model_fields:  # each has its flag above
        if getattr(args, name) is not None:
            overrides[f"download.{name}"] = getattr(args, name)
    overrides.update(verify_overrides(args))
    if args.port is not None:
        overrides["health.worker_port"] = None if args.port == "off" else args.port
    if args.bind_address is not None:
        overrides["health.bind_address"] = args.bind_address
    overrides.update(log_format_override(args))
    return overrides


def run(args: argparse.Namespace) -> int:
    from activities.continuous_verify import models_roots_on_host
    from activities.kube import KubeClient
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
    setup_logging(log_format=settings.log.format, level=logging.INFO, node=args.node)
    configure_tracing(service_name="modelferry-node-worker")
    kube = None if args.no_kube else KubeClient.from_settings(settings.kube)

    async def main() -> int:
        client = await connect_temporal(settings)
        idle = IdleTracker()
        worker = build_node_worker(
            client=client, node=args.node, kube=kube, settings=settings, task_queue=args.task_queue, idle=idle
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
                build_node_verifier(client=client, node=args.node, settings=settings).run(stop),
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
            if verifier is not None:
                await verifier

    return asyncio.run(main())
