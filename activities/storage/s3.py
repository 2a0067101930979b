"""The `s3://` backend: AWS S3 and S3-compatible stores (MinIO, Cloudflare R2, Ceph RGW, ...).

It lists the objects under the URI's prefix and reads byte ranges; the engine does the rest
(concurrency, retries, hashing, placement), so botocore's own retries are off here.

Checksums. An S3 ETag is the MD5 of the bytes only for an object uploaded in one part without
SSE-KMS or SSE-C; a multipart upload's ETag is `md5(part md5s)-N`, which the engine can check only
if it knows the part size. So listing costs one `HEAD` per object (`_HEAD_CONCURRENCY` in flight;
about a second per few hundred objects), which tells us:
  - the encryption: with `aws:kms`, `aws:kms:dsse` or SSE-C the ETag is opaque and is *not*
    offered as a checksum (a false mismatch would fail a good download);
  - for a multipart object, `PartNumber=1`'s length and the parts count, i.e. the part size, kept
    only when consistent with the size and `-N` (some S3-compatible stores ignore `PartNumber`);
  - a full-object `x-amz-checksum-sha256`, when the uploader asked for one.
Every read sends `If-Match: <etag>`, so an object replaced mid-download fails with 412, which we
report as a temporary "object changed" error: the engine lists again and starts that file over.

Credentials come from the secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
`AWS_SESSION_TOKEN`) or, with no secret, from boto3's default chain (IRSA web identity, instance
role, environment). Neither is ever logged or put into an error message.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.exceptions as bce
from botocore.config import Config

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
from modelferry.storage_uri import S3Uri

CHUNK_SIZE = 1024 * 1024  # the engine checks for stalls and progress per chunk
LIST_PAGE_SIZE = 1000  # the service's maximum keys per ListObjectsV2 page
_HEAD_CONCURRENCY = 16  # HEADs in flight while listing; each is one small round trip
_DEFAULT_REGION_WITH_ENDPOINT = "us-east-1"  # MinIO, Ceph and R2 accept any region for signing

_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_MULTIPART_ETAG = re.compile(r"([0-9a-f]{32})-(\d{1,5})")
# With these the ETag is not an MD5 of the bytes (AWS documents this; MinIO and Ceph follow).
_OPAQUE_ETAG_ENCRYPTION = ("aws:kms", "aws:kms:dsse")

_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "InvalidIdentityToken",
        "AuthorizationHeaderMalformed",
        "AccountProblem",
        "InvalidSecurity",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
_UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "RequestTimeTooSkewed",  # a node whose clock drifts; NTP usually catches up
        "InternalError",
        "ServiceUnavailable",
    }
)
_CREDENTIAL_ERRORS = (
    bce.NoCredentialsError,
    bce.PartialCredentialsError,
    bce.CredentialRetrievalError,
    bce.TokenRetrievalError,
    bce.SSOError,
)


class S3Backend:
    """Lists and reads one model under `s3://bucket/prefix`. Thread-safe: one boto3 client."""

    scheme = "s3"

    def __init__(
        self,
        uri: S3Uri,
        *,
        parameters: Mapping[str, str] | None = None,
        secret: Mapping[str, str] | None = None,
        settings: BackendSettings | None = None,
        client: Any = None,
    ) -> None:
        """`client` replaces the boto3 client (tests); otherwise one is built from the arguments."""
        self._uri = uri
        params = dict(parameters or {})
        self._endpoint = uri.endpoint or params.get("endpoint") or None
        self._region = uri.region or params.get("region") or None
        if client is None:
            client = self._build_client(params, secret, settings or BackendSettings())
        self._client = client

    # --- the StorageBackend protocol -----------------------------------------------------------

    def describe(self) -> str:
        text = f"s3://{self._uri.bucket}/{self._uri.prefix}"
        if self._endpoint:
            text += f" at {_without_userinfo(self._endpoint)}"
        return text

    def list_files(self) -> ModelListing:
        keys = self._list_keys()
        if not keys:
            raise SourceNotFoundError(f"{self.describe()}: no objects under this prefix")
        with ThreadPoolExecutor(max_workers=min(_HEAD_CONCURRENCY, len(keys))) as pool:
            files = tuple(pool.map(lambda item: self._describe_object(*item), keys))
        files = tuple(sorted(files, key=lambda f: f.name))
        return ModelListing(revision=listing_revision(files), files=files)

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[bytes]:
        if not 0 <= start <= end <= file.size:
            raise ValueError(f"bad range [{start}, {end}) for {file.name} of {file.size} bytes")
        if start == end:
            return
        key = self._key(file.name)
        request: dict[str, Any] = {
            "Bucket": self._uri.bucket,
            "Key": key,
            "Range": f"bytes={start}-{end - 1}",
        }
        if file.etag:
            request["IfMatch"] = file.etag
        what = f"{self.describe()}: {file.name} bytes {start}-{end - 1}"
        body = None
        try:
            response = self._client.get_object(**request)
            body = response["Body"]
            yield from exact_range(
                body.iter_chunks(CHUNK_SIZE),
                start=start,
                end=end,
                announced=response.get("ContentLength"),
                what=what,
            )
        except SourceError:
            raise
        except Exception as error:
            raise map_s3_error(error, what=what) from error
        finally:
            if body is not None:
                body.close()

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    # --- listing ----------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self._uri.prefix}/{name}" if self._uri.prefix else name

    def _list_keys(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(relative name, key, listing entry) for every object under the prefix.

        A prefix that names one object exactly (`s3://b/models/model.gguf`) is a one-file model.
        """
        prefix = self._uri.prefix
        list_prefix = f"{prefix}/" if prefix else ""
        found: list[tuple[str, str, dict[str, Any]]] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self._uri.bucket, Prefix=list_prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
            ):
                for entry in page.get("Contents", ()):
                    key = entry["Key"]
                    if key.endswith("/"):
                        continue  # a "directory marker" written by consoles and some tools
                    found.append((key[len(list_prefix) :], key, entry))
            if not found and prefix:
                head = self._client.head_object(Bucket=self._uri.bucket, Key=prefix)
                name = prefix.rsplit("/", 1)[-1]
                entry = {"Size": head["ContentLength"], "ETag": head.get("ETag")}
                found.append((name, prefix, entry))
        except SourceError:
            raise
        except Exception as error:
            if prefix and _is_not_found(error) and _code(error) != "NoSuchBucket":
                return []  # neither objects under prefix/ nor an object named prefix
            raise map_s3_error(error, what=self.describe()) from error
        return found

    def _describe_object(self, name: str, key: str, entry: Mapping[str, Any]) -> RemoteFile:
        size = int(entry["Size"])
        etag = entry.get("ETag") or None
        plain = (etag or "").strip('"').lower()
        multipart = _MULTIPART_ETAG.fullmatch(plain)
        head = self._head(name, key, first_part=bool(multipart))
        if not multipart and plain and head.get("ETag", etag).strip('"').lower() != plain:
            raise SourceUnavailableError(f"{self.describe()}: {name} changed while it was being listed")
        opaque = (
            head.get("ServerSideEncryption") in _OPAQUE_ETAG_ENCRYPTION
            or head.get("SSECustomerAlgorithm") is not None
        )
        md5 = multipart_md5 = None
        part_size = None
        if not opaque and _MD5_ETAG.fullmatch(plain):
            md5 = plain
        elif not opaque and multipart:
            multipart_md5 = plain
            part_size = _part_size(size, parts=int(multipart.group(2)), head=head)
        return RemoteFile(
            name=name,
            size=size,
            md5=md5,
            multipart_md5=multipart_md5,
            multipart_part_size=part_size,
            sha256=None if multipart else _full_object_sha256(head),
            etag=etag,
        )

    def _head(self, name: str, key: str, *, first_part: bool) -> Mapping[str, Any]:
        """HEAD with checksums; with `first_part`, of part 1 (its length is the part size).

        No If-Match: with PartNumber some stores (moto) compare it to the part's ETag. A store that
        refuses PartNumber (some S3-compatibles answer 400 or 501) gets a plain HEAD instead.
        """
        request: dict[str, Any] = {"Bucket": self._uri.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        try:
            if first_part:
                try:
                    return dict(self._client.head_object(**request, PartNumber=1))
                except bce.ClientError as error:
                    if _status(error) in (401, 403, 404):
                        raise
            return dict(self._client.head_object(**request))
        except Exception as error:
            raise map_s3_error(error, what=f"{self.describe()}: {name}") from error

    # --- the client -------------------------------------------------------------------------------

    def _build_client(
        self, params: Mapping[str, str], secret: Mapping[str, str] | None, settings: BackendSettings
    ) -> Any:
        credentials = _credentials_from_secret(secret, where=self.describe())
        region = self._region or (_DEFAULT_REGION_WITH_ENDPOINT if self._endpoint else None)
        config = Config(
            region_name=region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # the engine retries
            max_pool_connections=_pool_size(settings),
            s3={"addressing_style": _addressing_style(params, has_endpoint=bool(self._endpoint))},
            tcp_keepalive=True,
            # The engine hashes every byte itself; botocore's response checksums would only add CPU.
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        )
        try:
            session = boto3.session.Session(region_name=region, **credentials)
            return session.client("s3", endpoint_url=self._endpoint, config=config)
        except Exception as error:
            raise map_s3_error(error, what=self.describe()) from error


def map_s3_error(error: BaseException, *, what: str) -> SourceError:
    """Turn a boto3/botocore/socket exception into one of our typed errors (never a secret)."""
    if isinstance(error, SourceError):
        return error
    if isinstance(error, bce.ClientError):
        code, status = _code(error), _status(error)
        message = error.response.get("Error", {}).get("Message") or ""
        detail = f"{what}: S3 answered {status} {code}" + (f": {message}" if message else "")
        if code == "PreconditionFailed" or status == 412 or code == "InvalidRange" or status == 416:
            return SourceUnavailableError(f"{detail} (the object changed since it was listed)")
        if code in _ACCESS_CODES or (status in (401, 403) and code != "InvalidObjectState"):
            return AccessDeniedError(detail)
        if code in _NOT_FOUND_CODES or status == 404:
            return SourceNotFoundError(detail)
        if code == "InvalidObjectState":
            return SourceNotFoundError(f"{detail} (an archived object: restore it first)")
        if code in _UNAVAILABLE_CODES or status is None or status in (408, 429) or status >= 500:
            return SourceUnavailableError(detail, retry_after=_retry_after(error))
        return BackendNotAvailableError(f"{detail} (this request cannot succeed as made)")
    if isinstance(error, _CREDENTIAL_ERRORS):
        return AccessDeniedError(f"{what}: no usable AWS credentials ({type(error).__name__})")
    if isinstance(error, (bce.NoRegionError, bce.InvalidRegionError, bce.ParamValidationError)):
        return BackendNotAvailableError(f"{what}: {type(error).__name__}: {error}")
    if isinstance(error, (bce.BotoCoreError, OSError)):
        return SourceUnavailableError(f"{what}: {type(error).__name__}: {error}")
    return SourceUnavailableError(f"{what}: unexpected {type(error).__name__}: {error}")


# --- helpers ------------------------------------------------------------------------------------


def _credentials_from_secret(secret: Mapping[str, str] | None, *, where: str) -> dict[str, str]:
    if not secret:
        return {}  # boto3's default chain: IRSA, instance role, environment
    key_id = secret.get("AWS_ACCESS_KEY_ID")
    key = secret.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not key:
        missing = [k for k, v in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", key)) if not v]
        raise AccessDeniedError(f"{where}: the storage secret lacks {', '.join(missing)}")
    credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": key}
    if secret.get("AWS_SESSION_TOKEN"):
        credentials["aws_session_token"] = secret["AWS_SESSION_TOKEN"]
    return credentials


def _addressing_style(params: Mapping[str, str], *, has_endpoint: bool) -> str:
    """`addressingStyle` (path|virtual|auto) wins, then `forcePathStyle`; path when an endpoint is set."""
    style = params.get("addressingStyle", "").lower()
    if style in ("path", "virtual", "auto"):
        return style
    force = params.get("forcePathStyle", "").lower()
    if force in ("true", "1", "yes"):
        return "path"
    if force in ("false", "0", "no"):
        return "auto"
    return "path" if has_endpoint else "auto"


def _pool_size(settings: BackendSettings) -> int:
    """Every part of every file in flight may hold a connection; so may the listing's HEADs."""
    return max(settings.concurrency * settings.multipart_concurrency, _HEAD_CONCURRENCY) + 2


def _part_size(size: int, *, parts: int, head: Mapping[str, Any]) -> int | None:
    """The upload part size, if the `PartNumber=1` HEAD is consistent with `size` and `-N`."""
    length = head.get("ContentLength")
    if parts == 1:
        return size
    if not isinstance(length, int) or length <= 0 or head.get("PartsCount") not in (None, parts):
        return None
    # N-1 full parts and a last part of 1..part bytes; a store that ignored PartNumber fails this.
    if (parts - 1) * length < size <= parts * length:
        return length
    return None


def _full_object_sha256(head: Mapping[str, Any]) -> str | None:
    value = head.get("ChecksumSHA256")
    if not value or "-" in value or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


def _code(error: BaseException) -> str:
    if isinstance(error, bce.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _status(error: bce.ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def _is_not_found(error: BaseException) -> bool:
    if not isinstance(error, bce.ClientError):
        return False
    return _code(error) in _NOT_FOUND_CODES or _status(error) == 404


def _retry_after(error: bce.ClientError) -> float | None:
    headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; rare for S3, and the engine's backoff is a fine fallback


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
