"""The `oci://` backend: Oracle Cloud Infrastructure Object Storage through the `oci` SDK.

It lists the objects under `oci://n/{namespace}/b/{bucket}/o/{prefix}` and reads byte ranges; the
engine does the rest, so the SDK's retries and circuit breaker are off here (a breaker that opens
after a burst of 503s would turn the engine's careful backoff into instant failures).

Auth types (`parameters.auth_type`, parsed into `OciUri.auth_type`):
  - InstancePrincipal (default), ResourcePrincipal, OkeWorkloadIdentity: the SDK's signers. They
    talk to a metadata or token endpoint when created, so they are created lazily, on first use,
    and a failure becomes AccessDeniedError saying which auth type could not get credentials.
  - UserPrincipal: the secret holds `tenancy`, `user`, `fingerprint`, `region`, `privateKey` (PEM
    text) and optionally `passphrase`. The key stays in memory (`key_content`), never on disk.

Checksums. The listing's `md5` is the base64 Content-MD5 of a single-part object, or for a
multipart upload `<base64 of md5(concatenated binary part md5s)>-N` (as `opc-multipart-md5`). OCI
never reports the part size, so a multipart MD5 can be checked only when N == 1 (part size = size)
or when the engine finds a part size that reproduces it; otherwise size is what can be verified.
A `HEAD` is spent only on objects the listing gives no md5 for. Reads send `If-Match: <etag>`: an
object replaced mid-download answers 412, reported as a temporary "object changed" error.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import oci

from activities.storage.base import ModelListing, RemoteFile
from activities.storage.objectstore import exact_range, listing_revision
from activities.storage.registry import BackendSettings
from modelferry.errors import (
    AccessDeniedError,
    BackendNotAvailableError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from modelferry.storage_uri import OciAuthType, OciUri

CHUNK_SIZE = 1024 * 1024
_LIST_LIMIT = 1000  # the service's maximum page size
_LIST_FIELDS = "name,size,md5,etag,storageTier,archivalState"
_PLACEHOLDER_REGION = "us-ashburn-1"  # signing needs some region; an explicit endpoint decides where

_NOT_FOUND_CODES = frozenset({"BucketNotFound", "ObjectNotFound", "NamespaceNotFound"})
_CHANGED_CODES = frozenset({"IfMatchFailed", "PreconditionFailed", "InvalidRange"})
_SECRET_KEYS = ("tenancy", "user", "fingerprint", "privateKey")

SignerFactory = Callable[[], Any]


def _instance_principal_signer() -> Any:
    return oci.auth.signers.InstancePrincipalsSecurityTokenSigner()


# Looked up at call time, so tests can replace an entry without touching the SDK.
SIGNER_FACTORIES: dict[OciAuthType, SignerFactory] = {
    OciAuthType.INSTANCE_PRINCIPAL: _instance_principal_signer,
    OciAuthType.RESOURCE_PRINCIPAL: lambda: oci.auth.signers.get_resource_principals_signer(),
    OciAuthType.OKE_WORKLOAD_IDENTITY: lambda: (
        oci.auth.signers.get_oke_workload_identity_resource_principal_signer()
    ),
}


class OciBackend:
    """Lists and reads one model in an OCI bucket. Thread-safe: one SDK client, created lazily."""

    scheme = "oci"

    def __init__(
        self,
        uri: OciUri,
        *,
        parameters: Mapping[str, str] | None = None,
        secret: Mapping[str, str] | None = None,
        settings: BackendSettings | None = None,
    ) -> None:
        self._uri = uri
        params = dict(parameters or {})
        self._endpoint = params.get("endpoint") or None
        self._region = uri.region or params.get("region") or None
        settings = settings or BackendSettings()
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._pool_size = _pool_size(settings)
        # Checked now (no I/O), so a broken secret fails before any download starts.
        self._user_config = (
            self._user_principal_config(secret) if uri.auth_type is OciAuthType.USER_PRINCIPAL else None
        )
        self._lock = threading.Lock()
        self._client: Any = None

    # --- the StorageBackend protocol -----------------------------------------------------------

    def describe(self) -> str:
        u = self._uri
        text = f"oci://n/{u.namespace}/b/{u.bucket}/o/{u.prefix} ({u.auth_type.value})"
        return text + (f" at {self._endpoint}" if self._endpoint else "")

    def list_files(self) -> ModelListing:
        client = self._get_client()
        prefix = self._uri.prefix
        list_prefix = f"{prefix}/" if prefix else ""
        entries: list[tuple[str, Any]] = []
        start: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"prefix": list_prefix, "fields": _LIST_FIELDS, "limit": _LIST_LIMIT}
                if start:
                    kwargs["start"] = start
                page = client.list_objects(self._uri.namespace, self._uri.bucket, **kwargs).data
                for summary in page.objects or ():
                    if summary.name.endswith("/"):
                        continue  # a "folder" placeholder some tools create
                    entries.append((summary.name[len(list_prefix) :], summary))
                start = page.next_start_with
                if not start:
                    break
            if not entries and prefix:
                entries = self._single_object(client, prefix)
        except SourceError:
            raise
        except Exception as error:
            raise map_oci_error(error, what=self.describe()) from error
        if not entries:
            raise SourceNotFoundError(f"{self.describe()}: no objects under this prefix")
        files = tuple(sorted((self._remote_file(client, n, s) for n, s in entries), key=lambda f: f.name))
        return ModelListing(revision=listing_revision(files), files=files)

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[bytes]:
        if not 0 <= start <= end <= file.size:
            raise ValueError(f"bad range [{start}, {end}) for {file.name} of {file.size} bytes")
        if start == end:
            return
        what = f"{self.describe()}: {file.name} bytes {start}-{end - 1}"
        kwargs: dict[str, Any] = {"range": f"bytes={start}-{end - 1}"}
        if file.etag:
            kwargs["if_match"] = file.etag
        body = None
        try:
            client = self._get_client()
            response = client.get_object(
                self._uri.namespace, self._uri.bucket, self._name(file.name), **kwargs
            )
            body = response.data
            yield from exact_range(
                body.raw.stream(CHUNK_SIZE, decode_content=False),
                start=start,
                end=end,
                announced=response.headers.get("content-length"),
                what=what,
            )
        except SourceError:
            raise
        except Exception as error:
            raise map_oci_error(error, what=what) from error
        finally:
            if body is not None:
                body.close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.base_client.session.close()

    # --- listing ----------------------------------------------------------------------------------

    def _name(self, relative: str) -> str:
        return f"{self._uri.prefix}/{relative}" if self._uri.prefix else relative

    def _single_object(self, client: Any, name: str) -> list[tuple[str, Any]]:
        """A prefix that names one object exactly is a one-file model; [] if there is none."""
        try:
            head = client.head_object(self._uri.namespace, self._uri.bucket, name)
        except oci.exceptions.ServiceError as error:
            if error.status == 404 and error.code != "BucketNotFound":
                return []
            raise
        summary = oci.object_storage.models.ObjectSummary(
            name=name,
            size=int(head.headers["content-length"]),
            md5=head.headers.get("opc-multipart-md5") or head.headers.get("content-md5"),
            etag=head.headers.get("etag"),
        )
        return [(name.rsplit("/", 1)[-1], summary)]

    def _remote_file(self, client: Any, name: str, summary: Any) -> RemoteFile:
        what = f"{self.describe()}: {name}"
        if summary.storage_tier == "Archive" and summary.archival_state != "Restored":
            raise SourceNotFoundError(f"{what} is archived ({summary.archival_state}): restore it first")
        md5_text = summary.md5
        if not md5_text:
            try:
                head = client.head_object(self._uri.namespace, self._uri.bucket, summary.name)
            except Exception as error:
                raise map_oci_error(error, what=what) from error
            md5_text = head.headers.get("opc-multipart-md5") or head.headers.get("content-md5")
        size = int(summary.size)
        md5, multipart_md5, parts = parse_oci_md5(md5_text)
        return RemoteFile(
            name=name,
            size=size,
            md5=md5,
            multipart_md5=multipart_md5,
            multipart_part_size=size if parts == 1 else None,
            etag=summary.etag or None,
        )

    # --- the client -------------------------------------------------------------------------------

    def _user_principal_config(self, secret: Mapping[str, str] | None) -> dict[str, Any]:
        secret = secret or {}
        missing = [k for k in _SECRET_KEYS if not secret.get(k)]
        region = self._region or secret.get("region") or (_PLACEHOLDER_REGION if self._endpoint else None)
        if not region:
            missing.append("region")
        if missing:
            raise AccessDeniedError(
                f"{self.describe()}: UserPrincipal needs a secret with {', '.join(missing)}"
            )
        config: dict[str, Any] = {
            "tenancy": secret["tenancy"],
            "user": secret["user"],
            "fingerprint": secret["fingerprint"],
            "key_content": secret["privateKey"],
            "region": region,
        }
        if secret.get("passphrase"):
            config["pass_phrase"] = secret["passphrase"]
        try:
            oci.config.validate_config(config)
        except oci.exceptions.InvalidConfig as error:
            problems = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
            detail = ", ".join(f"{k} {v}" for k, v in sorted(problems.items())) or "invalid"
            raise AccessDeniedError(f"{self.describe()}: UserPrincipal secret: {detail}") from None
        return config

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        kwargs: dict[str, Any] = {
            "retry_strategy": oci.retry.NoneRetryStrategy(),  # the engine retries
            "circuit_breaker_strategy": oci.circuit_breaker.NoCircuitBreakerStrategy(),
            "timeout": self._timeout,
        }
        if self._endpoint:
            kwargs["service_endpoint"] = self._endpoint
        auth = self._uri.auth_type
        try:
            if self._user_config is not None:
                client = oci.object_storage.ObjectStorageClient(self._user_config, **kwargs)
            else:
                signer = SIGNER_FACTORIES[auth]()
                region = self._region or getattr(signer, "region", None) or _PLACEHOLDER_REGION
                client = oci.object_storage.ObjectStorageClient({"region": region}, signer=signer, **kwargs)
        except Exception as error:
            # Messages name files and endpoints, never key material; keep them short all the same.
            text = error.message if isinstance(error, oci.exceptions.ServiceError) else str(error)
            reason = f"{type(error).__name__}: {str(text)[:300]}"
            raise AccessDeniedError(
                f"{self.describe()}: could not get {auth.value} credentials ({reason})"
            ) from None
        _widen_connection_pool(client, self._pool_size)
        return client


def map_oci_error(error: BaseException, *, what: str) -> SourceError:
    """Turn an `oci` SDK, requests or socket exception into one of our typed errors."""
    if isinstance(error, SourceError):
        return error
    if isinstance(error, oci.exceptions.ServiceError):
        status, code = error.status, error.code or ""
        detail = f"{what}: OCI answered {status} {code}".rstrip() + (
            f": {error.message}" if error.message else ""
        )
        if status in (412, 416) or code in _CHANGED_CODES:
            return SourceUnavailableError(f"{detail} (the object changed since it was listed)")
        if status in (401, 403):
            return AccessDeniedError(detail)
        if status == 404 and code == "NotAuthorizedOrNotFound":
            return SourceNotFoundError(f"{detail} (not found, or not authorized to see it)")
        if status == 404 or code in _NOT_FOUND_CODES:
            return SourceNotFoundError(detail)
        if code == "NotRestored" or (status == 409 and "restor" in (error.message or "").lower()):
            return SourceNotFoundError(f"{detail} (an archived object: restore it first)")
        if status in (408, 429) or not isinstance(status, int) or status < 0 or status >= 500:
            return SourceUnavailableError(detail, retry_after=_retry_after(error.headers))
        return BackendNotAvailableError(f"{detail} (this request cannot succeed as made)")
    if isinstance(error, oci.exceptions.ClientError):
        return AccessDeniedError(f"{what}: {type(error).__name__}: {str(error)[:300]}")
    return SourceUnavailableError(f"{what}: {type(error).__name__}: {str(error)[:300]}")


def parse_oci_md5(text: str | None) -> tuple[str | None, str | None, int | None]:
    """OCI md5 text → (md5 hex, "<hex>-N" multipart md5, N); Nones for anything unparseable."""
    if not text:
        return None, None, None
    digest_text, dash, count = text.partition("-")
    try:
        digest = base64.b64decode(digest_text, validate=True)
    except (binascii.Error, ValueError):
        return None, None, None
    if len(digest) != 16:
        return None, None, None
    if not dash:
        return digest.hex(), None, None
    if not count.isdigit() or int(count) < 1:
        return None, None, None
    return None, f"{digest.hex()}-{int(count)}", int(count)


# --- helpers ------------------------------------------------------------------------------------


def _widen_connection_pool(client: Any, size: int) -> None:
    """requests keeps 10 connections per host; the engine runs files x parts reads at once."""
    session = client.base_client.session
    for prefix, adapter in list(session.adapters.items()):
        if getattr(adapter, "_pool_maxsize", size) < size:
            session.mount(prefix, type(adapter)(pool_connections=10, pool_maxsize=size))


def _pool_size(settings: BackendSettings) -> int:
    """Every part of every file in flight may hold a connection."""
    return settings.concurrency * settings.multipart_concurrency + 2


def _retry_after(headers: Any) -> float | None:
    value = (headers or {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
