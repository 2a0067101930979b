"""`modelferry apiserver`: run the embedded single-node Kubernetes API server in the foreground.

For trying the product (and kubectl) on one machine without a cluster; not a production server.
It writes a kubeconfig for itself, serves until SIGINT/SIGTERM, then saves its state and exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apiserver",
        help="run the embedded single-node Kubernetes API server (development and tests)",
        description=__doc__,
    )
    parser.add_argument("--port", type=int, default=6443, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write a kubeconfig for it")
    parser.add_argument("--state", type=Path, help="JSON file that keeps every object across restarts")
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME[,label=value...]",
        help="a Ready node to have (repeatable)",
    )
    parser.add_argument(
        "--manifest",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="YAML file, or directory of *.yaml files, to create or replace at start "
        "(for example deploy/crd); repeatable",
    )
    parser.add_argument(
        "--watch-window",
        type=int,
        default=100,
        help="events kept per kind for resuming watches (older versions answer 410 Gone)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelferry.apiserver import EmbeddedApiServer
    from modelferry.apiserver.errors import ApiError
    from modelferry.apiserver.seed import parse_node_arg

    try:
        nodes = [parse_node_arg(text) for text in args.node]
        manifests = _manifests(args.manifest)
    except (OSError, ValueError) as e:
        print(f"modelferry apiserver: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with EmbeddedApiServer(port=args.port, state_path=args.state, watch_window=args.watch_window) as server:
        try:
            for name, labels in nodes:
                server.add_node(name, labels)
            for obj in manifests:
                server.apply_manifest(obj)
        except (ApiError, ValueError) as e:
            print(f"modelferry apiserver: {e}", file=sys.stderr)
            return 2
        kubeconfig = server.write_kubeconfig(args.kubeconfig)
        print(f"modelferry apiserver serving {server.url}; kubeconfig {kubeconfig}", flush=True)
        stop.wait()
    return 0


def _manifests(paths: list[Path]) -> list[dict[str, Any]]:
    """The Kubernetes objects in these files (directories: their *.yaml/*.yml), CRDs first so
    objects of the kinds they define can follow; kustomization files are skipped."""
    import yaml

    files = [f for p in paths for f in (sorted(p.glob("*.y*ml")) if p.is_dir() else [p])]
    docs = [
        d
        for f in files
        for d in yaml.safe_load_all(f.read_text())
        if isinstance(d, dict) and not str(d.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")
    ]
    return sorted(docs, key=lambda d: d.get("kind") != "CustomResourceDefinition")
