"""What a CustomResourceDefinition means to the server: validation, the resource types it serves,
and the status conditions a real server reports once it serves them.

A CRD is stored like any object; the store calls these functions when one is written so that its
group/version/plural becomes (or stops being) served, as the apiextensions server does.
"""

from __future__ import annotations

import re
from typing import Any

from . import cel
from .meta import now_rfc3339
from .resources import PrinterColumn, ResourceType

# The finalizer a real server puts on every CRD: its objects are deleted before the CRD goes.
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def crd_problems(crd: dict[str, Any], *, existing: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Field/message pairs for every rule the CRD breaks (empty when valid)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    problems = []
    if not group or "." not in group:
        problems.append(("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot'))
    if not plural or not _NAME_RE.match(plural):
        problems.append(
            ("spec.names.plural", f'Invalid value: "{plural}": a lowercase DNS-1035 label is required')
        )
    if not kind:
        problems.append(("spec.names.kind", "Required value"))
    name = (crd.get("metadata") or {}).get("name", "")
    if plural and group and name != f"{plural}.{group}":
        problems.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append(
            (
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        problems.append(
            ("spec.versions", "Required value: must have exactly one version marked as storage version")
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        problems.append(
            ("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        )
    if any(not v.get("name") for v in versions):
        problems.append(("spec.versions[].name", "Required value"))
    for i, ver in enumerate(versions):
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        if cel.has_rules(schema):
            prefix = f"spec.versions[{i}].schema.openAPIV3Schema"
            problems += [(prefix + field, message) for field, message in cel.compile_problems(schema)]
    if existing is not None:
        old = existing.get("spec") or {}
        if old.get("scope") != spec.get("scope"):
            problems.append(("spec.scope", "Invalid value: field is immutable"))
        if old.get("group") != group:
            problems.append(("spec.group", "Invalid value: field is immutable"))
    return problems


def storage_version(crd: dict[str, Any]) -> str:
    return next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))


def established_status(crd: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status a real server settles on for a served CRD; transition times kept when unchanged."""
    names = crd["spec"]["names"]
    accepted = {
        "plural": names["plural"],
        "kind": names["kind"],
        "singular": names.get("singular") or names["kind"].lower(),
    }
    for key in ("shortNames", "listKind", "categories"):
        if names.get(key):
            accepted[key] = names[key]
    accepted.setdefault("listKind", names["kind"] + "List")
    old_conditions = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
        old = old_conditions.get(ctype) or {}
        since = old.get("lastTransitionTime") if old.get("status") == "True" else None
        return {
            "type": ctype,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now_rfc3339(),
        }

    stored = list((previous or {}).get("storedVersions") or [])
    if storage_version(crd) not in stored:
        stored.append(storage_version(crd))
    return {
        "acceptedNames": accepted,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    }


def terminating_status(status: dict[str, Any]) -> dict[str, Any]:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Terminating"]
    conditions.append(
        {
            "type": "Terminating",
            "status": "True",
            "reason": "InstanceDeletionInProgress",
            "message": "CustomResource deletion is in progress",
            "lastTransitionTime": now_rfc3339(),
        }
    )
    return {**status, "conditions": conditions}


def crd_resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD as resource types (invalid CRDs are rejected before this)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        columns = tuple(
            PrinterColumn(
                name=c.get("name", ""),
                type=c.get("type", "string"),
                json_path=c.get("jsonPath", ""),
                description=c.get("description", ""),
                priority=int(c.get("priority", 0)),
                format=c.get("format", ""),
            )
            for c in ver.get("additionalPrinterColumns") or []
        )
        types.append(
            ResourceType(
                group=spec["group"],
                version=ver["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in (ver.get("subresources") or {}),
                generation=True,
                printer_columns=columns,
                custom=True,
                schema=(ver.get("schema") or {}).get("openAPIV3Schema"),
            )
        )
    return types
