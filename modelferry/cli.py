"""The `modelferry` command line: one subcommand per module in `modelferry.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Imported lazily so `modelferry validate` does not pay for Temporal or the Kubernetes client.
_COMMAND_MODULES = (
    "validate",
    "inspect",
    "plan",
    "pull",
    "dev",
    "worker",
    "watch",
    "controller",
    "apiserver",
    "status",
    "history",
    "admin",  # redownload, rollback, retry
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelferry", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"modelferry.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"modelferry.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
