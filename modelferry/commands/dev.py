"""`modelferry dev`: the whole system on one machine, offline (see modelferry.dev)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

from modelferry.commands.logs import add_log_format_flag, log_format_override
from modelferry.commands.settingflags import add_agent_flags, add_download_flags, flag_overrides
from modelferry.commands.watch import add_keep_versions_flag
from modelferry.commands.worker import add_port_flag, add_verify_flags

DEFAULT_PORT = 8080  # probes and /metrics, as a node worker's (OME's model agent's port)


def _pvc(text: str) -> tuple[str, Path]:
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(
            f"--pvc {text!r}: expected NAME=DIR (a claim in namespace default) or NAMESPACE:NAME=DIR"
        )
    return name, Path(directory).resolve()


def _node_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"--nodes {text!r}: expected a whole number of nodes, at least 1")
    return count


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dev",
        help="run everything on this machine (Temporal dev server, embedded API server, watcher, workers)",
    )
    p.add_argument(
        "--home", type=Path, default=Path(".modelferry"), help="state directory (default ./.modelferry)"
    )
    p.add_argument("--kube-port", type=int, default=0, help="embedded API server port (default: a free port)")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="use this existing cluster (kind, k3d, minikube...) instead of the embedded API server; "
        "our CRDs are installed if missing, and --node-name must be one of its nodes",
    )
    p.add_argument(
        "--kube",
        choices=("embedded", "real"),
        default="embedded",
        help="embedded: modelferry's own in-process API server (the default); real: a real control "
        "plane (etcd, kube-apiserver, controller manager, scheduler from $MODELFERRY_KUBE_BIN or the "
        "cache of `bash hack/kube/build.sh`), new at each run, with a process kubelet per node "
        "running its Pods as local processes",
    )
    p.add_argument("--temporal-port", type=int, default=7233, help="Temporal frontend port (0: a free port)")
    p.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (0: a free port)")
    p.add_argument("--headless", action="store_true", help="no Temporal Web UI")
    p.add_argument(
        "--node-name",
        default=socket.gethostname(),
        help="the node this machine plays (default: the hostname)",
    )
    p.add_argument(
        "--node-root",
        type=Path,
        default=None,
        help="simulated node filesystem (default <home>/node; with --nodes N, <home>/nodes/<node>)",
    )
    p.add_argument(
        "--nodes",
        type=_node_count,
        default=1,
        metavar="N",
        help="simulate N nodes <node-name>-1..N, each with its own root and worker, labelled "
        "modelferry.io/dev-node-index=1..N (default 1: the one node --node-name)",
    )
    p.add_argument(
        "--pvc",
        type=_pvc,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="map a PersistentVolumeClaim to a local directory (repeatable)",
    )
    p.add_argument(
        "--example", action="store_true", help="write a small generated model and apply a resource for it"
    )
    p.add_argument(
        "--apply",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="apply these model resources once the stack is up",
    )
    p.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="stop everything once the applied resources are Ready (exit 1 if one fails)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=300.0,
        help="with --exit-when-ready: give up (exit 1) after this many seconds (default 300)",
    )
    p.add_argument(
        "--peer-delivery",
        action="store_true",
        help="nodes fetch a version from the nodes that hold it, the origin only once "
        "(peer.enabled; each node's worker serves its versions on a free port of 127.0.0.1)",
    )
    add_verify_flags(p)  # the in-process node worker's continuous verification
    add_keep_versions_flag(p)
    add_port_flag(p)
    add_download_flags(p)  # the in-process node workers'
    add_agent_flags(p, node_label_retry="used")
    add_log_format_flag(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at info (default: warnings only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelferry.commands.logs import setup_logging
    from modelferry.commands.tracing import configure_tracing
    from modelferry.dev.stack import DevOptions, run_dev
    from modelferry.dev.temporal_server import PortInUseError
    from modelferry.errors import ModelferryError
    from modelferry.settings import load_settings

    log_format = load_settings(overrides=log_format_override(args)).log.format  # flag, else env
    overrides = flag_overrides(args)
    level = logging.INFO if args.verbose else logging.WARNING
    if args.log_level is not None:
        level = load_settings(environ={}, overrides={"log.level": args.log_level}).log.level.logging_level()
    setup_logging(log_format=log_format, level=level)
    configure_tracing(service_name="modelferry-dev")
    port = DEFAULT_PORT if args.port is None else args.port
    opts = DevOptions(
        home=args.home,
        kube_port=args.kube_port,
        temporal_port=args.temporal_port,
        ui_port=None if args.headless else args.ui_port,
        node_name=args.node_name,
        node_root=args.node_root,
        pvcs=dict(args.pvc),
        example=args.example,
        exit_when_ready=args.exit_when_ready,
        ready_timeout=args.ready_timeout,
        apply=list(args.apply),
        kubeconfig=args.kubeconfig,
        kube=args.kube,
        nodes=args.nodes,
        verify_interval=args.verify_interval,
        deep_verify_interval=args.deep_verify_interval,
        keep_versions=args.keep_versions,
        port=None if port == "off" else port,
        settings=overrides,
        peer_delivery=args.peer_delivery,
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await run_dev(opts, stop=stop)
        except PortInUseError as e:
            print(
                f"modelferry dev: {e} (another Temporal, or an earlier `modelferry dev`?): stop it, "
                f"or pass {e.flag} 0 for a free port",
                file=sys.stderr,
                flush=True,
            )
            return 1
        except (RuntimeError, TimeoutError, ModelferryError) as e:
            print(f"modelferry dev: {e}", file=sys.stderr, flush=True)
            return 1

    return asyncio.run(main())
