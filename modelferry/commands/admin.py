"""`modelferry redownload|rollback|retry MODEL [--node N]... [--reason TEXT]`: admin actions.

Each is a Temporal Update on the model's workflow (`watcher.admin.run_admin_action`): the
workflow's validator refuses an impossible request (an unknown node, a version not kept, a model
being deleted, nothing failed to retry) before anything runs, and an accepted one answers with
its plan, printed here. `rollback --to VERSION` serves that kept version; without it, the newest
kept one.

Exit status: 0 when the plan was accepted, 2 when the workflow refused it or the model has no
workflow (and for a MODEL argparse cannot read), 1 when Temporal could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys

from modelferry.commands.clicontext import add_connection_args, cli_settings
from modelferry.messages import AdminAction, AdminPlan, AdminRequest, ModelRef
from modelferry.modelarg import FORMS, parse_model_arg, short_name

_HELP = {
    AdminAction.REDOWNLOAD: "fetch and verify the model afresh on its nodes, ignoring what is on disk",
    AdminAction.ROLLBACK: "serve a kept older version again",
    AdminAction.RETRY: "retry the model's failed nodes now, not after the retry timer",
}


def model_argument(text: str) -> ModelRef:
    """argparse `type=` for MODEL: the parse error names the bad value."""
    try:
        return parse_model_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for action in AdminAction:
        p = sub.add_parser(
            action.value,
            help=_HELP[action],
            description=f"{_HELP[action]}.\n\n{__doc__}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("model", type=model_argument, metavar="MODEL", help=FORMS)
        p.add_argument(
            "--node",
            action="append",
            default=[],
            metavar="N",
            dest="nodes",
            help="only this node (repeatable; default: every node the action applies to)",
        )
        p.add_argument("--reason", default="", help="why, for the model's history and Events")
        if action is AdminAction.ROLLBACK:
            p.add_argument("--to", default="", metavar="VERSION", help="the kept version to serve")
        add_connection_args(p)
        p.set_defaults(func=run, action=action)


def requested_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container without /etc/passwd entry)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def render_plan(plan: AdminPlan, *, model: str) -> list[str]:
    """The accepted plan as lines a person reads (pure)."""
    if plan.already_handled:
        return [f"{plan.action.value} {model}: already handled, nothing new runs"]
    nodes = ", ".join(plan.nodes) if plan.nodes else "no node"
    lines = [f"{plan.action.value} {model}: accepted for {nodes}"]
    for node, version in sorted(plan.to_version.items()):
        lines.append(f"  {node}: serve version {version or '(newest kept)'}")
    if plan.message:
        lines.append(f"  {plan.message}")
    return lines


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from modelferry.commands.runtime import connect_temporal
    from modelferry.errors import AdminRequestRefusedError, ModelWorkflowNotFoundError
    from modelferry.names import model_workflow_id
    from watcher.admin import run_admin_action

    ref: ModelRef = args.model
    action: AdminAction = args.action
    model = short_name(ref)
    request = AdminRequest(
        nodes=list(dict.fromkeys(args.nodes)),
        reason=args.reason,
        requested_by=requested_by(),
        to_version=getattr(args, "to", "") or "",
    )
    settings = cli_settings(args)
    try:
        client = await connect_temporal(settings)
        plan = await run_admin_action(
            client,
            workflow_id=model_workflow_id(kind=ref.kind, namespace=ref.namespace, name=ref.name),
            action=action,
            request=request,
        )
    except AdminRequestRefusedError as e:
        print(f"{action.value} {model} refused: {e}", file=sys.stderr)
        return 2
    except ModelWorkflowNotFoundError:
        print(f"{action.value} {model}: unknown model (no workflow runs for it)", file=sys.stderr)
        return 2
    except Exception as e:  # Temporal unreachable, or no answer in time
        print(f"{action.value} {model}: {e}", file=sys.stderr)
        return 1
    for line in render_plan(plan, model=model):
        print(line)
    return 0
