"""`modelferry status [MODEL] [--watch]`: where the models stand.

Without MODEL, one line per model resource in the cluster (all three kinds), from each resource's
status. With MODEL, a line per node: state, serving version, download progress and last error,
from the resource's status, the model workflow's `nodes` query and the node ConfigMap entries'
`progress` (the rendering is `modelferry.statusview`). `--watch` redraws every 2 s until Ctrl-C.

Exit status: 0, or 2 when MODEL does not exist, 1 when the cluster cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import quote

from modelferry.commands.admin import model_argument
from modelferry.commands.clicontext import add_connection_args, cli_settings
from modelferry.messages import ModelRef, NodeOutcome
from modelferry.modelarg import FORMS, short_name
from modelferry.names import API_GROUP_VERSION, CONFIGMAP_STATUS_LABEL, ModelKind, model_workflow_id
from modelferry.settings import Settings

WATCH_INTERVAL_SECONDS = 2.0
QUERY_TIMEOUT_SECONDS = 5.0
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


class ModelNotFound(Exception):
    pass


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status",
        help="where the models stand (one model: per node, with download progress)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", type=model_argument, metavar="MODEL", help=FORMS)
    p.add_argument("--watch", action="store_true", help="redraw every 2 s until Ctrl-C")
    add_connection_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0


async def _run(args: argparse.Namespace) -> int:
    from modelferry.errors import ModelferryError

    settings = cli_settings(args)
    reader = _Reader(settings)
    while True:
        try:
            text = await (reader.one(args.model) if args.model else reader.all())
        except ModelNotFound as e:
            print(str(e), file=sys.stderr)
            return 2
        except (ModelferryError, OSError, RuntimeError) as e:
            if not args.watch:
                print(f"status: {e}", file=sys.stderr)
                return 1
            text = f"status: {e}"
        if not args.watch:
            print(text)
            return 0
        print(_CLEAR + text, flush=True)
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)


class _Reader:
    """Reads the cluster (through `modelferry.kubeclient`) and Temporal, then renders."""

    def __init__(self, settings: Settings) -> None:
        from modelferry.kubeclient import load_api_client

        self._settings = settings
        self._api = load_api_client(settings.kube)
        self._client: Any = None

    def _get(self, path: str, *, what: str, query: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
        from modelferry.kubeclient import TIMEOUTS, read_json, request

        response = request(self._api, "GET", path, what=what, query=query or [], timeout=TIMEOUTS.request())
        return read_json(response, what=what)

    async def all(self) -> str:
        from modelferry.errors import KubeNotFoundError
        from modelferry.statusview import model_line, render_models

        lines = []
        for kind in ModelKind:
            try:
                listing = await asyncio.to_thread(
                    self._get, f"/apis/{API_GROUP_VERSION}/{kind.plural}", what=f"list {kind.plural}"
                )
            except KubeNotFoundError:  # that CRD is not installed
                continue
            lines += [model_line(kind, obj) for obj in listing.get("items") or []]
        return render_models(lines)

    async def one(self, ref: ModelRef) -> str:
        from modelferry.errors import KubeNotFoundError
        from modelferry.statusview import node_lines, progress_from_configmaps, render_model

        try:
            obj = await asyncio.to_thread(self._get, _model_path(ref), what=f"get {short_name(ref)}")
        except KubeNotFoundError:
            raise ModelNotFound(f"status: unknown model {short_name(ref)} (no such resource)") from None
        status = obj.get("status") or {}
        notes: list[str] = []
        outcomes: dict[str, NodeOutcome] | None = None
        state = str(status.get("state") or "")
        try:
            outcomes, workflow_state = await self._query(ref)
            state = workflow_state or state
        except TimeoutError:
            notes.append("(model workflow did not answer its query: is the control worker running?)")
        except Exception as e:  # the status alone still says much
            notes.append(f"(model workflow not queried: {e})")
        configmaps: list[dict[str, Any]] = []
        try:
            listing = await asyncio.to_thread(
                self._get,
                f"/api/v1/namespaces/{quote(self._settings.kube.agent_namespace, safe='')}/configmaps",
                what="list node ConfigMaps",
                query=[("labelSelector", f"{CONFIGMAP_STATUS_LABEL}=true")],
            )
            configmaps = listing.get("items") or []
        except Exception as e:
            notes.append(f"(node ConfigMaps not read: {e})")
        lines = node_lines(
            status=status, outcomes=outcomes, progress=progress_from_configmaps(ref, configmaps)
        )
        return render_model(model=short_name(ref), state=state, lines=lines, notes=notes)

    async def _query(self, ref: ModelRef) -> tuple[dict[str, NodeOutcome], str]:
        from modelferry.commands.runtime import connect_temporal

        if self._client is None:
            self._client = await connect_temporal(self._settings)
        handle = self._client.get_workflow_handle(
            model_workflow_id(kind=ref.kind, namespace=ref.namespace, name=ref.name)
        )
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):  # no worker polling: a query never returns
            nodes = await handle.query("nodes", result_type=dict[str, NodeOutcome])
            state = await handle.query("state", result_type=str)
        return dict(nodes), str(state or "")


def _model_path(ref: ModelRef) -> str:
    name = quote(ref.name, safe="")
    if ref.kind.namespaced:
        namespace = quote(ref.namespace or "", safe="")
        return f"/apis/{API_GROUP_VERSION}/namespaces/{namespace}/{ref.kind.plural}/{name}"
    return f"/apis/{API_GROUP_VERSION}/{ref.kind.plural}/{name}"
