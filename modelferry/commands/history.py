"""`modelferry history MODEL [--node N] [--json]`: the model's timeline from Temporal.

Every run of the model's workflow (each continue-as-new, and earlier incarnations of the same
name), and every node workflow those runs started, decoded into one time-ordered list of rows
(`modelferry.commands.timeline`): when, node, what, bytes, outcome, why. `--json` prints the rows as
a JSON list; `--node` keeps one node's rows.

Exit status: 0, 2 when Temporal knows no workflow for MODEL, 1 when Temporal cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from modelferry.commands.admin import model_argument
from modelferry.commands.clicontext import add_connection_args, cli_settings
from modelferry.messages import ModelRef
from modelferry.modelarg import FORMS, short_name
from modelferry.names import model_workflow_id


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "history",
        help="a model's timeline: revisions, admin actions, downloads, outcomes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=model_argument, metavar="MODEL", help=FORMS)
    p.add_argument("--node", default=None, metavar="N", help="only this node's rows")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    add_connection_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from modelferry.commands.runtime import connect_temporal
    from modelferry.commands.timeline import merge, render

    ref: ModelRef = args.model
    try:
        client = await connect_temporal(cli_settings(args))
        rows = await model_timeline(client, ref)
    except Exception as e:  # Temporal unreachable
        print(f"history {short_name(ref)}: {e}", file=sys.stderr)
        return 1
    if rows is None:
        print(f"history {short_name(ref)}: unknown model (Temporal has no workflow for it)", file=sys.stderr)
        return 2
    rows = merge(rows, node=args.node)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(render(rows))
    return 0


async def model_timeline(client: Any, ref: ModelRef) -> list[Any] | None:
    """Every row of the model's workflow runs and their node workflows; None when there is none."""
    from temporalio.client import RPCError
    from temporalio.service import RPCStatusCode

    from modelferry.commands.timeline import child_runs, history_rows, node_of

    workflow_id = model_workflow_id(kind=ref.kind, namespace=ref.namespace, name=ref.name)
    runs = await _model_runs(client, workflow_id)
    if not runs:
        return None
    converter = client.data_converter.payload_converter
    rows = []
    seen_children: set[tuple[str, str]] = set()
    for run_id in runs:
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:  # removed by retention since it was listed
                continue
            raise
        rows += history_rows(history.events, converter=converter)
        for child in child_runs(history.events):
            if child in seen_children:
                continue
            seen_children.add(child)
            child_id, child_run = child
            try:
                child_history = await client.get_workflow_handle(child_id, run_id=child_run).fetch_history()
            except RPCError as e:
                if e.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            rows += history_rows(child_history.events, converter=converter, node=node_of(child_id))
    return rows


async def _model_runs(client: Any, workflow_id: str) -> list[str]:
    """Run IDs of the model's workflow, oldest first: from visibility, else (visibility lags a
    fresh start) the latest run and the chain of runs it continued from."""
    from temporalio.client import RPCError
    from temporalio.service import RPCStatusCode

    listed = [
        (execution.start_time, execution.run_id)
        async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"')
    ]
    if listed:
        return [run_id for _, run_id in sorted(listed, key=lambda pair: pair[0])]
    try:
        latest = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    chain: list[str] = []
    run_id: str = latest.run_id
    while run_id and run_id not in chain:
        chain.append(run_id)
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                break
            raise
        started = history.events[0].workflow_execution_started_event_attributes if history.events else None
        run_id = started.continued_execution_run_id if started is not None else ""
    return list(reversed(chain))
