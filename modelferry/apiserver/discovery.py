"""Discovery and OpenAPI documents, derived from the registry on every request so a CRD is
discoverable the moment it is created.

Only the legacy (unaggregated) discovery format is served; clients that ask for the aggregated
format fall back to it, as they do with older servers. The OpenAPI v3 documents list every PATCH
endpoint with `fieldValidation`, so kubectl leaves validation to the server and plain
`kubectl apply` works without `--validate=false`, and carry each custom resource's schema (its
CRD version's `openAPIV3Schema`, named and tagged with its group/version/kind as a real server
does), which is what `kubectl explain` reads. Built-in kinds have no schemas here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import sys
from typing import Any

from .resources import ALL_VERBS, STATUS_VERBS, ResourceRegistry, ResourceType
from .seed import SERVER_VERSION


def version_info() -> dict[str, Any]:
    return {
        **SERVER_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "cpython",
        "platform": f"linux/{platform.machine().lower()}",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in registry.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: ResourceRegistry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _storage_hash(rt: ResourceType) -> str:
    return hashlib.sha256(f"{rt.storage_key}/{rt.version}".encode()).hexdigest()[:12]


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular_name,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(ALL_VERBS),
        "storageVersionHash": _storage_hash(rt),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    entries = [main]
    if rt.status_subresource:
        entries.append(
            {
                "name": f"{rt.plural}/status",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    return entries


def resource_list(registry: ResourceRegistry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.resources(group_name, version)
    if not types:
        return None
    group_version = f"{group_name}/{version}" if group_name else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [e for rt in types for e in _resource_entries(rt)],
    }


# --- OpenAPI v3 ------------------------------------------------------------------------------------


def _gv_path(group_name: str, version: str) -> str:
    return f"apis/{group_name}/{version}" if group_name else f"api/{version}"


_PATCH_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("dryRun", "When present, modifications are not persisted."),
        ("fieldManager", "The name of the actor making these changes."),
        ("fieldValidation", "How the server treats unknown or duplicate fields: Ignore, Warn or Strict."),
        ("force", "Force apply requests (re-acquire conflicting fields)."),
    )
]


def openapi_v3_document(registry: ResourceRegistry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.resources(group_name, version)
    if not types:
        return None
    paths = {}
    for rt in types:
        base = f"/{_gv_path(group_name, version)}/"
        base += f"namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced else f"{rt.plural}/{{name}}"
        gvk = {"group": group_name, "version": version, "kind": rt.kind}
        paths[base] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": _PATCH_PARAMETERS,
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {_schema_name(rt): _published_schema(rt) for rt in types if rt.schema}},
    }


def _schema_name(rt: ResourceType) -> str:
    # A real server names a CRD's schema by its reversed group: ome.io/v1beta1 -> io.ome.v1beta1.
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _published_schema(rt: ResourceType) -> dict[str, Any]:
    schema = copy.deepcopy(rt.schema or {})
    properties = schema.setdefault("properties", {})
    properties.setdefault(
        "apiVersion",
        {"type": "string", "description": "APIVersion defines the versioned schema of this representation."},
    )
    properties.setdefault(
        "kind",
        {
            "type": "string",
            "description": "Kind is a string value for the REST resource this object represents.",
        },
    )
    properties.setdefault("metadata", {"type": "object"})
    properties["metadata"].setdefault("description", "Standard object's metadata.")
    schema.setdefault("type", "object")
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return schema


def openapi_v3_index(registry: ResourceRegistry) -> dict[str, Any]:
    paths = {}
    for group_name, versions in registry.groups().items():
        for version in versions:
            doc = openapi_v3_document(registry, group_name, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            gv = _gv_path(group_name, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}
