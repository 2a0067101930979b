"""API errors as the Kubernetes API server reports them: an HTTP code plus a `Status` object.

Every failure a client can act on (404, 409, 410, 422, ...) is raised as an `ApiError` anywhere in
the server and turned into a `kind: Status` body in one place (the HTTP layer), so the official
client's `ApiException.status`/`reason` and kubectl's messages read exactly as against a real
cluster.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failure with an HTTP code, a machine-readable `reason` and a human message."""

    def __init__(
        self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def qualified_resource(plural: str, group: str) -> str:
    """`configmaps` for the core group, `widgets.conformance.test` elsewhere (as in messages)."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(plural, group)} "{name}" not found',
        details=_details(plural, group, name),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(plural, group)} "{name}" already exists',
        details=_details(plural, group, name),
    )


def conflict(plural: str, group: str, name: str, *, why: str, kind: str | None = None) -> ApiError:
    """`kind`: what details.kind names instead of the plural (a failed delete precondition names
    the Kind on a real server; other conflicts the resource)."""
    details = _details(plural, group, name)
    if kind:
        details["kind"] = kind
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(plural, group)} "{name}": {why}',
        details=details,
    )


def uid_mismatch(
    plural: str, group: str, name: str, *, wanted: str, actual: str, kind: str | None = None
) -> ApiError:
    """409 for a uid precondition (in the body or in DeleteOptions) that names another object."""
    return conflict(
        plural,
        group,
        name,
        why=f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}",
        kind=kind,
    )


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, *, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one `(field, message)` pair per violated rule, like a real validation failure."""
    texts = [f"{field}: {message}" for field, message in causes]
    text = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    group_kind = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{group_kind} "{name}" is invalid: {text}',
        details={
            "name": name,
            **({"group": group} if group else {}),  # a real server leaves the core group out
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def forbidden(plural: str, group: str, name: str, *, why: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{qualified_resource(plural, group)} "{name}" is forbidden: {why}',
        details=_details(plural, group, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )


def unprocessable(message: str) -> ApiError:
    """422 without field causes (a JSON patch whose `test` fails or whose path is missing)."""
    return ApiError(422, "Invalid", message)


def resource_not_served(path: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        details={
            "causes": [{"reason": "UnexpectedServerResponse", "message": f"404 page not found: {path}"}]
        },
    )
