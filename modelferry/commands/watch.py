"""`modelferry watch`: run the CRD watcher alone — list/watch the model resources and Nodes and
drive each model's Temporal workflow, under leader election unless told otherwise.

Settings come from `--config` (YAML) and `MODELFERRY_*` variables, and the flags here win over
both. Stops cleanly on SIGINT/SIGTERM (releasing the leader Lease).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "watch",
        help="watch model resources and Nodes and drive the model workflows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="settings YAML")
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then ~/.kube/config)"
    )
    parser.add_argument("--temporal-address", default=None, help="host:port of the Temporal frontend")
    parser.add_argument("--temporal-namespace", default=None, help="Temporal namespace")
    parser.add_argument(
        "--agent-namespace", default=None, help="namespace of the leader Lease (default: ome)"
    )
    parser.add_argument("--no-leader-election", action="store_true", help="act without holding the Lease")
    parser.add_argument("--identity", default=None, help="name in the Lease (default: POD_NAME or hostname)")
    parser.add_argument(
        "--resync-seconds", type=float, default=300.0, help="re-check every object this often"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    parser.set_defaults(func=run)


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as `load_settings` overrides."""
    pairs = {
        "temporal.address": args.temporal_address,
        "temporal.namespace": args.temporal_namespace,
        "kube.kubeconfig": args.kubeconfig,
        "kube.agent_namespace": args.agent_namespace,
    }
    return {key: value for key, value in pairs.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    # Imported here so other subcommands do not pay for Temporal or the Kubernetes client.
    import asyncio
    import logging
    import os
    import signal
    import socket

    from modelferry.admission import admission_policy
    from modelferry.commands.runtime import connect_temporal
    from modelferry.kubeclient import load_api_client
    from modelferry.options import pipeline_options
    from modelferry.settings import load_settings
    from watcher.run import run_watcher
    from watcher.temporal import TemporalGateway

    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(args.config, overrides=settings_overrides(args))
    identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await connect_temporal(settings)
        options = pipeline_options(settings)
        await run_watcher(
            api_client=load_api_client(settings.kube),
            gateway=TemporalGateway(client=client, options=options),
            stop=stop,
            agent_namespace=settings.kube.agent_namespace,
            identity=identity,
            resync_seconds=args.resync_seconds,
            leader_election=not args.no_leader_election,
            admission=admission_policy(settings),
        )
        return 0

    return asyncio.run(main())
