"""How a one-shot CLI command (status, history, plan, redownload...) finds Temporal and Kubernetes.

The settings tree as every entry point loads it (`modelferry.settings.load_settings`), from the
first settings file found: `--config`, then `MODELFERRY_CONFIG`, then the file `modelferry dev`
writes in its home (`./.modelferry/settings.yaml` by default), so commands run beside `dev` just
work. Flags win over the file and the `MODELFERRY_*` variables.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelferry.settings import Settings, load_settings

DEV_SETTINGS_FILE_NAME = "settings.yaml"  # written by `modelferry dev` into its home
DEFAULT_DEV_HOME = Path(".modelferry")
CONFIG_ENV = "MODELFERRY_CONFIG"


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"settings YAML (default: ${CONFIG_ENV}, then {DEFAULT_DEV_HOME / DEV_SETTINGS_FILE_NAME})",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file")
    parser.add_argument("--temporal-address", default=None, help="host:port of the Temporal frontend")
    parser.add_argument("--temporal-namespace", default=None, help="Temporal namespace")


def settings_file(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Path | None:
    """The settings file this command reads, or None (defaults and environment only)."""
    env = os.environ if environ is None else environ
    if getattr(args, "config", None):
        return Path(args.config)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    dev_file = DEFAULT_DEV_HOME / DEV_SETTINGS_FILE_NAME
    return dev_file if dev_file.is_file() else None


def cli_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    pairs: dict[str, Any] = {
        "temporal.address": getattr(args, "temporal_address", None),
        "temporal.namespace": getattr(args, "temporal_namespace", None),
        "kube.kubeconfig": getattr(args, "kubeconfig", None),
    }
    overrides = {key: value for key, value in pairs.items() if value is not None}
    return load_settings(settings_file(args, environ), environ=environ, overrides=overrides)
