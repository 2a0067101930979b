"""Where a request path points: a resource collection, one object, or one object's subresource.

Paths are `/api/v1/...` (the core group) or `/apis/<group>/<version>/...`, then optionally
`namespaces/<ns>/`, then `<plural>[/<name>[/<subresource>]]`; the legacy `/watch/` prefix is
understood too. Whether the group/version/plural is served is for the registry to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class ResourceRoute:
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # the legacy /watch/ prefix


def parse_resource_path(path: str) -> ResourceRoute | None:
    """`/api/v1/...` or `/apis/<g>/<v>/...` below the group-version; None for anything else."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = None
    # /api/v1/namespaces/<ns>/status is the namespace's own subresource, not a resource in it.
    is_namespace_sub = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not is_namespace_sub:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3 or not all(rest):
        return None
    return ResourceRoute(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
        watch_path=watch_path,
    )
