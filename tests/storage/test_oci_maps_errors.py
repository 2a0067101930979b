"""OCI failures become our typed errors: permanent ones stop, temporary ones carry what a retry needs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import oci as oci_sdk
import pytest

from activities.storage.oci import OciBackend, map_oci_error
from activities.storage.registry import BackendSettings
from modelferry.errors import (
    AccessDeniedError,
    BackendNotAvailableError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from modelferry.storage_uri import OciUri, parse_storage_uri
from tests.servers.fake_oci import FakeOciServer, Fault, running_fake_oci
from tests.servers.moto_s3 import free_port
from tests.servers.oci_keys import OciTestIdentity, make_identity

BUCKET = "models"
DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def identity() -> OciTestIdentity:
    return make_identity()


@pytest.fixture
def server(identity: OciTestIdentity) -> Iterator[FakeOciServer]:
    with running_fake_oci(public_key=identity.private_key.public_key(), key_id=identity.key_id) as fake:
        fake.put_object(BUCKET, "m/weights.bin", DATA)
        yield fake


def open_oci(endpoint: str, identity: OciTestIdentity, *, read_timeout: float = 10.0) -> OciBackend:
    params = {"endpoint": endpoint, "auth_type": "UserPrincipal"}
    uri = parse_storage_uri(f"oci://n/testns/b/{BUCKET}/o/m", parameters=params)
    settings = BackendSettings(read_timeout=read_timeout, connect_timeout=2.0)
    assert isinstance(uri, OciUri)
    return OciBackend(uri, parameters=params, secret=identity.secret(), settings=settings)


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        (Fault("status", status=500, code="InternalServerError"), SourceUnavailableError, "500"),
        (Fault("status", status=503, code="ServiceUnavailable"), SourceUnavailableError, "503"),
        (Fault("status", status=403, code="Forbidden"), AccessDeniedError, "403"),
        (Fault("status", status=404, code="NotAuthorizedOrNotFound"), SourceNotFoundError, "not authorized"),
        (Fault("status", status=409, code="NotRestored"), SourceNotFoundError, "restore"),
        (Fault("status", status=400, code="InvalidParameter"), BackendNotAvailableError, "cannot succeed"),
    ],
)
def test_read_statuses(
    server: FakeOciServer, identity: OciTestIdentity, fault: Fault, error: type, text: str
) -> None:
    backend = open_oci(server.endpoint, identity)
    (remote,) = backend.list_files().files
    server.add_fault(fault)
    with pytest.raises(error, match=text):
        list(backend.read_range(remote, 0, 10))


def test_throttling_carries_retry_after_and_the_next_try_is_clean(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    backend = open_oci(server.endpoint, identity)
    (remote,) = backend.list_files().files
    server.add_fault(Fault("status", status=429, code="TooManyRequests", retry_after=3))
    with pytest.raises(SourceUnavailableError, match="429") as caught:
        list(backend.read_range(remote, 0, 10))
    assert caught.value.retry_after == 3.0
    assert b"".join(backend.read_range(remote, 0, 10)) == DATA[:10]


def test_listing_failures_are_typed(server: FakeOciServer, identity: OciTestIdentity) -> None:
    server.add_fault(Fault("status", method="LIST", status=503, code="ServiceUnavailable", retry_after=1))
    with pytest.raises(SourceUnavailableError) as caught:
        open_oci(server.endpoint, identity).list_files()
    assert caught.value.retry_after == 1.0
    server.add_fault(Fault("status", method="LIST", status=401, code="NotAuthenticated"))
    with pytest.raises(AccessDeniedError):
        open_oci(server.endpoint, identity).list_files()


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_a_broken_body_fails_mid_iteration(
    server: FakeOciServer, identity: OciTestIdentity, kind: str
) -> None:
    backend = open_oci(server.endpoint, identity)
    (remote,) = backend.list_files().files
    server.add_fault(Fault(kind, after_bytes=300_000))
    received = 0
    with pytest.raises(SourceUnavailableError):
        for chunk in backend.read_range(remote, 0, remote.size):
            received += len(chunk)
    assert received < remote.size


def test_a_stalled_body_times_out_as_temporary(server: FakeOciServer, identity: OciTestIdentity) -> None:
    backend = open_oci(server.endpoint, identity, read_timeout=0.5)
    (remote,) = backend.list_files().files
    server.add_fault(Fault("stall", after_bytes=1000, stall_seconds=20))
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"(?i)timed out|timeout"):
        list(backend.read_range(remote, 0, remote.size))
    assert time.monotonic() - started < 5


def test_a_file_listed_but_gone_is_not_found(server: FakeOciServer, identity: OciTestIdentity) -> None:
    backend = open_oci(server.endpoint, identity)
    (remote,) = backend.list_files().files
    server.buckets[BUCKET]["m/weights.bin"].missing = True
    with pytest.raises(SourceNotFoundError, match="ObjectNotFound"):
        list(backend.read_range(remote, 0, 10))


def test_a_refused_connection_is_temporary(identity: OciTestIdentity) -> None:
    with pytest.raises(SourceUnavailableError):
        open_oci(f"http://127.0.0.1:{free_port()}", identity).list_files()


@pytest.mark.parametrize(
    ("status", "code", "error", "text"),
    [
        (401, "NotAuthenticated", AccessDeniedError, "401"),
        (404, "BucketNotFound", SourceNotFoundError, "BucketNotFound"),
        (404, "ObjectNotFound", SourceNotFoundError, "ObjectNotFound"),
        (404, "NotAuthorizedOrNotFound", SourceNotFoundError, "not found, or not authorized"),
        (412, "IfMatchFailed", SourceUnavailableError, "changed"),
        (416, "InvalidRange", SourceUnavailableError, "changed"),
        (429, "TooManyRequests", SourceUnavailableError, "429"),
        (500, "InternalServerError", SourceUnavailableError, "500"),
        (-1, None, SourceUnavailableError, "-1"),
        (400, "InvalidParameter", BackendNotAvailableError, "InvalidParameter"),
    ],
)
def test_service_error_table(status: int, code: str | None, error: type, text: str) -> None:
    headers = {"retry-after": "4"} if status == 429 else {}
    mapped = map_oci_error(oci_sdk.exceptions.ServiceError(status, code, headers, "msg"), what="oci://x")
    assert type(mapped) is error and text in str(mapped)
    if status == 429:
        assert isinstance(mapped, SourceUnavailableError) and mapped.retry_after == 4.0


def test_client_side_failures() -> None:
    assert isinstance(map_oci_error(oci_sdk.exceptions.InvalidPrivateKey("bad"), what="w"), AccessDeniedError)
    assert isinstance(
        map_oci_error(oci_sdk.exceptions.RequestException("reset"), what="w"), SourceUnavailableError
    )
    assert isinstance(map_oci_error(ConnectionResetError(), what="w"), SourceUnavailableError)
