"""The s3 backend against a real S3 API (moto_server): listing, checksums, ranged reads, credentials."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

import activities.storage.s3 as s3_module
from activities.storage.registry import BackendSettings, open_backend
from activities.storage.s3 import CHUNK_SIZE, S3Backend
from modelferry.errors import AccessDeniedError, SourceNotFoundError, SourceUnavailableError
from modelferry.storage_uri import S3Uri, parse_storage_uri
from tests.servers.moto_s3 import CREDENTIALS, running_moto_server, s3_client

MIB = 1024 * 1024
PART = 5 * MIB  # S3's (and moto's) smallest part size


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture
def client(endpoint: str) -> Any:
    return s3_client(endpoint)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def open_s3(endpoint: str, uri: str, *, secret: dict[str, str] | None = None, **params: str) -> S3Backend:
    params = {"endpoint": endpoint, **params}
    parsed = parse_storage_uri(uri, parameters=params)
    assert isinstance(parsed, S3Uri)
    return S3Backend(parsed, parameters=params, secret=CREDENTIALS if secret is None else secret)


def multipart_md5(data: bytes, part: int) -> str:
    digests = [hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def upload_multipart(client: Any, bucket: str, key: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / uuid.uuid4().hex
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, use_threads=False)
    client.upload_file(str(path), bucket, key, Config=config)


def test_lists_relative_names_with_md5_and_multipart_checksums(
    endpoint: str, client: Any, bucket: str, tmp_path: Path
) -> None:
    config = b'{"architectures": ["LlamaForCausalLM"]}'
    tokenizer = os.urandom(3000)
    weights = os.urandom(2 * PART + 12345)  # three parts: 5 MiB, 5 MiB, the rest
    client.put_object(Bucket=bucket, Key="llama/config.json", Body=config)
    client.put_object(Bucket=bucket, Key="llama/sub/tokenizer.json", Body=tokenizer)
    client.put_object(Bucket=bucket, Key="llama/sub/", Body=b"")  # a console's "folder"
    client.put_object(Bucket=bucket, Key="llama-other/x.bin", Body=b"not this model")
    client.put_object(Bucket=bucket, Key="llamaX", Body=b"nor this")
    upload_multipart(client, bucket, "llama/model.safetensors", weights, tmp_path)

    listing = open_s3(endpoint, f"s3://{bucket}/llama").list_files()

    by_name = {f.name: f for f in listing.files}
    assert sorted(by_name) == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    assert by_name["config.json"].md5 == hashlib.md5(config).hexdigest()
    assert by_name["config.json"].size == len(config)
    assert by_name["sub/tokenizer.json"].md5 == hashlib.md5(tokenizer).hexdigest()
    big = by_name["model.safetensors"]
    assert (big.md5, big.size) == (None, len(weights))
    assert big.multipart_md5 == multipart_md5(weights, PART)
    assert big.multipart_part_size == PART
    assert all(f.etag for f in listing.files)
    assert len(listing.revision) == 64 and listing.total_bytes == len(config) + len(tokenizer) + len(weights)


def test_reads_exact_byte_ranges_in_bounded_chunks(
    endpoint: str, client: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(2 * PART + 777)
    upload_multipart(client, bucket, "m/w.bin", data, tmp_path)
    backend = open_s3(endpoint, f"s3://{bucket}/m")
    (remote,) = backend.list_files().files

    for start, end in [(0, 1), (PART - 10, PART + 10), (0, len(data)), (len(data) - 5, len(data))]:
        chunks = list(backend.read_range(remote, start, end))
        assert b"".join(chunks) == data[start:end]
        assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)
    assert list(backend.read_range(remote, 7, 7)) == []
    backend.close()


def test_a_prefix_naming_one_object_is_a_one_file_model(endpoint: str, client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="gguf/model-q4.gguf", Body=b"GGUF....")
    listing = open_s3(endpoint, f"s3://{bucket}/gguf/model-q4.gguf").list_files()
    assert [(f.name, f.size) for f in listing.files] == [("model-q4.gguf", 8)]


def test_directory_listing_pages_through_every_key(
    endpoint: str, client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "LIST_PAGE_SIZE", 2)
    for i in range(5):
        client.put_object(Bucket=bucket, Key=f"p/shard-{i}.bin", Body=bytes([i]) * (i + 1))
    listing = open_s3(endpoint, f"s3://{bucket}/p").list_files()
    assert [f.name for f in listing.files] == [f"shard-{i}.bin" for i in range(5)]


def test_a_full_object_sha256_checksum_is_offered(endpoint: str, client: Any, bucket: str) -> None:
    data = b"weights with a checksum"
    client.put_object(Bucket=bucket, Key="c/a.bin", Body=data, ChecksumAlgorithm="SHA256")
    (remote,) = open_s3(endpoint, f"s3://{bucket}/c").list_files().files
    assert remote.sha256 == hashlib.sha256(data).hexdigest()
    assert remote.md5 == hashlib.md5(data).hexdigest()


def test_kms_encrypted_objects_offer_no_md5(endpoint: str, client: Any, bucket: str) -> None:
    # With SSE-KMS the ETag is not the MD5 of the bytes (moto still sends one; AWS does not).
    client.put_object(Bucket=bucket, Key="k/a.bin", Body=b"secret weights", ServerSideEncryption="aws:kms")
    (remote,) = open_s3(endpoint, f"s3://{bucket}/k").list_files().files
    assert (remote.md5, remote.multipart_md5, remote.size) == (None, None, 14)
    assert remote.etag


def test_revision_is_stable_and_follows_content_changes(endpoint: str, client: Any, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="r/a.txt", Body=b"one")
    backend = open_s3(endpoint, f"s3://{bucket}/r")
    first, again = backend.list_files().revision, backend.list_files().revision
    client.put_object(Bucket=bucket, Key="r/a.txt", Body=b"two")
    assert first == again != backend.list_files().revision


def test_an_object_replaced_after_listing_fails_the_read_as_changed(
    endpoint: str, client: Any, bucket: str
) -> None:
    client.put_object(Bucket=bucket, Key="x/a.bin", Body=b"original bytes")
    backend = open_s3(endpoint, f"s3://{bucket}/x")
    (remote,) = backend.list_files().files
    client.put_object(Bucket=bucket, Key="x/a.bin", Body=b"replaced bytes")
    with pytest.raises(SourceUnavailableError, match="changed"):
        b"".join(backend.read_range(remote, 0, remote.size))


def test_missing_bucket_and_empty_prefix_are_not_found(endpoint: str, bucket: str) -> None:
    with pytest.raises(SourceNotFoundError, match="NoSuchBucket"):
        open_s3(endpoint, "s3://no-such-bucket-here/m").list_files()
    with pytest.raises(SourceNotFoundError, match="no objects"):
        open_s3(endpoint, f"s3://{bucket}/nothing/here").list_files()


def test_an_incomplete_secret_is_access_denied_without_echoing_it(endpoint: str) -> None:
    with pytest.raises(AccessDeniedError, match="AWS_SECRET_ACCESS_KEY") as caught:
        open_s3(endpoint, "s3://abc/m", secret={"AWS_ACCESS_KEY_ID": "AKIA-VISIBLE-ONLY-HERE"})
    assert "AKIA-VISIBLE-ONLY-HERE" not in str(caught.value)


def test_without_a_secret_the_default_credential_chain_is_used(
    endpoint: str, client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-from-the-environment")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client.put_object(Bucket=bucket, Key="d/a.txt", Body=b"hi")
    params = {"endpoint": endpoint}
    parsed = parse_storage_uri(f"s3://{bucket}/d", parameters=params)
    assert isinstance(parsed, S3Uri)
    backend = S3Backend(parsed, parameters=params)
    assert [f.name for f in backend.list_files().files] == ["a.txt"]
    credentials = backend._client._request_signer._credentials.get_frozen_credentials()
    assert credentials.access_key == "from-the-environment"


def test_a_session_token_in_the_secret_is_used(endpoint: str) -> None:
    secret = {**CREDENTIALS, "AWS_SESSION_TOKEN": "session-token"}
    backend = open_s3(endpoint, "s3://abc/m", secret=secret)
    assert backend._client._request_signer._credentials.get_frozen_credentials().token == "session-token"


@pytest.mark.parametrize(
    ("params", "has_endpoint", "style"),
    [
        ({}, True, "path"),
        ({}, False, "auto"),
        ({"addressingStyle": "virtual"}, True, "virtual"),
        ({"addressingStyle": "Path"}, False, "path"),
        ({"forcePathStyle": "true"}, False, "path"),
        ({"forcePathStyle": "false"}, True, "auto"),
        ({"addressingStyle": "virtual", "forcePathStyle": "true"}, True, "virtual"),
    ],
)
def test_addressing_style(params: dict[str, str], has_endpoint: bool, style: str) -> None:
    assert s3_module._addressing_style(params, has_endpoint=has_endpoint) == style


def test_the_registry_opens_an_s3_backend_sized_by_settings(endpoint: str) -> None:
    params = {"endpoint": "http://user:pw@127.0.0.1:9/", "region": "eu-west-1"}
    settings = BackendSettings(concurrency=8, multipart_concurrency=4, read_timeout=5.0)
    backend = open_backend(
        parse_storage_uri("s3://abc/m", parameters=params),
        parameters=params,
        secret=CREDENTIALS,
        settings=settings,
    )
    assert isinstance(backend, S3Backend)
    config = backend._client.meta.config
    assert (config.max_pool_connections, config.read_timeout, config.region_name) == (34, 5.0, "eu-west-1")
    assert config.retries["total_max_attempts"] == 1
    assert backend.describe() == "s3://abc/m at http://127.0.0.1:9/"


def test_sha256_of_a_composite_checksum_is_ignored() -> None:
    value = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    assert s3_module._full_object_sha256({"ChecksumSHA256": value}) == hashlib.sha256(b"x").hexdigest()
    assert s3_module._full_object_sha256({"ChecksumSHA256": value, "ChecksumType": "COMPOSITE"}) is None
    assert s3_module._full_object_sha256({"ChecksumSHA256": value + "-3"}) is None


@pytest.mark.parametrize(
    ("size", "parts", "head", "expected"),
    [
        (12, 3, {"ContentLength": 5, "PartsCount": 3}, 5),
        (10, 2, {"ContentLength": 5, "PartsCount": 2}, 5),
        (7, 1, {"ContentLength": 7}, 7),
        (12, 3, {"ContentLength": 12}, None),  # a store that ignored PartNumber
        (12, 3, {"ContentLength": 5, "PartsCount": 4}, None),
    ],
)
def test_part_size_only_when_consistent(
    size: int, parts: int, head: dict[str, Any], expected: int | None
) -> None:
    assert s3_module._part_size(size, parts=parts, head=head) == expected
