"""`modelferry config show`: the effective settings, and where each value came from.

Reads what every entry point reads (`modelferry.settings.resolve_settings`): the settings file
(`--config`, else $MODELFERRY_CONFIG, else `./.modelferry/settings.yaml` when `dev` wrote one),
the environment and the flags given here, which are the ones `worker`, `controller` and `dev`
take. Precedence: flag > env > file > default. Prints YAML with, per value, its source as a
comment (`default`, `file`, `env VAR` or `flag`); `--json` for scripts.

Nothing secret is printed. The settings hold no secret by design (the Temporal API key is read
from the variable *named* by `temporal.api_key_env`: only whether it is set is shown), and a value
that still looks like a credential (a key named like one, a URL with user:password@) is masked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from modelferry.commands.clicontext import settings_file
from modelferry.commands.logs import add_log_format_flag
from modelferry.commands.settingflags import (
    add_agent_flags,
    add_download_flags,
    add_temporal_flags,
    add_worker_mode_flag,
    flag_overrides,
)

MASK = "***"
# A key named like a credential (not the name of a variable or a file that holds one).
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|credential|api_?key)(?!_env|_path)", re.I)
# Keys whose value is the name of a Kubernetes Secret, never its contents.
_NAMES_A_SECRET = frozenset({"credentials_secret"})
_URL_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.I)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="show the effective settings and where each value came from")
    actions = p.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    show = actions.add_parser(
        "show",
        help="print the effective settings (YAML), secrets masked, each value's source as a comment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument(
        "--config",
        default=None,
        help="settings YAML (default: $MODELFERRY_CONFIG, then ./.modelferry/settings.yaml)",
    )
    show.add_argument("--kubeconfig", default=None, help="kubeconfig file")
    add_temporal_flags(show)
    add_download_flags(show)
    add_agent_flags(show, node_label_retry="used")
    add_worker_mode_flag(show)
    from modelferry.commands.worker import add_port_flag

    add_port_flag(show)
    add_log_format_flag(show)
    show.add_argument("--json", action="store_true", help="one JSON object: file, settings, sources")
    show.set_defaults(func=run)


def show_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = flag_overrides(args)
    if args.kubeconfig is not None:
        overrides["kube.kubeconfig"] = args.kubeconfig
    if args.port is not None:
        overrides["health.worker_port"] = None if args.port == "off" else args.port
    return overrides


def mask_value(key: str, value: Any) -> Any:
    """`value` as it may be printed: MASK for a credential-named key, user:password@ in a URL
    masked, lists and maps masked item by item."""
    if value is None:
        return None
    if _SECRET_KEY.search(key) and key not in _NAMES_A_SECRET:
        return MASK
    if isinstance(value, str):
        return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
    if isinstance(value, list):
        return [mask_value(key, item) for item in value]
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    return value


def masked_tree(tree: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        section: {key: mask_value(key, v) for key, v in values.items()} for section, values in tree.items()
    }


def render_yaml(
    tree: Mapping[str, Mapping[str, Any]],
    sources: Mapping[str, str],
    *,
    notes: Mapping[str, str] | None = None,
    header: str = "",
) -> str:
    """Block YAML, one `key: value` a line (collections in flow style), each followed by
    `# source` and any note."""
    import yaml

    lines = [header] if header else []
    for section, values in tree.items():
        lines.append(f"{section}:")
        rows = []
        for key, value in values.items():
            # One flow-style item of a list: the value as YAML on one line, whatever its type.
            flow = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]
            rows.append((f"  {key}: {flow}", f"{section}.{key}"))
        width = max(len(text) for text, _ in rows)
        for text, setting in rows:
            note = (notes or {}).get(setting)
            comment = sources.get(setting, "default") + (f"; {note}" if note else "")
            lines.append(f"{text.ljust(width)}  # {comment}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from modelferry.settings import resolve_settings

    env = os.environ if environ is None else environ
    path = settings_file(args, env)
    try:
        resolved = resolve_settings(path, environ=env, overrides=show_overrides(args))
    except (OSError, ValueError) as error:  # a missing file, bad YAML, a value out of range
        print(f"modelferry config show: {error}", file=sys.stderr)
        return 1
    tree = masked_tree(resolved.settings.model_dump(mode="json"))
    notes: dict[str, str] = {}
    for section, values in tree.items():  # `*_env`: the name of a variable holding a secret
        for key, value in values.items():
            if key.endswith("_env") and isinstance(value, str) and value:
                notes[f"{section}.{key}"] = (
                    f"${value} is {'set' if env.get(value) else 'not set'} (not shown)"
                )
    if args.json:
        body = {"file": str(path) if path else None, "settings": tree, "sources": resolved.sources}
        print(json.dumps(body, indent=2))
        return 0
    where = f"file {path}" if path else "no file"
    header = f"# modelferry effective settings ({where}); precedence: flag > env > file > default"
    print(render_yaml(tree, resolved.sources, notes=notes, header=header), end="")
    return 0
