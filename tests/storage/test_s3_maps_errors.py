"""S3 failures become our typed errors: permanent ones stop, temporary ones carry what a retry needs.

Real answers come from moto (bad credentials with IAM auth on, missing keys); network faults moto
cannot produce come from a small proxy in front of it; the remaining codes are a pure table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from activities.storage.registry import BackendSettings
from activities.storage.s3 import S3Backend, map_s3_error
from modelferry.errors import (
    AccessDeniedError,
    BackendNotAvailableError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from modelferry.storage_uri import S3Uri, parse_storage_uri
from tests.servers.fake_oci import Fault
from tests.servers.moto_s3 import CREDENTIALS, free_port, running_moto_server, s3_client
from tests.servers.s3_fault_proxy import S3FaultProxy, running_s3_fault_proxy

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def seeded(moto: str) -> str:
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto)
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="m/weights.bin", Body=DATA)
    return bucket


@pytest.fixture
def proxy(moto: str) -> Iterator[S3FaultProxy]:
    with running_s3_fault_proxy(moto) as p:
        yield p


def open_s3(endpoint: str, uri: str, *, read_timeout: float = 10.0, secret: Any = CREDENTIALS) -> S3Backend:
    params = {"endpoint": endpoint}
    settings = BackendSettings(read_timeout=read_timeout, connect_timeout=2.0)
    parsed = parse_storage_uri(uri, parameters=params)
    assert isinstance(parsed, S3Uri)
    return S3Backend(parsed, parameters=params, secret=secret, settings=settings)


def test_unknown_credentials_are_access_denied() -> None:
    with running_moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:
        backend = open_s3(
            strict,
            "s3://guarded/m",
            secret={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "x"},
        )
        with pytest.raises(AccessDeniedError, match="InvalidAccessKeyId"):
            backend.list_files()


def test_a_key_deleted_after_listing_is_not_found(moto: str, seeded: str) -> None:
    client = s3_client(moto)
    client.put_object(Bucket=seeded, Key="gone/a.bin", Body=b"soon gone")
    backend = open_s3(moto, f"s3://{seeded}/gone")
    (remote,) = backend.list_files().files
    client.delete_object(Bucket=seeded, Key="gone/a.bin")
    with pytest.raises(SourceNotFoundError, match="NoSuchKey"):
        list(backend.read_range(remote, 0, remote.size))


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        (Fault("status", method="LIST", status=403, code="AccessDenied"), AccessDeniedError, "AccessDenied"),
        (Fault("status", method="HEAD", status=403, code="AccessDenied"), AccessDeniedError, "403"),
        (Fault("status", method="LIST", status=503, code="SlowDown"), SourceUnavailableError, "SlowDown"),
    ],
)
def test_listing_failures(proxy: S3FaultProxy, seeded: str, fault: Fault, error: type, text: str) -> None:
    proxy.add_fault(fault)
    with pytest.raises(error, match=text):
        open_s3(proxy.endpoint, f"s3://{seeded}/m").list_files()


def test_throttling_carries_retry_after(proxy: S3FaultProxy, seeded: str) -> None:
    backend = open_s3(proxy.endpoint, f"s3://{seeded}/m")
    (remote,) = backend.list_files().files
    proxy.add_fault(Fault("status", status=503, code="SlowDown", retry_after=7))
    with pytest.raises(SourceUnavailableError) as caught:
        list(backend.read_range(remote, 0, 10))
    assert caught.value.retry_after == 7.0
    assert b"".join(backend.read_range(remote, 0, 10)) == DATA[:10]  # the next try is clean


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_a_broken_body_fails_mid_iteration(proxy: S3FaultProxy, seeded: str, kind: str) -> None:
    backend = open_s3(proxy.endpoint, f"s3://{seeded}/m")
    (remote,) = backend.list_files().files
    proxy.add_fault(Fault(kind, after_bytes=100_000))
    received = 0
    with pytest.raises(SourceUnavailableError):
        for chunk in backend.read_range(remote, 0, remote.size):
            received += len(chunk)
    assert received < remote.size


def test_a_stalled_body_times_out_as_temporary(proxy: S3FaultProxy, seeded: str) -> None:
    backend = open_s3(proxy.endpoint, f"s3://{seeded}/m", read_timeout=0.5)
    (remote,) = backend.list_files().files
    proxy.add_fault(Fault("stall", after_bytes=1000, stall_seconds=20))
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=r"(?i)timeout|timed out"):
        list(backend.read_range(remote, 0, remote.size))
    assert time.monotonic() - started < 5


def test_a_refused_connection_is_temporary(seeded: str) -> None:
    backend = open_s3(f"http://127.0.0.1:{free_port()}", f"s3://{seeded}/m")
    with pytest.raises(SourceUnavailableError):
        backend.list_files()


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "error", "text"),
    [
        ("AccessDenied", 403, AccessDeniedError, "AccessDenied"),
        ("SignatureDoesNotMatch", 403, AccessDeniedError, "Signature"),
        ("ExpiredToken", 400, AccessDeniedError, "ExpiredToken"),
        ("403", 403, AccessDeniedError, "403"),
        ("NoSuchKey", 404, SourceNotFoundError, "NoSuchKey"),
        ("404", 404, SourceNotFoundError, "404"),
        ("InvalidObjectState", 403, SourceNotFoundError, "archived"),
        ("PreconditionFailed", 412, SourceUnavailableError, "changed"),
        ("InvalidRange", 416, SourceUnavailableError, "changed"),
        ("SlowDown", 503, SourceUnavailableError, "SlowDown"),
        ("InternalError", 500, SourceUnavailableError, "InternalError"),
        ("RequestTimeout", 400, SourceUnavailableError, "RequestTimeout"),
        ("TooManyRequests", 429, SourceUnavailableError, "429"),
        ("InvalidArgument", 400, BackendNotAvailableError, "cannot succeed"),
    ],
)
def test_error_codes(code: str, status: int, error: type, text: str) -> None:
    mapped = map_s3_error(client_error(code, status), what="s3://b/p")
    assert type(mapped) is error
    assert text in str(mapped) and "s3://b/p" in str(mapped)


def test_other_client_failures() -> None:
    assert isinstance(map_s3_error(NoCredentialsError(), what="w"), AccessDeniedError)
    assert isinstance(
        map_s3_error(EndpointConnectionError(endpoint_url="http://x"), what="w"), SourceUnavailableError
    )
    assert isinstance(map_s3_error(ConnectionResetError(), what="w"), SourceUnavailableError)
    throttled = map_s3_error(client_error("SlowDown", 503, {"retry-after": "2.5"}), what="w")
    assert isinstance(throttled, SourceUnavailableError) and throttled.retry_after == 2.5


def test_a_store_refusing_part_number_heads_still_lists_multipart_objects(
    moto: str, seeded: str, proxy: S3FaultProxy, tmp_path: Any
) -> None:
    path = tmp_path / "big"
    path.write_bytes(bytes(11 * 1024 * 1024))
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3_client(moto).upload_file(str(path), seeded, "mp/w.bin", Config=config)
    proxy.add_fault(Fault("status", method="HEAD", name="mp/w.bin", status=501, code="NotImplemented"))
    (remote,) = open_s3(proxy.endpoint, f"s3://{seeded}/mp").list_files().files
    assert proxy.faults == []
    assert remote.multipart_md5 and remote.multipart_md5.endswith("-3")
    assert remote.multipart_part_size is None  # unknown, so the engine checks the size only
