"""`modelferry controller`: the control plane of a cluster install — the CRD watcher (with leader
election) plus the control worker that runs the workflows and the Kubernetes-only activities."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from modelferry.commands.logs import add_log_format_flag
from modelferry.commands.settingflags import (
    add_agent_flags,
    add_download_flags,
    add_temporal_flags,
    add_worker_mode_flag,
    flag_overrides,
)
from modelferry.commands.watch import add_keep_versions_flag
from modelferry.commands.worker import parse_port


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("controller", help="run the watcher and the control worker (the manager Deployment)")
    p.add_argument("--config", type=Path, default=None, help="settings YAML (deploy/config)")
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="name in the leader Lease (default: POD_NAME or hostname)",
    )
    p.add_argument("--no-leader-election", action="store_true", help="act without holding the Lease")
    p.add_argument("--resync-seconds", type=float, default=300.0, help="re-check every object this often")
    p.add_argument(
        "--port",
        type=parse_port,
        default=None,
        help="serve /metrics, /livez, /healthz, /readyz here (health.port, default 8081; 0: free; off)",
    )
    add_keep_versions_flag(p)
    add_temporal_flags(p)
    # The download settings travel to the node workers' Jobs as flags (modelferry.nodejob).
    add_download_flags(p)
    add_agent_flags(p, node_label_retry="used")
    add_worker_mode_flag(p)
    add_log_format_flag(p)
    p.set_defaults(func=run)


def settings_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The flags that were given, as `load_settings` overrides."""
    overrides = flag_overrides(args)
    if args.keep_versions is not None:
        overrides["pipeline.keep_versions"] = args.keep_versions
    if args.port is not None:
        overrides["health.port"] = None if args.port == "off" else args.port
    return overrides


def run(args: argparse.Namespace) -> int:
    from activities.kube import KubeClient
    from modelferry.admission import admission_policy
    from modelferry.commands.health import Health, serve_health
    from modelferry.commands.logs import setup_logging
    from modelferry.commands.runtime import (
        build_control_worker,
        connect_temporal,
        report_workflows_running,
        wake_nodes_for_verification,
    )
    from modelferry.commands.tracing import configure_tracing
    from modelferry.kubeclient import load_api_client
    from modelferry.options import pipeline_options
    from modelferry.settings import load_settings
    from watcher.run import run_watcher
    from watcher.temporal import TemporalGateway

    settings = load_settings(args.config, overrides=settings_overrides(args))
    setup_logging(log_format=settings.log.format, level=settings.log.level.logging_level())
    configure_tracing(service_name="modelferry-controller")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await connect_temporal(settings)
        # One ApiClient, so one connection pool, for the watcher's threads and the activity threads
        # (urllib3's pool is thread-safe and sized for both in modelferry.kubeclient).
        api_client = load_api_client(settings.kube)
        kube = KubeClient(api_client)
        options = pipeline_options(settings)
        worker = build_control_worker(client=client, kube=kube, settings=settings)
        worker_task = asyncio.create_task(worker.run(), name="control worker")
        watcher_task = asyncio.create_task(
            run_watcher(
                api_client=api_client,
                gateway=TemporalGateway(client=client, options=options),
                stop=stop,
                agent_namespace=settings.kube.agent_namespace,
                identity=args.identity,
                leader_election=not args.no_leader_election,
                resync_seconds=args.resync_seconds,
                admission=admission_policy(settings),
            ),
            name="watcher",
        )

        async def temporal_serving() -> None:
            if not await client.service_client.check_health():
                raise RuntimeError("Temporal's health check says it is not serving")

        health = Health(
            tasks={"watcher": watcher_task, "control worker": worker_task},  # type: ignore[dict-item]
            checks={"temporal": temporal_serving, "kubernetes": lambda: asyncio.to_thread(kube.ping)},
        )
        server = None
        if settings.health.port is not None:
            server = await serve_health(health, host=settings.health.bind_address, port=settings.health.port)
        counting = asyncio.create_task(report_workflows_running(client, stop=stop), name="workflow counts")
        # Job mode: wakes the nodes that hold models, so their models keep being verified.
        sweeping = asyncio.create_task(
            wake_nodes_for_verification(kube=kube, settings=settings, stop=stop), name="verify sweep"
        )
        try:
            await asyncio.wait({watcher_task, worker_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            counting.cancel()
            sweeping.cancel()
            if server is not None:
                server.close()
            if not worker_task.done():
                await worker.shutdown()
            for task in (watcher_task, worker_task):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=30)
        failed = [
            t.get_name()
            for t in (watcher_task, worker_task)
            if t.done() and not t.cancelled() and t.exception()
        ]
        for name in failed:
            logging.getLogger(__name__).error("%s stopped with an error; exiting", name)
        return 1 if failed else 0

    return asyncio.run(main())
