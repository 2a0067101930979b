"""The write rules that depend only on the object and its kind: body checks, validation, the part
of an object a generation counts, and the defaults a real server fills in on create and update."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from . import errors
from . import schema as structural
from .crds import CLEANUP_FINALIZER, crd_problems, established_status, terminating_status
from .meta import generate_name, label_key_problem, label_value_problem, name_problem, new_uid, now_rfc3339
from .resources import CRD_STORAGE_KEY, NAMESPACE_STORAGE_KEY, ResourceType

# Metadata only the server sets; a client's values are ignored on update.
SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
# Kinds whose create keeps the status sent (a kubelet registers its node with its status).
_STATUS_ON_CREATE = frozenset({"/nodes"})
_GENERATE_ATTEMPTS = 8
SECRET_STORAGE_KEY = "/secrets"


def assign_name(rt: ResourceType, meta: dict[str, Any], *, taken: Callable[[str], bool]) -> str:
    """The new object's name: its own, or generateName plus a free random suffix; checked."""
    name = str(meta.get("name") or "")
    if not name:
        if not meta.get("generateName"):
            raise errors.invalid(
                rt.kind,
                rt.group,
                "",
                causes=[("metadata.name", "Required value: name or generateName is required")],
            )
        for _ in range(_GENERATE_ATTEMPTS):
            name = generate_name(meta["generateName"])
            if not taken(name):
                break
        meta["name"] = name
    problem = name_problem(name, rt.name_rule)
    if problem:
        raise errors.invalid(
            rt.kind, rt.group, name, causes=[("metadata.name", f'Invalid value: "{name}": {problem}')]
        )
    return name


def prepare_new(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Server-set metadata, status dropped where the status subresource owns it, checks, defaults."""
    meta = obj["metadata"]
    for field in (*SERVER_META, "resourceVersion", "selfLink", "managedFields"):
        meta.pop(field, None)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now_rfc3339()
    if rt.generation:
        meta["generation"] = 1
    if rt.status_subresource and rt.storage_key not in _STATUS_ON_CREATE:
        obj.pop("status", None)
    validate(rt, obj, existing=None)
    defaults_on_create(rt, obj)


def admit_custom(
    rt: ResourceType, obj: dict[str, Any], *, old: dict[str, Any] | None, strict: bool = False
) -> dict[str, Any]:
    """A custom object pruned, defaulted and validated against its CRD version's schema. With
    `strict` (the `fieldValidation=Strict` kubectl sends), unknown fields are a 400, not pruned."""
    if not rt.schema:
        return obj
    admission = structural.admit(obj, rt.schema, old=old)
    if strict and admission.unknown_fields:
        unknown = ", ".join(f'unknown field "{f}"' for f in admission.unknown_fields)
        what = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}'
        raise errors.bad_request(f"{what}: strict decoding error: {unknown}")
    if admission.problems:
        raise errors.invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes=admission.problems)
    return admission.obj


def without(obj: dict[str, Any], *top_level: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in top_level}


def checked_body(rt: ResourceType, body: Any) -> dict[str, Any]:
    """A deep copy of a request body with kind/apiVersion checked against the endpoint."""
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    obj = copy.deepcopy(body)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rt.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    meta = obj.get("metadata")
    if meta is None:
        obj["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return obj


def spec_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """What a generation counts: all but metadata (and status, for kinds with the subresource)."""
    return without(obj, "metadata", "apiVersion", "kind", *(("status",) if rt.status_subresource else ()))


def validate(rt: ResourceType, obj: dict[str, Any], *, existing: dict[str, Any] | None) -> None:
    meta = obj["metadata"]
    causes: list[tuple[str, str]] = []
    for field in ("labels", "annotations"):
        mapping = meta.get(field)
        if mapping is None:
            continue
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise errors.bad_request(f"metadata.{field} must map strings to strings")
        for key, value in mapping.items():
            problem = label_key_problem(key) or (label_value_problem(value) if field == "labels" else None)
            if problem:
                causes.append((f"metadata.{field}", f'Invalid value: "{key}": {problem}'))
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (
        isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
    ):
        raise errors.bad_request("metadata.finalizers must be a list of strings")
    if existing is not None and existing["metadata"].get("deletionTimestamp"):
        added = set(finalizers or []) - set(existing["metadata"].get("finalizers") or [])
        if added:
            causes.append(
                (
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is "
                    f"being deleted, found new finalizers {sorted(added)}",
                )
            )
    if rt.storage_key == CRD_STORAGE_KEY:
        causes.extend(crd_problems(obj, existing=existing))
    if causes:
        raise errors.invalid(rt.kind, rt.group, meta.get("name", ""), causes=causes)


def defaults_on_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    if rt.storage_key == NAMESPACE_STORAGE_KEY:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rt.storage_key == CRD_STORAGE_KEY:
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CLEANUP_FINALIZER)
        obj["status"] = established_status(obj)
    elif rt.storage_key == "/pods":
        obj["status"] = {"phase": "Pending", **(obj.get("status") or {})}
    elif rt.storage_key == SECRET_STORAGE_KEY:
        merge_string_data(obj)


def merge_string_data(secret: dict[str, Any]) -> None:
    """A Secret's write-only `stringData` goes into `data`, base64, over the same keys there (as
    the real API's conversion does on every write); it is never stored or answered."""
    string_data = secret.pop("stringData", None)
    if not string_data:
        return
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()):
        raise errors.bad_request("stringData must map strings to strings")
    data = secret.get("data") or {}
    secret["data"] = {**data, **{k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}}


def defaults_on_update(rt: ResourceType, new: dict[str, Any], existing: dict[str, Any]) -> None:
    if rt.storage_key == SECRET_STORAGE_KEY:
        merge_string_data(new)
    if rt.storage_key == CRD_STORAGE_KEY:
        # What the apiextensions controllers converge to after a spec change.
        new["status"] = established_status(new, existing.get("status"))
        if existing["metadata"].get("deletionTimestamp"):
            new["status"] = terminating_status(new["status"])
