"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, and the
PartialObjectMetadata views, built from the object itself.

CRDs print their `additionalPrinterColumns` (JSONPath evaluated here, `date` columns as an age
such as `5m`, like a real server); kinds without columns print Name and Age; a few built-ins get
the columns kubectl users expect (node status, configmap data count, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from .meta import parse_rfc3339
from .resources import PrinterColumn, ResourceType

META_API_VERSION = "meta.k8s.io/v1"


def requested_view(accept: str) -> str | None:
    """Which meta.k8s.io view an Accept header asks for first (Table, PartialObjectMetadata[List])."""
    for part in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in part.split(";")[1:])
        if params.get("g") == "meta.k8s.io" and params.get("as"):
            return params["as"]
        if part.strip().split(";")[0] in ("application/json", "*/*"):
            return None
    return None


def human_duration(seconds: float) -> str:
    """An age the way kubectl shows it: 45s, 5m3s, 3h10m, 4d2h, 2y40d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def age(timestamp: Any) -> str | None:
    parsed = parse_rfc3339(timestamp) if isinstance(timestamp, str) else None
    if parsed is None:
        return None
    return human_duration((datetime.now(UTC) - parsed).total_seconds())


# --- a JSONPath subset: .a.b, ['a'], [0], [*], [?(@.k=="v")] ----------------------------------------

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$\-/]+)|\[(?P<quoted>'[^']*'|"[^"]*")\]|\[(?P<index>-?\d+)\]|"""
    r"""(?P<all>\[\*\]|\.\*)|\[\?\((?P<filter>[^)]*)\)\]"""
)
_FILTER = re.compile(r"""^@\.([A-Za-z0-9_.\-]+)\s*(?:(==|!=)\s*(?:'([^']*)'|"([^"]*)"|(\S+)))?\s*$""")


def _filter_matches(item: Any, expression: str) -> bool:
    m = _FILTER.match(expression.strip())
    if not m or not isinstance(item, dict):
        return False
    values = find(item, "." + m.group(1))
    if m.group(2) is None:
        return bool(values)
    wanted = next(g for g in m.group(3, 4, 5) if g is not None)
    found = (str(values[0]).lower() if isinstance(values[0], bool) else str(values[0])) if values else None
    return (found == wanted) == (m.group(2) == "==")


def find(obj: Any, path: str) -> list[Any]:
    """The values a JSONPath selects (an empty list when nothing matches or it is unsupported)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path and path[0] not in ".[":
        path = "." + path
    current, pos = [obj], 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group("field") is not None or m.group("quoted") is not None:
                key = m.group("field") if m.group("field") is not None else m.group("quoted")[1:-1]
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(value, list) and -len(value) <= i < len(value):
                    nxt.append(value[i])
            elif m.group("all") is not None:
                nxt.extend(
                    value if isinstance(value, list) else value.values() if isinstance(value, dict) else []
                )
            elif isinstance(value, list):
                nxt.extend(v for v in value if _filter_matches(v, m.group("filter")))
        current = nxt
    return current


# --- columns --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    type: str
    cell: Callable[[dict[str, Any]], Any]
    description: str = ""
    priority: int = 0
    format: str = ""


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


_NAME = _Column(
    "Name", "string", lambda o: _meta(o).get("name"), "Name must be unique within a namespace.", format="name"
)
_AGE = _Column(
    "Age",
    "string",
    lambda o: age(_meta(o).get("creationTimestamp")),
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def _node_status(node: dict[str, Any]) -> str:
    ready = _condition(node, "Ready").get("status")
    text = "Ready" if ready == "True" else "NotReady" if ready else "Unknown"
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _node_roles(node: dict[str, Any]) -> str:
    roles = sorted(
        k.split("/", 1)[1]
        for k in (_meta(node).get("labels") or {})
        if k.startswith("node-role.kubernetes.io/")
    )
    return ",".join(roles) or "<none>"


def _count(*fields: str) -> Callable[[dict[str, Any]], int]:
    return lambda o: sum(len(o.get(f) or {}) for f in fields)


def _path(json_path: str) -> Callable[[dict[str, Any]], Any]:
    return lambda o: (find(o, json_path) or [None])[0]


_BUILTIN_COLUMNS: dict[str, tuple[_Column, ...]] = {
    "/namespaces": (_NAME, _Column("Status", "string", _path(".status.phase")), _AGE),
    "/nodes": (
        _NAME,
        _Column("Status", "string", _node_status),
        _Column("Roles", "string", _node_roles),
        _AGE,
        _Column("Version", "string", _path(".status.nodeInfo.kubeletVersion")),
    ),
    "/configmaps": (_NAME, _Column("Data", "integer", _count("data", "binaryData")), _AGE),
    "/secrets": (
        _NAME,
        _Column("Type", "string", _path(".type")),
        _Column("Data", "integer", _count("data")),
        _AGE,
    ),
    "/pods": (
        _NAME,
        _Column("Status", "string", _path(".status.phase")),
        _Column("Node", "string", _path(".spec.nodeName"), priority=1),
        _AGE,
    ),
    "/events": (
        _Column("Last Seen", "string", lambda o: age(o.get("lastTimestamp") or o.get("eventTime"))),
        _Column("Type", "string", _path(".type")),
        _Column("Reason", "string", _path(".reason")),
        _Column(
            "Object",
            "string",
            lambda o: "{}/{}".format(
                (o.get("involvedObject") or {}).get("kind", "").lower(),
                (o.get("involvedObject") or {}).get("name", ""),
            ),
        ),
        _Column("Message", "string", _path(".message")),
    ),
    "coordination.k8s.io/leases": (_NAME, _Column("Holder", "string", _path(".spec.holderIdentity")), _AGE),
    "batch/jobs": (
        _NAME,
        _Column(
            "Completions",
            "string",
            lambda o: "{}/{}".format(
                (o.get("status") or {}).get("succeeded", 0), (o.get("spec") or {}).get("completions", 1)
            ),
        ),
        _AGE,
    ),
    "apiextensions.k8s.io/customresourcedefinitions": (
        _NAME,
        _Column("Created At", "date", lambda o: _meta(o).get("creationTimestamp")),
    ),
}


def _cell(column: PrinterColumn, obj: dict[str, Any]) -> Any:
    values = find(obj, column.json_path)
    if not values or values[0] is None:
        return None
    value = values[0]
    try:
        if column.type == "date":
            return age(value)
        if column.type == "integer":
            return int(value)
        if column.type == "number":
            return float(value)
        if column.type == "boolean":
            return bool(value)
    except (TypeError, ValueError):
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return ", ".join(str(v) for v in values) if len(values) > 1 else str(value)


def _columns(rt: ResourceType) -> tuple[_Column, ...]:
    if rt.custom:
        if not rt.printer_columns:
            return (_NAME, _AGE)
        custom = tuple(
            _Column(
                c.name,
                "string" if c.type == "date" else c.type,
                partial(_cell, c),
                c.description,
                c.priority,
                c.format,
            )
            for c in rt.printer_columns
        )
        return (_NAME, *custom)
    return _BUILTIN_COLUMNS.get(rt.storage_key, (_NAME, _AGE))


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": META_API_VERSION,
        "metadata": obj.get("metadata", {}),
    }


def partial_metadata_list(items: list[dict[str, Any]], list_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": META_API_VERSION,
        "metadata": list_meta,
        "items": [partial_metadata(o) for o in items],
    }


def table(
    rt: ResourceType, items: list[dict[str, Any]], *, list_meta: dict[str, Any], include_object: str
) -> dict[str, Any]:
    columns = _columns(rt)
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [c.cell(obj) for c in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": META_API_VERSION,
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": c.name,
                "type": c.type,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            }
            for c in columns
        ],
        "rows": rows,
    }
