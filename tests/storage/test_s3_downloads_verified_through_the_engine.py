"""End to end: a model in S3 (moto) lands on disk through the engine, every file verified.

A fault proxy between them resets, throttles and corrupts once: the download still ends verified
and byte-identical. An object deleted after listing ends in a clear, permanent failure with no
manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from activities.storage.base import DownloadOptions
from activities.storage.engine import download_model
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import SourceNotFoundError
from modelferry.storage_uri import parse_storage_uri
from tests.servers.fake_oci import Fault
from tests.servers.moto_s3 import CREDENTIALS, running_moto_server, s3_client
from tests.servers.s3_fault_proxy import running_s3_fault_proxy

MIB = 1024 * 1024
UPLOAD_PART = 5 * MIB
MODEL = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}',
    "tokenizer.json": os.urandom(300_000),
    "model.safetensors": os.urandom(2 * UPLOAD_PART + 4321),  # a 3-part multipart upload
}
OPTIONS = DownloadOptions(
    concurrency=3,
    multipart_concurrency=3,
    multipart_threshold=MIB,  # the weights (and only they) are fetched in ranged parts
    part_size=MIB,
    retries=4,
    backoff_base=0.01,
    backoff_max=0.05,
    stall_timeout=5.0,
)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with running_moto_server() as url:
        yield url


@pytest.fixture
def bucket(moto: str, tmp_path: Path) -> str:
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto)
    client.create_bucket(Bucket=name)
    for key, data in MODEL.items():
        path = tmp_path / "upload"
        path.write_bytes(data)
        config = TransferConfig(
            multipart_threshold=UPLOAD_PART, multipart_chunksize=UPLOAD_PART, use_threads=False
        )
        client.upload_file(str(path), name, f"org/llama/{key}", Config=config)
    return name


def open_s3(endpoint: str, bucket: str) -> Any:
    params = {"endpoint": endpoint}
    uri = parse_storage_uri(f"s3://{bucket}/org/llama", parameters=params)
    return open_backend(
        uri, parameters=params, secret=CREDENTIALS, settings=BackendSettings(read_timeout=5.0)
    )


def assert_verified(dest: Path, manifest_path: Path) -> None:
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == MODEL
    manifest = json.loads(manifest_path.read_text())
    assert manifest["complete"] is True
    records = {f["name"]: f for f in manifest["files"]}
    assert records["config.json"]["md5"] == hashlib.md5(MODEL["config.json"]).hexdigest()
    assert records["tokenizer.json"]["md5"] == hashlib.md5(MODEL["tokenizer.json"]).hexdigest()
    weights = MODEL["model.safetensors"]
    parts = [hashlib.md5(weights[i : i + UPLOAD_PART]).digest() for i in range(0, len(weights), UPLOAD_PART)]
    assert records["model.safetensors"]["multipart_md5"] == f"{hashlib.md5(b''.join(parts)).hexdigest()}-3"


def test_a_model_downloads_with_every_file_verified(moto: str, bucket: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "llama"
    backend = open_s3(moto, bucket)
    try:
        result = download_model(backend, dest, options=OPTIONS)
    finally:
        backend.close()
    assert_verified(dest, result.manifest_path)
    assert result.bytes_transferred == sum(map(len, MODEL.values()))


def test_resets_throttling_and_wrong_bytes_still_end_verified(moto: str, bucket: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "llama"
    with running_s3_fault_proxy(moto) as proxy:
        weights_key, tokenizer_key = "org/llama/model.safetensors", "org/llama/tokenizer.json"
        proxy.add_fault(Fault("reset", name=weights_key, after_bytes=200_000))
        proxy.add_fault(Fault("status", name=weights_key, status=503, code="SlowDown", retry_after=0))
        proxy.add_fault(Fault("corrupt", name=tokenizer_key, after_bytes=1000))  # caught by the md5
        backend = open_s3(proxy.endpoint, bucket)
        try:
            result = download_model(backend, dest, options=OPTIONS)
        finally:
            backend.close()
        assert proxy.faults == []  # every fault was hit
    assert_verified(dest, result.manifest_path)


def test_an_object_deleted_after_listing_fails_clearly(moto: str, bucket: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "llama"
    backend = open_s3(moto, bucket)
    listing = backend.list_files()
    s3_client(moto).delete_object(Bucket=bucket, Key="org/llama/tokenizer.json")
    with pytest.raises(SourceNotFoundError, match=r"tokenizer\.json"):
        download_model(backend, dest, options=OPTIONS, listing=listing)
    assert not (dest / ".modelferry" / "manifest.json").exists()
    assert not (dest / "tokenizer.json").exists()
