"""`modelferry watch`: run the CRD watcher alone — list/watch the model resources and Nodes and
drive each model's Temporal workflow, under leader election unless told otherwise.

Settings come from `--config` (YAML) and `MODELFERRY_*` variables, and the flags here win over
both. Stops cleanly on SIGINT/SIGTERM (releasing the leader Lease).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelferry.commands.logs import add_log_format_flag
from modelferry.commands.settingflags import add_agent_flags, add_temporal_flags, flag_overrides


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
    add_temporal_flags(parser)
    add_agent_flags(parser, node_label_retry="absent")  # --namespace, --models-root-dir, --log-level
    parser.add_argument("--no-leader-election", action="store_true", help="act without holding the Lease")
    parser.add_argument("--identity", default=None, help="name in the Lease (default: POD_NAME or hostname)")
    parser.add_argument(
        "--resync-seconds", type=float, default=300.0, help="re-check every object this often"
    )
    add_log_format_flag(parser)
    add_keep_versions_flag(parser)
    parser.set_defaults(func=run)


def _keep_versions(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--keep-versions {text!r}: expected a whole number, 0 or more")
    return value


def add_keep_versions_flag(parser: argparse.ArgumentParser) -> None:
    """`--keep-versions N` (setting `pipeline.keep_versions`): complete previous versions each node
    keeps beside the serving one, for an instant rollback. Every watcher entry point has it."""
    parser.add_argument(
        "--keep-versions",
        type=_keep_versions,
        default=None,
        metavar="N",
        help="previous versions each node keeps for an instant rollback (default 1)",
    )


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as `load_settings` overrides."""
    pairs = {"kube.kubeconfig": args.kubeconfig, "pipeline.keep_versions": args.keep_versions}
    return {**flag_overrides(args), **{key: value for key, value in pairs.items() if value is not None}}


def run(args: argparse.Namespace) -> int:
    # Imported here so other subcommands do not pay for Temporal or the Kubernetes client.
    import asyncio
    import os
    import signal
    import socket

    from modelferry.admission import admission_policy
    from modelferry.commands.logs import setup_logging
    from modelferry.commands.runtime import connect_temporal
    from modelferry.commands.tracing import configure_tracing
    from modelferry.kubeclient import load_api_client
    from modelferry.options import pipeline_options
    from modelferry.settings import load_settings
    from watcher.run import run_watcher
    from watcher.temporal import TemporalGateway

    settings = load_settings(args.config, overrides=settings_overrides(args))
    setup_logging(log_format=settings.log.format, level=settings.log.level.logging_level())
    configure_tracing(service_name="modelferry-watcher")
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
