"""The `modelferry` command line: one subcommand per module in `modelferry.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

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
    "config",  # config show
)

# One-shot commands that end right after a Temporal client call. The SDK's Rust threads can call
# into Python while the interpreter finalizes and abort it ("PyGILState_Release: thread state ...
# must be current", SIGABRT instead of the exit status; temporalio/sdk-python#300: ~1 run in 5 of
# a refused `retry`). As a process, they end with os._exit once their output is flushed.
_EXIT_WITHOUT_FINALIZING = frozenset({"status", "history", "redownload", "rollback", "retry"})


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
    """`argv` None: the process's own command line (the console script, `python -m`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code = int(args.func(args) or 0)
    if argv is None and args.command in _EXIT_WITHOUT_FINALIZING:
        _exit_without_finalizing(code)
    return code


def _exit_without_finalizing(code: int) -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
