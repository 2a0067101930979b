"""Flags that set settings, shared by the entry points, and the overrides they become.

OME's model-agent flags keep OME's names (`--download-retry`, `--concurrency`,
`--multipart-concurrency`, `--num-download-worker`, `--models-root-dir`, `--node-label-retry`,
`--namespace`, `--log-level`; `--port` is `modelferry.commands.worker.add_port_flag`), so an OME
agent's arguments start `modelferry worker` unchanged. Each flag names its setting in `FLAGS`;
`flag_overrides` turns the ones given into `load_settings` overrides (flag > env > file > default).
A flag left out is None, so it never hides the file or the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Literal

# argparse dest -> the setting it sets
FLAGS: dict[str, str] = {
    "temporal_address": "temporal.address",
    "temporal_namespace": "temporal.namespace",
    "temporal_tls": "temporal.tls",
    "temporal_tls_cert": "temporal.tls_client_cert_path",
    "temporal_tls_key": "temporal.tls_client_key_path",
    "temporal_tls_ca": "temporal.tls_server_ca_path",
    "temporal_api_key_env": "temporal.api_key_env",
    "temporal_credentials_secret": "temporal.credentials_secret",
    "concurrency": "download.concurrency",
    "multipart_concurrency": "download.multipart_concurrency",
    "download_retry": "download.download_retry",
    "num_download_worker": "download.num_download_worker",
    "stall_timeout": "download.stall_timeout",
    "connect_timeout": "download.connect_timeout",
    "read_timeout": "download.read_timeout",
    "agent_namespace": "kube.agent_namespace",
    "node_label_retry": "kube.node_label_retry",
    "models_root": "policy.models_roots",
    "log_level": "log.level",
    "log_format": "log.format",
    "worker_mode": "worker.mode",
}


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, at least {minimum}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def add_temporal_flags(p: argparse.ArgumentParser) -> None:
    """Where Temporal is and how to reach it (section `temporal`)."""
    p.add_argument("--temporal-address", default=None, help="host:port of the Temporal frontend")
    p.add_argument("--temporal-namespace", default=None, help="Temporal namespace (default: default)")
    p.add_argument(
        "--temporal-tls", action="store_const", const=True, default=None, help="connect to Temporal over TLS"
    )
    p.add_argument("--temporal-tls-cert", default=None, metavar="FILE", help="TLS client certificate (PEM)")
    p.add_argument("--temporal-tls-key", default=None, metavar="FILE", help="TLS client private key (PEM)")
    p.add_argument(
        "--temporal-tls-ca", default=None, metavar="FILE", help="CA that signed Temporal's certificate"
    )
    p.add_argument(
        "--temporal-api-key-env",
        default=None,
        metavar="VAR",
        help="name of the environment variable holding the Temporal API key (the key is never a flag)",
    )
    p.add_argument(
        "--temporal-credentials-secret",
        default=None,
        metavar="SECRET",
        help="Kubernetes Secret (tls.crt, tls.key, ca.crt, api-key) the worker Jobs mount for Temporal",
    )


def add_download_flags(p: argparse.ArgumentParser) -> None:
    """The node worker's transfer knobs (section `download`), under OME's names where OME has them."""
    p.add_argument("--concurrency", type=_at_least(1), default=None, help="files of one model in flight (4)")
    p.add_argument(
        "--multipart-concurrency",
        type=_at_least(1),
        default=None,
        help="ranged parts of one file in flight (4)",
    )
    p.add_argument("--download-retry", type=_at_least(0), default=None, help="retries per part (3)")
    p.add_argument(
        "--num-download-worker",
        type=_at_least(1),
        default=None,
        help="models downloading at once on a node (5)",
    )
    p.add_argument(
        "--stall-timeout",
        type=_positive_seconds,
        default=None,
        help="seconds without bytes: retry the part (60)",
    )
    p.add_argument(
        "--connect-timeout", type=_positive_seconds, default=None, help="seconds to connect to storage (10)"
    )
    p.add_argument(
        "--read-timeout", type=_positive_seconds, default=None, help="seconds one read may see no byte (60)"
    )


def add_agent_flags(
    p: argparse.ArgumentParser, *, node_label_retry: Literal["used", "accepted", "absent"]
) -> None:
    """OME's agent flags that are not transfer knobs. `node_label_retry`: "used" where this process
    writes node labels and ConfigMaps (the control worker: controller, dev); "accepted" on a node
    worker, so an OME agent's arguments start it; "absent" elsewhere."""
    p.add_argument(
        "--namespace",
        "--agent-namespace",
        dest="agent_namespace",
        default=None,
        help="namespace of the per-node ConfigMaps and the leader Lease (default ome)",
    )
    p.add_argument(
        "--models-root-dir",
        "--models-root",
        dest="models_root",
        action="append",
        default=None,
        metavar="DIR",
        help="storage.path must lie below one of these (repeatable; default /mnt/models and /raid/models)",
    )
    if node_label_retry != "absent":
        where = "" if node_label_retry == "used" else "; the controller writes them, so set it there"
        p.add_argument(
            "--node-label-retry",
            type=_at_least(1),
            default=None,
            help=f"attempts of a node ConfigMap write that meets conflicts (default 50{where})",
        )
    from modelferry.settings import LogLevel

    p.add_argument(
        "--log-level",
        type=lambda text: LogLevel(text).value,
        default=None,
        metavar="LEVEL",
        help="debug, info (default), warn or error",
    )


def add_worker_mode_flag(p: argparse.ArgumentParser) -> None:
    from modelferry.settings import WorkerMode

    p.add_argument(
        "--worker-mode",
        choices=[m.value for m in WorkerMode],
        default=None,
        help="how node workers run: a Job per node on demand (default), a DaemonSet, or started by hand",
    )


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags that were given, as `load_settings` overrides."""
    overrides: dict[str, Any] = {}
    for dest, setting in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            overrides[setting] = list(value) if isinstance(value, list) else value
    return overrides
