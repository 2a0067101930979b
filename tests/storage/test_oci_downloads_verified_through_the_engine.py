"""End to end: a model in OCI Object Storage (the fake service) lands on disk through the engine.

Every file the source gives a checkable digest for is verified; a multipart object of several
parts is checked by size only, because OCI never says the part size (the manifest shows it).
Faults (500, 429, reset, truncation, stall, wrong bytes) still end verified and byte-identical; a
file listed but gone ends in a clear permanent failure; an object replaced mid-download fails as
temporary and the next attempt, listing again, gets the new bytes verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.storage.base import DownloadOptions
from activities.storage.engine import download_model
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import SourceNotFoundError, SourceUnavailableError
from modelferry.storage_uri import parse_storage_uri
from tests.servers.fake_oci import FakeOciServer, Fault, running_fake_oci
from tests.servers.oci_keys import OciTestIdentity, make_identity

MIB = 1024 * 1024
BUCKET = "models"
MODEL = {
    "config.json": b'{"architectures": ["Qwen2ForCausalLM"]}',
    "tokenizer.json": os.urandom(600_000),
    "model-00001.safetensors": os.urandom(3 * MIB + 17),  # uploaded in one part
    "model-00002.safetensors": os.urandom(2 * MIB + 5),  # multipart, one part: verifiable
    "model-00003.safetensors": os.urandom(2 * MIB + 9),  # multipart, three parts: size only
}
UPLOAD_PARTS = {"model-00002.safetensors": 4 * MIB, "model-00003.safetensors": MIB}
OPTIONS = DownloadOptions(
    concurrency=3,
    multipart_concurrency=3,
    multipart_threshold=MIB,
    part_size=512 * 1024,
    retries=4,
    backoff_base=0.01,
    backoff_max=0.05,
    stall_timeout=1.0,
)


@pytest.fixture(scope="module")
def identity() -> OciTestIdentity:
    return make_identity()


@pytest.fixture
def server(identity: OciTestIdentity) -> Iterator[FakeOciServer]:
    with running_fake_oci(public_key=identity.private_key.public_key(), key_id=identity.key_id) as fake:
        for name, data in MODEL.items():
            fake.put_object(BUCKET, f"qwen/{name}", data, part_size=UPLOAD_PARTS.get(name))
        yield fake


def open_oci(server: FakeOciServer, identity: OciTestIdentity) -> Any:
    params = {"endpoint": server.endpoint, "auth_type": "UserPrincipal"}
    uri = parse_storage_uri(f"oci://n/testns/b/{BUCKET}/o/qwen", parameters=params)
    settings = BackendSettings(read_timeout=0.5, connect_timeout=2.0)
    return open_backend(uri, parameters=params, secret=identity.secret(), settings=settings)


def download(server: FakeOciServer, identity: OciTestIdentity, dest: Path, **kwargs: Any) -> Any:
    backend = open_oci(server, identity)
    try:
        return download_model(backend, dest, options=OPTIONS, **kwargs)
    finally:
        backend.close()


def assert_verified(dest: Path, manifest_path: Path, model: dict[str, bytes] = MODEL) -> None:
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == model
    records = {f["name"]: f for f in json.loads(manifest_path.read_text())["files"]}
    for name in ("config.json", "tokenizer.json", "model-00001.safetensors"):
        assert records[name]["md5"] == hashlib.md5(model[name]).hexdigest()
    one_part = hashlib.md5(hashlib.md5(model["model-00002.safetensors"]).digest()).hexdigest()
    assert records["model-00002.safetensors"]["multipart_md5"] == f"{one_part}-1"
    several = records["model-00003.safetensors"]
    assert "md5" not in several and "multipart_md5" not in several  # OCI hides the part size
    assert several["size"] == len(model["model-00003.safetensors"])


def test_a_model_downloads_with_every_checkable_file_verified(
    server: FakeOciServer, identity: OciTestIdentity, tmp_path: Path
) -> None:
    dest = tmp_path / "qwen"
    result = download(server, identity, dest)
    assert_verified(dest, result.manifest_path)
    assert server.bytes_served == sum(map(len, MODEL.values()))


def test_faults_still_end_verified_and_byte_identical(
    server: FakeOciServer, identity: OciTestIdentity, tmp_path: Path
) -> None:
    w1, w3, tok = "qwen/model-00001.safetensors", "qwen/model-00003.safetensors", "qwen/tokenizer.json"
    for fault in [
        Fault("status", name=w1, status=500, code="InternalServerError"),
        Fault("status", name=w1, status=429, code="TooManyRequests", retry_after=0),
        Fault("reset", name=w1, after_bytes=100_000),
        Fault("truncate", name=w3, after_bytes=200_000),
        Fault("stall", name=w3, after_bytes=10_000, stall_seconds=10),
        Fault("corrupt", name=tok, after_bytes=5000),  # only the md5 can catch this one
    ]:
        server.add_fault(fault)
    dest = tmp_path / "qwen"
    result = download(server, identity, dest)
    assert server.faults == []
    assert_verified(dest, result.manifest_path)


def test_a_file_listed_but_gone_fails_clearly(
    server: FakeOciServer, identity: OciTestIdentity, tmp_path: Path
) -> None:
    server.buckets[BUCKET]["qwen/tokenizer.json"].missing = True
    dest = tmp_path / "qwen"
    with pytest.raises(SourceNotFoundError, match=r"tokenizer\.json"):
        download(server, identity, dest)
    assert not (dest / ".modelferry" / "manifest.json").exists()


def test_an_object_replaced_mid_download_fails_then_the_next_attempt_verifies_the_new_bytes(
    server: FakeOciServer, identity: OciTestIdentity, tmp_path: Path
) -> None:
    dest = tmp_path / "qwen"
    backend = open_oci(server, identity)
    listing = backend.list_files()
    replaced = {**MODEL, "model-00001.safetensors": os.urandom(3 * MIB + 17)}
    server.put_object(BUCKET, "qwen/model-00001.safetensors", replaced["model-00001.safetensors"])
    with pytest.raises(SourceUnavailableError, match="changed"):
        download_model(backend, dest, options=OPTIONS, listing=listing)
    backend.close()
    assert not (dest / ".modelferry" / "manifest.json").exists()

    result = download(server, identity, dest)  # a retried activity lists again
    assert_verified(dest, result.manifest_path, replaced)
