"""Storage URIs of OME model resources, parsed into typed values, and the path rules around them.

`spec.storage.storageUri` names where a model comes from (`hf://`, `s3://`, `oci://`, `pvc://`,
`vendor://`); `spec.storage.parameters` adds what the URI cannot say (an S3 endpoint, an OCI auth
type, a default revision). Parsing happens once, here, so every later layer (the watcher, the
workflows, the download backends) works on a checked value and never re-splits a string. Errors
are `InvalidStorageUriError` with the URI quoted, because that message ends up in the resource's
status where an operator has to fix it.

The path helpers guard the local disk: `validate_model_path` checks `spec.storage.path`, and
`safe_relative_path` checks every object name a source returns before it becomes a file name.
See docs/storage-uris.md for the accepted forms and the decisions behind them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from modelferry.errors import InvalidStorageUriError, UnsafePathError

SUPPORTED_SCHEMES = ("hf", "s3", "oci", "pvc", "vendor")
DEFAULT_HF_REVISION = "main"

RevisionSource = Literal["uri", "parameters", "default"]


class OciAuthType(StrEnum):
    INSTANCE_PRINCIPAL = "InstancePrincipal"
    USER_PRINCIPAL = "UserPrincipal"
    RESOURCE_PRINCIPAL = "ResourcePrincipal"
    OKE_WORKLOAD_IDENTITY = "OkeWorkloadIdentity"


# --- typed values ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StorageUriBase:
    """What every parsed URI has: its scheme and the original text."""

    scheme: ClassVar[str]
    uri: str

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class HuggingFaceUri(StorageUriBase):
    scheme: ClassVar[str] = "hf"
    repo_id: str
    revision: str = DEFAULT_HF_REVISION
    revision_source: RevisionSource = "default"

    def describe(self) -> str:
        return f"Hugging Face repository {self.repo_id} at revision {self.revision}"


@dataclass(frozen=True, kw_only=True)
class S3Uri(StorageUriBase):
    scheme: ClassVar[str] = "s3"
    bucket: str
    prefix: str = ""  # no leading or trailing '/'; "" is the whole bucket
    endpoint: str | None = None
    region: str | None = None

    def describe(self) -> str:
        where = f"s3 bucket {self.bucket}" + (f" prefix {self.prefix}" if self.prefix else "")
        if self.endpoint:
            where += f" at {self.endpoint}"
        if self.region:
            where += f" in {self.region}"
        return where


@dataclass(frozen=True, kw_only=True)
class OciUri(StorageUriBase):
    scheme: ClassVar[str] = "oci"
    namespace: str
    bucket: str
    prefix: str = ""  # no leading or trailing '/'; "" is the whole bucket
    region: str | None = None
    auth_type: OciAuthType = OciAuthType.INSTANCE_PRINCIPAL

    def describe(self) -> str:
        where = f"OCI Object Storage namespace {self.namespace} bucket {self.bucket}"
        if self.prefix:
            where += f" prefix {self.prefix}"
        if self.region:
            where += f" in {self.region}"
        return f"{where} ({self.auth_type.value})"


@dataclass(frozen=True, kw_only=True)
class PvcUri(StorageUriBase):
    scheme: ClassVar[str] = "pvc"
    namespace: str | None
    claim_name: str
    sub_path: str = ""  # normalised relative path; "" is the volume's root

    def describe(self) -> str:
        claim = f"{self.namespace}/{self.claim_name}" if self.namespace else self.claim_name
        return f"PersistentVolumeClaim {claim}" + (f" path {self.sub_path}" if self.sub_path else "")


@dataclass(frozen=True, kw_only=True)
class VendorUri(StorageUriBase):
    scheme: ClassVar[str] = "vendor"
    vendor: str
    resource_type: str
    path: str

    def describe(self) -> str:
        return f"vendor {self.vendor} {self.resource_type} {self.path}"


StorageUri = HuggingFaceUri | S3Uri | OciUri | PvcUri | VendorUri


# --- parsing ---------------------------------------------------------------------------------

_FORMS = {
    "hf": "hf://{org}/{repo}[@{revision}]",
    "s3": "s3://{bucket}/{prefix}",
    "oci": "oci://n/{namespace}/b/{bucket}/o/{prefix}",
    "pvc": "pvc://[{namespace}:]{pvc-name}/{sub-path}",
    "vendor": "vendor://{vendor}/{resource-type}/{path}",
}

# The Hub's repo-id rules: word characters, '-' and '.', at most 96 per part, starting and ending
# with a letter, digit or '_', with neither '--' nor '..' anywhere.
_HF_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_HF_REVISION = re.compile(r"[A-Za-z0-9_.\-/]{1,255}")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_OCI_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_OCI_BUCKET = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_VENDOR_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # control characters and spaces: never valid in a URI


def parse_storage_uri(
    uri: str, *, parameters: Mapping[str, str] | None = None, cluster_scoped: bool = False
) -> StorageUri:
    """Parse `uri` (with `spec.storage.parameters`) into one typed value per scheme.

    `cluster_scoped` is True for a ClusterBaseModel, which must name a PVC's namespace.
    Raises InvalidStorageUriError, whose message quotes the URI and says what is wrong.
    """
    params = {k: v for k, v in (parameters or {}).items() if v != ""}
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise _error(uri, f"expected {{scheme}}://...; supported schemes: {_supported()}")
    scheme = scheme.lower()  # schemes are case-insensitive (RFC 3986)
    if scheme not in _FORMS:
        raise _error(uri, f"unsupported scheme '{scheme}'; supported schemes: {_supported()}")
    if _CONTROL.search(uri):
        raise _error(uri, "contains whitespace or control characters")
    if scheme == "hf":
        return _parse_hf(uri, rest, params)
    if scheme == "s3":
        return _parse_s3(uri, rest, params)
    if scheme == "oci":
        return _parse_oci(uri, rest, params)
    if scheme == "pvc":
        return _parse_pvc(uri, rest, cluster_scoped=cluster_scoped)
    return _parse_vendor(uri, rest)


def _parse_hf(uri: str, rest: str, params: Mapping[str, str]) -> HuggingFaceUri:
    repo_text, at, uri_revision = rest.partition("@")
    parts = repo_text.split("/")
    if not repo_text or len(parts) > 2 or not all(parts):
        raise _expected(uri, "hf")
    for part in parts:
        if not _HF_PART.fullmatch(part) or "--" in part or ".." in part:
            raise _error(
                uri,
                f"'{part}' is not a valid repository name part (letters, digits, '-', '_', '.'; "
                "at most 96; no '--' or '..'; must not start or end with '-' or '.')",
            )
    if parts[-1].endswith(".git"):
        raise _error(uri, "the repository name must not end with '.git'")
    revision: str
    source: RevisionSource
    if at:
        revision, source = uri_revision, "uri"
    elif "revision" in params:
        revision, source = params["revision"], "parameters"
    else:
        revision, source = DEFAULT_HF_REVISION, "default"
    where = "after '@'" if source == "uri" else "in parameters.revision"
    if not _HF_REVISION.fullmatch(revision) or ".." in revision or revision.startswith("/"):
        raise _error(uri, f"revision '{revision}' {where} is not a valid branch, tag or commit")
    if revision.endswith("/") or "//" in revision:
        raise _error(uri, f"revision '{revision}' {where} is not a valid branch, tag or commit")
    return HuggingFaceUri(uri=uri, repo_id="/".join(parts), revision=revision, revision_source=source)


def _parse_s3(uri: str, rest: str, params: Mapping[str, str]) -> S3Uri:
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise _expected(uri, "s3")
    if not _S3_BUCKET.fullmatch(bucket) or ".." in bucket or _IPV4.fullmatch(bucket):
        raise _error(
            uri,
            f"'{bucket}' is not a valid bucket name (3-63 characters: lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit, not an IP address)",
        )
    endpoint = params.get("endpoint")
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", endpoint):
        raise _error(uri, f"parameters.endpoint '{endpoint}' must be an http:// or https:// URL")
    return S3Uri(
        uri=uri,
        bucket=bucket,
        prefix=_object_prefix(uri, prefix),
        endpoint=endpoint,
        region=params.get("region"),
    )


def _parse_oci(uri: str, rest: str, params: Mapping[str, str]) -> OciUri:
    parts = rest.split("/", 5)
    if len(parts) < 4 or parts[0] != "n" or parts[2] != "b" or not parts[1] or not parts[3]:
        raise _expected(uri, "oci")
    # '.../b/{bucket}', '.../b/{bucket}/' and '.../b/{bucket}/o[/]' all name the whole bucket.
    if len(parts) > 4 and not (parts[4] == "o" or (parts[4] == "" and len(parts) == 5)):
        raise _expected(uri, "oci")
    namespace, bucket = parts[1], parts[3]
    prefix = parts[5] if len(parts) == 6 else ""
    if not _OCI_NAMESPACE.fullmatch(namespace):
        raise _error(uri, f"'{namespace}' is not a valid Object Storage namespace")
    if not _OCI_BUCKET.fullmatch(bucket):
        raise _error(
            uri, f"'{bucket}' is not a valid bucket name (letters, digits, '-', '_', '.'; at most 256)"
        )
    return OciUri(
        uri=uri,
        namespace=namespace,
        bucket=bucket,
        prefix=_object_prefix(uri, prefix),
        region=params.get("region"),
        auth_type=_oci_auth_type(uri, params),
    )


def _oci_auth_type(uri: str, params: Mapping[str, str]) -> OciAuthType:
    given = {key: params[key] for key in ("auth_type", "authType") if key in params}
    if len(set(given.values())) > 1:
        raise _error(uri, "parameters.auth_type and parameters.authType disagree; give one")
    if not given:
        return OciAuthType.INSTANCE_PRINCIPAL
    key, value = next(iter(given.items()))
    try:
        return OciAuthType(value)
    except ValueError:
        allowed = ", ".join(t.value for t in OciAuthType)
        raise _error(uri, f"parameters.{key} '{value}' is not one of: {allowed}") from None


def _parse_pvc(uri: str, rest: str, *, cluster_scoped: bool) -> PvcUri:
    claim_text, _, sub_path = rest.partition("/")
    namespace: str | None = None
    if ":" in claim_text:
        namespace, _, claim_text = claim_text.partition(":")
        if not namespace:
            raise _expected(uri, "pvc")
    if not claim_text:
        raise _expected(uri, "pvc")
    if namespace is not None and not _DNS_LABEL.fullmatch(namespace):
        raise _error(uri, f"namespace '{namespace}' is not a valid DNS-1123 label")
    if not _is_dns_subdomain(claim_text):
        raise _error(uri, f"claim name '{claim_text}' is not a valid DNS-1123 subdomain")
    if cluster_scoped and namespace is None:
        raise _error(
            uri, "a ClusterBaseModel must name the claim's namespace: pvc://{namespace}:{pvc-name}/{sub-path}"
        )
    # A filesystem path: 'a//b' and 'a/./b' mean 'a/b', so normalise; '..' would leave the claim.
    segments = [s for s in sub_path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise _error(uri, "the sub-path must not contain '..'")
    if "\\" in sub_path:
        raise _error(uri, "the sub-path must not contain backslashes (a path inside the claim uses '/')")
    _check_name_lengths(segments, fail=lambda problem: _error(uri, f"the sub-path {problem}"))
    return PvcUri(uri=uri, namespace=namespace, claim_name=claim_text, sub_path="/".join(segments))


def _parse_vendor(uri: str, rest: str) -> VendorUri:
    parts = rest.split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise _expected(uri, "vendor")
    vendor, resource_type, path = parts
    for label, value in (("vendor", vendor), ("resource type", resource_type)):
        if not _VENDOR_NAME.fullmatch(value):
            raise _error(uri, f"{label} '{value}' must be letters, digits, '-', '_' and '.'")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise _error(uri, "the path must not contain empty, '.' or '..' segments")
    return VendorUri(uri=uri, vendor=vendor, resource_type=resource_type, path=path)


def _object_prefix(uri: str, prefix: str) -> str:
    """An object-store prefix: keys are literal, so 'a//b' is not 'a/b' and is refused, not fixed."""
    prefix = prefix.removesuffix("/")
    if not prefix:
        return ""
    if any(s in ("", ".", "..") for s in prefix.split("/")):
        raise _error(uri, "the prefix must not contain empty, '.' or '..' segments")
    return prefix


def _is_dns_subdomain(name: str) -> bool:
    # Kubernetes' IsDNS1123Subdomain, as for a claim's metadata.name: at most 253 characters in all,
    # dot-separated parts of any length. Mirrors modelferry.spec.rules.is_dns_subdomain (which
    # imports this module, so cannot be imported here); a unit test keeps the two in step.
    return (
        0 < len(name) <= 253
        and re.fullmatch(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", name)
        is not None
    )


def _supported() -> str:
    return ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)


def _expected(uri: str, scheme: str) -> InvalidStorageUriError:
    return _error(uri, f"expected {_FORMS[scheme]}")


def _error(uri: str, problem: str) -> InvalidStorageUriError:
    return InvalidStorageUriError(f"storage URI '{_shown(uri)}': {problem}")


_SHOWN_MAX = 200  # a message lands in the resource's status: quote enough to recognise the value


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_MAX else f"{text[:_SHOWN_MAX]}... ({len(text)} characters)"


# Linux's NAME_MAX and PATH_MAX, the limits of every filesystem a node is likely to use; the node
# checks its real filesystem's limits again before the first byte (modelferry.ownership).
NAME_MAX = 255
PATH_MAX = 4096


def _check_name_lengths(segments: list[str], *, fail: Callable[[str], Exception]) -> None:
    for segment in segments:
        size = len(segment.encode())
        if size > NAME_MAX:
            raise fail(f"has a part of {size} bytes; a file name can have at most {NAME_MAX}")
    total = sum(len(s.encode()) + 1 for s in segments)
    if total >= PATH_MAX:
        raise fail(f"is {total} bytes long; a path can have at most {PATH_MAX - 1}")


# --- local paths -----------------------------------------------------------------------------


def validate_model_path(path: str) -> str:
    """Check `spec.storage.path`: absolute, normalised, not the root; returns it unchanged.

    Normalised means no '//', no trailing '/', no '.' segment; a '..' segment is refused outright.
    Raises UnsafePathError with the path quoted.
    """

    def fail(problem: str) -> UnsafePathError:
        return UnsafePathError(f"storage path '{_shown(path)}': {problem}")

    if not path.startswith("/"):
        raise fail("must be absolute")
    if path == "/":
        raise fail("must not be the filesystem root")
    if _CONTROL_NO_SPACE.search(path) or "\\" in path:
        raise fail("must not contain control characters or backslashes")
    segments = path[1:].split("/")
    if ".." in segments:
        raise fail("must not contain '..'")
    if "" in segments:
        raise fail("must be normalised (no '//' and no trailing '/')")
    if "." in segments:
        raise fail("must be normalised (no '.' segments)")
    _check_name_lengths(segments, fail=fail)
    return path


_CONTROL_NO_SPACE = re.compile(r"[\x00-\x1f\x7f]")  # spaces are legal in file names; these are not


def safe_relative_path(name: str) -> PurePosixPath:
    """Turn an object name from a source into a relative path that stays inside the model dir.

    Refuses empty names, absolute names, '..', empty or '.' segments, backslashes and control
    characters (NUL, newline, ...), raising UnsafePathError with the name quoted.
    """

    def fail(problem: str) -> UnsafePathError:
        return UnsafePathError(f"object name '{name}': {problem}")

    if not name:
        raise fail("is empty")
    if name.startswith("/"):
        raise fail("must be relative")
    if _CONTROL_NO_SPACE.search(name) or "\\" in name:
        raise fail("must not contain control characters or backslashes")
    segments = name.split("/")
    if ".." in segments:
        raise fail("must not contain '..'")
    if "" in segments or "." in segments:
        raise fail("must not contain empty or '.' segments")
    return PurePosixPath(name)
