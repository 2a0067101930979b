"""The oci backend through the real `oci` SDK against the fake Object Storage service.

The fake checks every request's signature against the test identity's public key, so each
passing test also proves the backend signs with the user-principal key it was given.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import oci as oci_sdk
import pytest

import activities.storage.oci as oci_module
from activities.storage.oci import CHUNK_SIZE, OciBackend, parse_oci_md5
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import AccessDeniedError, SourceNotFoundError, SourceUnavailableError
from modelferry.storage_uri import OciAuthType, OciUri, parse_storage_uri
from tests.servers.fake_oci import FakeOciServer, running_fake_oci
from tests.servers.oci_keys import OciTestIdentity, make_identity

BUCKET = "models"


@pytest.fixture(scope="module")
def identity() -> OciTestIdentity:
    return make_identity()


@pytest.fixture
def server(identity: OciTestIdentity) -> Iterator[FakeOciServer]:
    with running_fake_oci(public_key=identity.private_key.public_key(), key_id=identity.key_id) as fake:
        fake.create_bucket(BUCKET)
        yield fake


def open_oci(
    server: FakeOciServer,
    prefix: str,
    *,
    secret: dict[str, str] | None,
    auth: str = "UserPrincipal",
    bucket: str = BUCKET,
    settings: BackendSettings | None = None,
) -> OciBackend:
    params = {"endpoint": server.endpoint, "auth_type": auth}
    uri = parse_storage_uri(f"oci://n/{server.namespace}/b/{bucket}/o/{prefix}", parameters=params)
    assert isinstance(uri, OciUri)
    return OciBackend(uri, parameters=params, secret=secret, settings=settings)


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_lists_relative_names_with_md5_and_multipart_md5(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    config, weights, one_part = b'{"model_type": "llama"}', os.urandom(250_000), os.urandom(1000)
    server.put_object(BUCKET, "llm/config.json", config)
    server.put_object(BUCKET, "llm/sub/model.safetensors", weights, part_size=100_000)  # 3 parts
    server.put_object(BUCKET, "llm/one-part.bin", one_part, part_size=4096)  # multipart, 1 part
    server.put_object(BUCKET, "llm/sub/", b"")
    server.put_object(BUCKET, "llm-other/x", b"not this model")
    server.put_object(BUCKET, "llmX", b"nor this")

    listing = open_oci(server, "llm", secret=identity.secret()).list_files()

    by_name = {f.name: f for f in listing.files}
    assert sorted(by_name) == ["config.json", "one-part.bin", "sub/model.safetensors"]
    assert by_name["config.json"].md5 == hashlib.md5(config).hexdigest()
    big = by_name["sub/model.safetensors"]
    parts = [hashlib.md5(weights[i : i + 100_000]).digest() for i in range(0, len(weights), 100_000)]
    assert big.multipart_md5 == f"{hashlib.md5(b''.join(parts)).hexdigest()}-3"
    assert (big.md5, big.multipart_part_size, big.size) == (None, None, len(weights))  # OCI hides part sizes
    single = by_name["one-part.bin"]
    assert single.multipart_md5 == f"{hashlib.md5(hashlib.md5(one_part).digest()).hexdigest()}-1"
    assert single.multipart_part_size == len(one_part)  # one part: its size is the file's
    assert all(f.etag for f in listing.files) and len(listing.revision) == 64
    assert not any(method == "HEAD" for method, _ in server.requests)


def test_an_object_listed_without_md5_is_asked_for_it(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    server.put_object(BUCKET, "m/a.bin", b"a" * 10, list_md5=False)
    server.put_object(BUCKET, "m/b.bin", b"b" * 10)
    listing = open_oci(server, "m", secret=identity.secret()).list_files()
    assert [f.md5 for f in listing.files] == [
        hashlib.md5(b"a" * 10).hexdigest(),
        hashlib.md5(b"b" * 10).hexdigest(),
    ]
    assert [path for method, path in server.requests if method == "HEAD"] == [
        f"/n/testns/b/{BUCKET}/o/m%2Fa.bin"
    ]


def test_listing_pages_through_every_object(
    server: FakeOciServer, identity: OciTestIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oci_module, "_LIST_LIMIT", 2)
    for i in range(5):
        server.put_object(BUCKET, f"p/shard-{i}", bytes([i]))
    listing = open_oci(server, "p", secret=identity.secret()).list_files()
    assert [f.name for f in listing.files] == [f"shard-{i}" for i in range(5)]
    assert sum(1 for method, path in server.requests if method == "GET" and "/o?" in path) == 3


def test_reads_exact_ranges_with_encoded_names(server: FakeOciServer, identity: OciTestIdentity) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 5)
    server.put_object(BUCKET, "r/dir/w.bin", data, part_size=CHUNK_SIZE)
    backend = open_oci(server, "r", secret=identity.secret())
    (remote,) = backend.list_files().files
    for start, end in [(0, 1), (CHUNK_SIZE - 3, CHUNK_SIZE + 3), (0, len(data)), (len(data) - 1, len(data))]:
        chunks = list(backend.read_range(remote, start, end))
        assert b"".join(chunks) == data[start:end]
        assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)
    assert list(backend.read_range(remote, 4, 4)) == []
    assert ("GET", f"/n/testns/b/{BUCKET}/o/r%2Fdir%2Fw.bin") in server.requests
    assert server.bytes_by_object["r/dir/w.bin"] == 1 + 6 + len(data) + 1
    backend.close()


def test_a_prefix_naming_one_object_and_a_whole_bucket(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    server.put_object(BUCKET, "gguf/model.gguf", b"GGUF")
    one = open_oci(server, "gguf/model.gguf", secret=identity.secret()).list_files()
    assert [(f.name, f.md5) for f in one.files] == [("model.gguf", hashlib.md5(b"GGUF").hexdigest())]
    whole = open_oci(server, "", secret=identity.secret()).list_files()
    assert [f.name for f in whole.files] == ["gguf/model.gguf"]


def test_an_object_replaced_after_listing_fails_the_read_as_changed(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    server.put_object(BUCKET, "c/a.bin", b"original")
    backend = open_oci(server, "c", secret=identity.secret())
    (remote,) = backend.list_files().files
    server.put_object(BUCKET, "c/a.bin", b"replaced")
    with pytest.raises(SourceUnavailableError, match="changed"):
        list(backend.read_range(remote, 0, remote.size))


def test_archived_objects_must_be_restored_first(server: FakeOciServer, identity: OciTestIdentity) -> None:
    server.put_object(BUCKET, "cold/a.bin", b"frozen", storage_tier="Archive")
    with pytest.raises(SourceNotFoundError, match="restore"):
        open_oci(server, "cold", secret=identity.secret()).list_files()


def test_missing_bucket_and_empty_prefix_are_not_found(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    with pytest.raises(SourceNotFoundError, match="BucketNotFound"):
        open_oci(server, "m", secret=identity.secret(), bucket="nope").list_files()
    with pytest.raises(SourceNotFoundError, match="no objects"):
        open_oci(server, "nothing/here", secret=identity.secret()).list_files()


def test_a_request_signed_with_another_key_is_access_denied(server: FakeOciServer) -> None:
    stranger = make_identity()
    with pytest.raises(AccessDeniedError, match="401 NotAuthenticated"):
        open_oci(server, "m", secret=stranger.secret()).list_files()


@pytest.mark.parametrize(
    ("drop", "text"), [("privateKey", "privateKey"), ("tenancy", "tenancy"), ("fingerprint", "fingerprint")]
)
def test_an_incomplete_user_principal_secret_names_what_is_missing(
    server: FakeOciServer, identity: OciTestIdentity, drop: str, text: str
) -> None:
    secret = {k: v for k, v in identity.secret().items() if k != drop}
    with pytest.raises(AccessDeniedError, match=text) as caught:
        open_oci(server, "m", secret=secret)
    assert "PRIVATE KEY" not in str(caught.value)


def test_a_malformed_secret_is_refused_without_echoing_it(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    with pytest.raises(AccessDeniedError, match="fingerprint malformed") as caught:
        open_oci(server, "m", secret=identity.secret(fingerprint="not-a-fingerprint"))
    assert "not-a-fingerprint" not in str(caught.value)
    garbage = identity.secret(
        privateKey="-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(AccessDeniedError, match="UserPrincipal") as caught:
        open_oci(server, "m", secret=garbage).list_files()
    assert "Z2FyYmFnZQ" not in str(caught.value)


def test_an_encrypted_key_with_its_passphrase_works(server: FakeOciServer) -> None:
    locked = make_identity(passphrase="open sesame")
    with running_fake_oci(public_key=locked.private_key.public_key(), key_id=locked.key_id) as fake:
        fake.put_object(BUCKET, "m/a", b"x")
        backend = open_oci(fake, "m", secret=locked.secret(passphrase="open sesame"))
        assert [f.name for f in backend.list_files().files] == ["a"]
        config = backend._user_config or {}
        assert "key_file" not in config and "key_content" in config


def test_a_principal_signer_is_created_lazily_and_its_failure_is_access_denied(
    server: FakeOciServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def no_metadata_service() -> Any:
        calls.append(1)
        raise ConnectionError("169.254.169.254 did not answer")

    monkeypatch.setitem(oci_module.SIGNER_FACTORIES, OciAuthType.INSTANCE_PRINCIPAL, no_metadata_service)
    backend = open_oci(server, "m", secret=None, auth="InstancePrincipal")
    assert calls == []
    with pytest.raises(AccessDeniedError, match="could not get InstancePrincipal credentials"):
        backend.list_files()


def test_a_principal_signer_signs_every_request(
    identity: OciTestIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resource, instance and workload-identity principals all sign as a SecurityTokenSigner does:
    # keyId "ST$<token>" with the session key. This one is built from the test identity's key.
    def signer() -> Any:
        made = oci_sdk.auth.signers.SecurityTokenSigner("session-token", identity.private_key)
        made.region = "eu-frankfurt-1"  # type: ignore[attr-defined]
        return made

    monkeypatch.setitem(oci_module.SIGNER_FACTORIES, OciAuthType.RESOURCE_PRINCIPAL, signer)
    with running_fake_oci(public_key=identity.private_key.public_key(), key_id="ST$session-token") as fake:
        fake.put_object(BUCKET, "rp/a.bin", b"abc")
        backend = open_oci(fake, "rp", secret=None, auth="ResourcePrincipal")
        (remote,) = backend.list_files().files
        assert b"".join(backend.read_range(remote, 0, 3)) == b"abc"


def test_the_registry_opens_an_oci_backend_with_retries_off_and_a_wide_pool(
    server: FakeOciServer, identity: OciTestIdentity
) -> None:
    server.put_object(BUCKET, "g/a", b"x")
    params = {"endpoint": server.endpoint, "auth_type": "UserPrincipal"}
    uri = parse_storage_uri(f"oci://n/testns/b/{BUCKET}/o/g", parameters=params)
    settings = BackendSettings(concurrency=6, multipart_concurrency=5, read_timeout=7.0)
    backend = open_backend(uri, parameters=params, secret=identity.secret(), settings=settings)
    assert isinstance(backend, OciBackend)
    backend.list_files()
    client = backend._client
    assert isinstance(client.retry_strategy, oci_sdk.retry.NoneRetryStrategy)
    assert client.base_client.timeout == (10.0, 7.0)
    assert client.base_client.session.get_adapter(server.endpoint)._pool_maxsize == 32
    assert backend.describe() == f"oci://n/testns/b/{BUCKET}/o/g (UserPrincipal) at {server.endpoint}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b64md5(b"abc"), (hashlib.md5(b"abc").hexdigest(), None, None)),
        (b64md5(b"abc") + "-4", (None, hashlib.md5(b"abc").hexdigest() + "-4", 4)),
        (None, (None, None, None)),
        ("not base64!", (None, None, None)),
        (base64.b64encode(b"short").decode(), (None, None, None)),
        (b64md5(b"abc") + "-x", (None, None, None)),
    ],
)
def test_parse_oci_md5(text: str | None, expected: tuple[str | None, str | None, int | None]) -> None:
    assert parse_oci_md5(text) == expected
