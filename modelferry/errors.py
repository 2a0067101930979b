"""Typed errors shared by every layer.

Two kinds matter to a caller (as in kopf): *permanent* errors, where retrying cannot help (access
denied, not found, invalid spec, a checksum that is wrong twice), and *temporary* errors, where a
retry after a delay may succeed (connection reset, 5xx, throttling). Activities turn a permanent
error into a non-retryable Temporal `ApplicationError` whose `type` is the class name, so the
workflow and the Temporal UI show exactly what went wrong.
"""

from __future__ import annotations


class ModelferryError(Exception):
    """Base of every error this project raises on purpose."""

    retryable: bool = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporaryError(ModelferryError):
    """A retry after a delay may succeed."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ModelferryError):
    """Retrying cannot help until something outside changes (the spec, a secret, the source)."""

    retryable = False


# --- spec and input -------------------------------------------------------------------------


class InvalidSpecError(PermanentError):
    """A resource or input violates a rule. `field` is a dotted path such as `spec.storage.path`."""

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None) -> None:
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)
        self.field = field
        self.source = source
        self.reason = message


class InvalidStorageUriError(InvalidSpecError):
    """A storage URI that cannot be parsed; the message quotes the URI."""


class UnsafePathError(PermanentError):
    """A path that is not absolute, not normalised, or would escape its root."""


class TenancyError(InvalidSpecError):
    """A resource names another namespace's Secret or claim, which its kind or the settings forbid."""


class InvalidSettingsError(PermanentError):
    """The process's settings cannot do what is asked of them (a worker Job that could not reach
    Temporal); the message names the settings to change. Heals once they are changed."""


# --- ownership of paths on a node ---------------------------------------------------------------


class PathOwnershipError(ModelferryError):
    """Base of the refusals that protect what is already at a model's path on a node.

    Permanent for the attempt (no activity retry can change it), but it can heal without a spec
    change: the other model is deleted, or someone moves the foreign files away.
    """

    retryable = False
    heals = True


class PathOwnedByAnotherModelError(PathOwnershipError):
    """The path, or one inside or above it, belongs to another model; the message names both."""


class ForeignPathError(PathOwnershipError):
    """The path holds files, or a symlink, that modelferry did not put there; they are never touched."""


# --- storage sources -------------------------------------------------------------------------


class SourceError(ModelferryError):
    """Base for errors talking to a model source (hf, s3, oci, pvc, vendor)."""


class AccessDeniedError(SourceError, PermanentError):
    """401/403: credentials are missing, wrong, or lack permission."""


class GatedRepoError(AccessDeniedError):
    """A gated or private Hugging Face repository without access."""


class SourceNotFoundError(SourceError, PermanentError):
    """The repository, bucket, object, revision or claim does not exist."""


class SourceUnavailableError(SourceError, TemporaryError):
    """A transient failure: connection reset, 5xx, throttling (429), a stalled stream."""


class BackendNotAvailableError(SourceError, PermanentError):
    """No backend can serve this URI (for example no vendor plug-in is installed)."""


# --- integrity and the local disk --------------------------------------------------------------


class IntegrityError(ModelferryError):
    """Bytes on disk do not match what the source promised."""


class ChecksumMismatchError(IntegrityError, TemporaryError):
    """A first mismatch: the file is deleted and fetched again."""


class PersistentChecksumMismatchError(IntegrityError, PermanentError):
    """The same file failed verification again after a fresh download."""


class InsufficientDiskSpaceError(TemporaryError):
    """The model does not fit on the target filesystem; the message says needed and free bytes.

    Temporary: space is freed by people and by pruning, so the attempt is retried with backoff and
    the figures in the message are measured again on every try.
    """


# --- metadata parsing ------------------------------------------------------------------------


class MetadataParseError(PermanentError):
    """A config.json or safetensors header that is malformed, hostile or unreadable."""


# --- Kubernetes API (mapped from ApiException by the thin client modules only) ---------------


class KubeError(ModelferryError):
    """Base of the typed Kubernetes API errors."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFoundError(KubeError, PermanentError):
    pass


class KubeConflictError(KubeError, TemporaryError):
    pass


class KubeForbiddenError(KubeError, PermanentError):
    pass


class KubeGoneError(KubeError, TemporaryError):
    """410: a watch's resourceVersion is too old; relist."""


class KubeUnavailableError(KubeError, TemporaryError):
    pass


class KubeInvalidError(KubeError, PermanentError):
    """400/422: the request itself is wrong (a schema violation, a malformed patch)."""


def kube_error_for_status(status: int | None, message: str) -> KubeError:
    """The typed error for an HTTP status from the Kubernetes API (used by the thin client
    modules that catch the client's ApiException)."""
    code = int(status or 0)
    if code == 404:
        return KubeNotFoundError(message, status=code)
    if code == 409:
        return KubeConflictError(message, status=code)
    if code in (401, 403):
        return KubeForbiddenError(message, status=code)
    if code == 410:
        return KubeGoneError(message, status=code)
    if code in (400, 422):
        return KubeInvalidError(message, status=code)
    return KubeUnavailableError(message, status=code or None)


# --- admin actions (Temporal Updates on a model's workflow) ------------------------------------


class AdminRequestRefusedError(PermanentError):
    """The model's workflow refused an admin action (its validator's message: unknown node,
    version not kept, model being deleted, nothing failed to retry)."""


class ModelWorkflowNotFoundError(PermanentError):
    """No running workflow for the model: the resource is unknown to modelferry, or gone."""


def is_retryable(error: BaseException) -> bool:
    """True where a retry may help; unknown exceptions are treated as temporary."""
    if isinstance(error, ModelferryError):
        return error.retryable
    return True
