"""`modelferry plan FILE|- ...`: what applying these model resources would do, without doing it.

For every BaseModel, ClusterBaseModel and FineTunedWeight in the files (several YAML documents per
file, `kind: List` included; read like `modelferry validate` reads them):

- which of the cluster's Nodes would get it and, for each other node, why not (the placement rules
  the workflow applies: `nodeSelector` and required `nodeAffinity`);
- what the source holds: the files and their total size, from the storage backend's listing
  (a private source's Secret is read as the node would read it: a BaseModel's from its own
  namespace, a cluster-scoped model's from the agent namespace);
- the architecture (config.json, when small) and the exact parameter count from the safetensors
  headers, read with ranged requests before any download;
- whether the bytes fit each node that would get them: its allocatable `ephemeral-storage` when the
  node reports one, "unknown" otherwise; under `modelferry dev`, where a node's filesystem is a
  local directory, the free space under the model's models root.

Nothing is written anywhere: no resource, no file, no label. The cluster and the settings are found
as every one-shot command finds them (`--config`, `$MODELFERRY_CONFIG`, then the settings
`modelferry dev` writes into ./.modelferry). A BaseModel whose manifest names no namespace is
planned in `--namespace` (default `default`).

Exit status: 0 when every model could be planned (whether or not it fits: read the plan), 1 when
one is invalid, refused by the policy or its source unreadable (each problem names the field or
the value at fault), 2 when the files hold no model resource.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelferry.commands.clicontext import add_connection_args, cli_settings

if TYPE_CHECKING:
    from activities.kube import KubeClient
    from modelferry.plan.report import ModelPlan, NodePlan, SourcePlan
    from modelferry.settings import Settings
    from modelferry.spec.documents import DocumentReport
    from modelferry.spec.resources import ModelResource


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "plan",
        help="dry run: which nodes would get each model, its size, parameters and fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|-", help="manifests to plan ('-': stdin)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of a BaseModel whose manifest names none (default: default)",
    )
    add_connection_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activities.kube import KubeClient
    from modelferry.errors import ModelferryError
    from modelferry.plan.report import exit_code, plan_json, render_text

    reports = _read_reports(args.paths)
    if not any(r.resource is not None or r.outcome == "invalid" for r in reports):
        print("modelferry plan: nothing to plan: no ome.io model resources found", file=sys.stderr)
        return 2
    settings = cli_settings(args)
    try:
        kube = KubeClient.from_settings(settings.kube)
        nodes = kube.list_node_objects()
    except ModelferryError as error:
        print(f"modelferry plan: cannot list the cluster's nodes: {error.message}", file=sys.stderr)
        return 1
    except Exception as error:  # the client's own config errors (no kubeconfig, a bad one)
        print(f"modelferry plan: cannot reach the cluster: {error}", file=sys.stderr)
        return 1
    plans = [
        _invalid_plan(report)
        if report.resource is None
        else plan_model(
            report.resource,
            document=report.source,
            nodes=nodes,
            kube=kube,
            settings=settings,
            default_namespace=args.namespace,
        )
        for report in reports
        if report.resource is not None or report.outcome == "invalid"
    ]
    if args.json:
        print(json.dumps(plan_json(plans), indent=2))
    else:
        print(render_text(plans), end="")
    return exit_code(plans)


def _read_reports(paths: list[str]) -> list[DocumentReport]:
    from modelferry.spec.documents import unreadable, validate_text

    reports: list[DocumentReport] = []
    for argument in paths:
        path = None if argument == "-" else Path(argument)
        source = "<stdin>" if path is None else argument
        try:
            text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reports.append(unreadable(source, f"cannot read: {getattr(e, 'strerror', None) or e}"))
            continue
        is_json = path is not None and path.suffix.lower() == ".json"
        reports.extend(validate_text(text, source=source, is_json=is_json))
    return reports


def _invalid_plan(report: DocumentReport) -> ModelPlan:
    from modelferry.plan.report import ModelPlan

    problems = tuple(f"{p.field}: {p.rule}" if p.field else p.rule for p in report.problems)
    return ModelPlan(
        kind=report.kind or "?", name=report.name or "?", document=report.source, problems=problems
    )


def plan_model(
    resource: ModelResource,
    *,
    document: str,
    nodes: list[dict[str, Any]],
    kube: KubeClient,
    settings: Settings,
    default_namespace: str,
) -> ModelPlan:
    """The plan of one valid resource against `nodes` (whole Node objects); reads, never writes."""
    from modelferry.admission import admission_policy, check_admission
    from modelferry.plan.report import ModelPlan

    kind = resource.model_kind
    namespace = (resource.metadata.namespace or default_namespace) if kind.namespaced else None
    if namespace != resource.metadata.namespace:
        metadata = resource.metadata.model_copy(update={"namespace": namespace})
        resource = resource.model_copy(update={"metadata": metadata})
    problems = [f"{p.field}: {p.rule}" for p in check_admission(resource, admission_policy(settings))]
    node_plans, placement_problem = _placements(resource, nodes)
    if placement_problem:
        problems.append(placement_problem)
    source, facts, source_problems = (None, None, []) if problems else _read_source(resource, kube, settings)
    problems.extend(source_problems)
    if source is not None:
        node_plans = _with_fit(node_plans, nodes=nodes, resource=resource, source=source, settings=settings)
    return ModelPlan(
        kind=kind.value,
        name=resource.metadata.name,
        namespace=namespace,
        document=document,
        nodes=tuple(node_plans),
        source=source,
        facts=facts,
        problems=tuple(problems),
    )


def _placements(resource: ModelResource, nodes: list[dict[str, Any]]) -> tuple[list[NodePlan], str]:
    from modelferry.errors import InvalidSpecError
    from modelferry.placement import evaluate_placement
    from modelferry.plan.report import NodePlan

    storage = resource.storage
    plans = []
    for node in sorted(nodes, key=_node_name):
        try:
            decision = evaluate_placement(
                disabled=bool(resource.spec.disabled),
                node_selector=storage.node_selector,
                node_affinity=storage.node_affinity,
                node_name=_node_name(node),
                node_labels=(node.get("metadata") or {}).get("labels") or {},
            )
        except InvalidSpecError as error:
            return [], f"spec.storage.{error.field or 'nodeAffinity'}: {error.reason}"
        plans.append(NodePlan(node=_node_name(node), eligible=decision.eligible, reason=decision.reason))
    return plans, ""


def _read_source(
    resource: ModelResource, kube: KubeClient, settings: Settings
) -> tuple[SourcePlan | None, Any, list[str]]:
    """(the listing's summary, what the headers and config say, problems) for the model's source."""
    import dataclasses

    from activities.node_options import backend_settings
    from activities.secrets import read_model_secret
    from activities.storage.probe import probe_model
    from activities.storage.registry import open_backend
    from modelferry.admission import resolve_claim
    from modelferry.errors import InvalidSpecError, ModelferryError
    from modelferry.messages import ModelRef, model_storage_uri
    from modelferry.plan.report import SourcePlan
    from modelferry.storage_uri import PvcUri

    kind = resource.model_kind
    storage = resource.storage
    uri_field = f"spec.storage.storageUri {storage.storage_uri!r}"
    ref = ModelRef(kind=kind, name=resource.metadata.name, namespace=resource.metadata.namespace)
    try:
        uri = model_storage_uri(kind, resource.spec)
        if isinstance(uri, PvcUri):
            claim_namespace, _ = resolve_claim(kind=kind, namespace=ref.namespace, uri=uri)
            uri = dataclasses.replace(uri, namespace=claim_namespace)
    except InvalidSpecError as error:
        return None, None, [f"{error.field or 'spec.storage.storageUri'}: {error.reason}"]
    try:
        secret = read_model_secret(
            reader=kube, ref=ref, spec=resource.spec, agent_namespace=settings.kube.agent_namespace
        )
    except ModelferryError as error:
        return None, None, [f"spec.storage.{error.message}"]  # "storageKey: Secret ns/name not found"
    try:
        backend = open_backend(
            uri, parameters=storage.parameters, secret=secret, settings=backend_settings(settings)
        )
    except ModelferryError as error:
        return None, None, [f"{uri_field}: {error.message}"]
    try:
        try:
            listing = backend.list_files()
        except ModelferryError as error:
            return None, None, [f"{uri_field}: {error.message}"]
        source = SourcePlan(
            uri=backend.describe(),
            revision=listing.revision,
            files=len(listing.files),
            total_bytes=listing.total_bytes,
        )
        try:
            return source, probe_model(backend, listing), []
        except ModelferryError as error:
            return source, None, [f"weights and config.json at {uri_field}: {error.message}"]
    finally:
        backend.close()


def _with_fit(
    plans: list[NodePlan],
    *,
    nodes: list[dict[str, Any]],
    resource: ModelResource,
    source: SourcePlan,
    settings: Settings,
) -> list[NodePlan]:
    import dataclasses

    from modelferry.plan.fit import EPHEMERAL_STORAGE, decide_fit

    by_name = {_node_name(n): n for n in nodes}
    out = []
    for plan in plans:
        if not plan.eligible:
            out.append(plan)
            continue
        node = by_name[plan.node]
        allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(EPHEMERAL_STORAGE)
        decision = decide_fit(
            needed_bytes=source.total_bytes,
            allocatable=str(allocatable) if allocatable is not None else None,
            local_free=_local_free(node, resource=resource, settings=settings),
        )
        out.append(dataclasses.replace(plan, fit=decision))
    return out


def _local_free(node: dict[str, Any], *, resource: ModelResource, settings: Settings) -> int | None:
    """Free bytes under the model's models root when the node's filesystem is a directory on this
    machine (a `modelferry dev` node names it in an annotation); else None."""
    from activities.storage.diskspace import free_bytes
    from modelferry.errors import ModelferryError
    from modelferry.layout import host_path
    from modelferry.names import DEV_NODE_ROOT_ANNOTATION
    from modelferry.ownership import check_models_root

    root = ((node.get("metadata") or {}).get("annotations") or {}).get(DEV_NODE_ROOT_ANNOTATION)
    path = resource.storage.path
    if not root or not path or not Path(root).is_dir():
        return None
    try:
        models_root = check_models_root(path, models_roots=settings.policy.models_roots)
        return free_bytes(host_path(node_root=Path(root), storage_path=models_root))
    except (ModelferryError, OSError, ValueError):
        return None


def _node_name(node: dict[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))
