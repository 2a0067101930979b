"""Request to response, without HTTP: routing, discovery, and the verbs on resources.

The HTTP handler turns a request into an `ApiRequest` and writes back what this returns: an
`ApiResponse`, or a `WatchStream` it streams itself. Keeping HTTP out of here keeps the verb
rules (status codes, query parameters, body formats) in one readable place.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import yaml

from . import discovery, errors, protobuf, tables
from .errors import ApiError
from .patch import json_patch, merge_patch, strategic_merge_patch
from .resources import ResourceType
from .routing import ResourceRoute, parse_resource_path
from .selectors import make_matcher, parse_field_selector, parse_label_selector
from .store import Store
from .watchhub import Watcher

# A real server ends a watch after 30-60 minutes when the client sets no timeout.
DEFAULT_WATCH_TIMEOUT = 1800.0
_HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""
    content_type: str = ""
    accept: str = ""


@dataclass(frozen=True)
class ApiResponse:
    code: int
    body: Any  # a JSON document, or text for text/plain
    content_type: str = "application/json"


@dataclass(frozen=True)
class WatchStream:
    rt: ResourceType
    watcher: Watcher | None
    timeout: float
    bookmarks: bool
    as_table: bool
    include_object: str
    error: dict[str, Any] | None = None  # a Status to send as the one ERROR event (410 Gone)
    # Accept asked for meta.k8s.io's PartialObjectMetadata: each event's object (bookmarks too)
    # carries only apiVersion, kind and metadata; ERROR events keep their Status.
    as_partial_metadata: bool = False


def _decode(body: bytes, content_type: str) -> Any:
    media = content_type.split(";")[0].strip().lower()
    try:
        if media in ("", "application/json", "*/*") or media.endswith("+json"):
            return json.loads(body or b"null")
        if media in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.safe_load(body or b"")
        if media == protobuf.MEDIA_TYPE:
            return protobuf.decode_object(body)
    except protobuf.ProtobufError:
        raise errors.unsupported_media_type(content_type) from None
    except (ValueError, yaml.YAMLError) as e:
        raise errors.bad_request(f"error decoding the request body: {e}") from None
    raise errors.unsupported_media_type(content_type)


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name) or default)
    except ValueError:
        raise errors.bad_request(f"invalid {name}: {query[name]!r}") from None


class ApiEndpoints:
    def __init__(self, store: Store, *, server_address: str) -> None:
        self._store = store
        self._server_address = server_address

    def handle(self, req: ApiRequest) -> ApiResponse | WatchStream:
        path = req.path.rstrip("/") or "/"
        if path in _HEALTH_PATHS or path.startswith(tuple(p + "/" for p in _HEALTH_PATHS)):
            return ApiResponse(200, "ok", "text/plain; charset=utf-8")
        document = self._document(path)
        if document is not None:
            if req.method != "GET":
                raise errors.method_not_allowed(f"the server does not allow this method on {path}")
            return ApiResponse(200, document)
        route = parse_resource_path(path)
        if route is None:
            raise errors.resource_not_served(path)
        return self._resource(req, route)

    # --- discovery ------------------------------------------------------------------------------

    def _document(self, path: str) -> dict[str, Any] | None:
        registry = self._store.registry
        if path == "/version":
            return discovery.version_info()
        if path == "/api":
            return discovery.api_versions(self._server_address)
        if path == "/apis":
            return discovery.group_list(registry)
        if path == "/openapi/v3":
            return discovery.openapi_v3_index(registry)
        parts = path.strip("/").split("/")
        if parts == ["api", "v1"]:
            return discovery.resource_list(registry, "", "v1")
        if parts[0] == "apis" and len(parts) == 2:
            return discovery.group(registry, parts[1])
        if parts[0] == "apis" and len(parts) == 3:
            return discovery.resource_list(registry, parts[1], parts[2])
        if parts[:2] == ["openapi", "v3"] and parts[2:4] == ["api", "v1"] and len(parts) == 4:
            return discovery.openapi_v3_document(registry, "", "v1")
        if parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5:
            return discovery.openapi_v3_document(registry, parts[3], parts[4])
        return None

    # --- resources ------------------------------------------------------------------------------

    def _resource(self, req: ApiRequest, route: ResourceRoute) -> ApiResponse | WatchStream:
        rt = self._store.registry.get(route.group, route.version, route.plural)
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise errors.resource_not_served(req.path)
        if rt.namespaced and route.namespace is None and route.name is not None:
            raise errors.resource_not_served(req.path)
        if route.subresource is not None and (route.subresource != "status" or not rt.status_subresource):
            raise errors.resource_not_served(req.path)
        method, name = req.method, route.name
        if route.watch_path or (method == "GET" and name is None and _flag(req.query, "watch")):
            return self._watch(req, rt, route)
        if name is None:
            if method == "GET":
                return self._list(req, rt, route)
            if method == "POST":
                return self._create(req, rt, route)
            if method == "DELETE":
                return self._delete_collection(req, rt, route)
        elif method == "GET":
            return self._get(req, rt, route, name)
        elif method == "PUT":
            obj = self._store.update(
                rt,
                route.namespace,
                name,
                _decode(req.body, req.content_type),
                subresource=route.subresource,
                dry_run=_dry_run(req.query),
                strict=_strict(req.query),
            )
            return ApiResponse(200, obj)
        elif method == "PATCH":
            return self._patch(req, rt, route, name)
        elif method == "DELETE":
            return self._delete(req, rt, route, name)
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    def _matcher(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute) -> Any:
        allowed = ("metadata.name", "metadata.namespace", *rt.selectable_fields)
        field_selector = req.query.get("fieldSelector", "")
        if route.watch_path and route.name:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={route.name}"]))
        return make_matcher(
            namespace=route.namespace,
            labels=parse_label_selector(req.query.get("labelSelector")),
            fields=parse_field_selector(field_selector, allowed, kind=rt.kind),
        )

    def _get(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute, name: str) -> ApiResponse:
        obj = self._store.get(rt, route.namespace, name)
        view = tables.requested_view(req.accept)
        if view == "Table":
            list_meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
            return ApiResponse(
                200,
                tables.table(
                    rt, [obj], list_meta=list_meta, include_object=req.query.get("includeObject", "")
                ),
            )
        if view == "PartialObjectMetadata":
            return ApiResponse(200, tables.partial_metadata(obj))
        return ApiResponse(200, obj)

    def _list(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute) -> ApiResponse:
        items, rv = self._store.list(rt, matcher=self._matcher(req, rt, route))
        items, list_meta = _paginate(items, rv, req.query)
        view = tables.requested_view(req.accept)
        if view == "Table":
            return ApiResponse(
                200,
                tables.table(
                    rt, items, list_meta=list_meta, include_object=req.query.get("includeObject", "")
                ),
            )
        if view == "PartialObjectMetadataList":
            return ApiResponse(200, tables.partial_metadata_list(items, list_meta))
        return ApiResponse(
            200,
            {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": list_meta, "items": items},
        )

    def _watch(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute) -> WatchStream:
        q = req.query
        stream = WatchStream(
            rt=rt,
            watcher=None,
            timeout=float(_int_param(q, "timeoutSeconds", int(DEFAULT_WATCH_TIMEOUT))),
            bookmarks=_flag(q, "allowWatchBookmarks"),
            as_table=tables.requested_view(req.accept) == "Table",
            as_partial_metadata=tables.requested_view(req.accept) == "PartialObjectMetadata",
            include_object=q.get("includeObject", ""),
        )
        matcher = self._matcher(req, rt, route)
        try:
            watcher = self._store.watch(
                rt,
                matcher=matcher,
                resource_version=q.get("resourceVersion"),
                send_initial_events=_flag(q, "sendInitialEvents"),
            )
        except ApiError as e:
            if e.code != 410:
                raise
            return WatchStream(**{**stream.__dict__, "error": e.to_status()})
        return WatchStream(**{**stream.__dict__, "watcher": watcher})

    def _create(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute) -> ApiResponse:
        body = _decode(req.body, req.content_type)
        obj = self._store.create(
            rt, route.namespace, body, dry_run=_dry_run(req.query), strict=_strict(req.query)
        )
        return ApiResponse(201, obj)

    def _patch(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute, name: str) -> ApiResponse:
        media = req.content_type.split(";")[0].strip().lower()
        kind = _PATCH_TYPES.get(media)
        if kind is None or (kind == "strategic" and rt.custom):
            raise errors.unsupported_media_type(req.content_type)
        document = _decode(req.body, media)
        create = None
        if kind == "apply":
            if not req.query.get("fieldManager"):
                raise errors.bad_request("PATCH requests with an apply content type require fieldManager")
            if not isinstance(document, dict):
                raise errors.bad_request("an apply patch must be an object")
            applied_name = (document.get("metadata") or {}).get("name")
            if applied_name not in (None, name):
                raise errors.bad_request(
                    f"the name of the object ({applied_name}) does not match the name on the URL ({name})"
                )
            create = {**document, "metadata": {**(document.get("metadata") or {}), "name": name}}
        patch_fn = {
            "merge": merge_patch,
            "json": json_patch,
            "strategic": strategic_merge_patch,
            "apply": merge_patch,
        }[kind]
        obj, created = self._store.patch(
            rt,
            route.namespace,
            name,
            lambda current: patch_fn(current, document),
            subresource=route.subresource,
            dry_run=_dry_run(req.query),
            create=create,
            strict=_strict(req.query),
        )
        return ApiResponse(201 if created else 200, obj)

    def _delete(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute, name: str) -> ApiResponse:
        options = _delete_options(req)
        obj, gone = self._store.delete(
            rt,
            route.namespace,
            name,
            preconditions=options.get("preconditions"),
            dry_run=_dry_run(req.query, options),
        )
        if gone and not rt.delete_returns_object:
            details = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
            if rt.group:
                details["group"] = rt.group
            return ApiResponse(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                },
            )
        return ApiResponse(200, obj)

    def _delete_collection(self, req: ApiRequest, rt: ResourceType, route: ResourceRoute) -> ApiResponse:
        dry_run = _dry_run(req.query, _delete_options(req))
        items, _ = self._store.list(rt, matcher=self._matcher(req, rt, route))
        deleted = []
        for item in items:
            try:
                obj, _ = self._store.delete(
                    rt, item["metadata"].get("namespace"), item["metadata"]["name"], dry_run=dry_run
                )
            except ApiError as e:
                if e.code != 404:  # deleted meanwhile: fine
                    raise
                continue
            deleted.append(obj)
        return ApiResponse(
            200,
            {
                "apiVersion": rt.api_version,
                "kind": f"{rt.kind}List",
                "metadata": {"resourceVersion": str(self._store.resource_version)},
                "items": deleted,
            },
        )


def _dry_run(query: dict[str, str], options: dict[str, Any] | None = None) -> bool:
    """`dryRun=All` as a query parameter or (for deletes) in DeleteOptions."""
    return query.get("dryRun") == "All" or "All" in ((options or {}).get("dryRun") or [])


def _strict(query: dict[str, str]) -> bool:
    """`fieldValidation=Strict` (kubectl's default): unknown fields are refused, not pruned."""
    return query.get("fieldValidation") == "Strict"


def _delete_options(req: ApiRequest) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    options = _decode(req.body, req.content_type)
    if options is not None and not isinstance(options, dict):
        raise errors.bad_request("DeleteOptions must be an object")
    return options or {}


def _paginate(
    items: list[dict[str, Any]], rv: int, query: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`limit`/`continue` over the name-sorted list; a token carries the last key and list version."""
    token = query.get("continue")
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()))
            start, rv = tuple(state["start"]), int(state["rv"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise errors.bad_request("continue key is not valid") from None
        items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
    limit = _int_param(query, "limit", 0)
    list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if 0 < limit < len(items):
        last = items[limit - 1]["metadata"]
        state = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
        list_meta["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        list_meta["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return items, list_meta
