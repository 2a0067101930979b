"""The peer server hands out exactly the files of complete versions' manifests, to callers with
the cluster's token, with HTTP range semantics; everything else is refused before a byte.

Real HTTP on 127.0.0.1 with raw request paths (http.client sends them as written, so `..` and
encoded slashes reach the server unnormalised).
"""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from activities.storage.peer import file_path, manifest_path
from tests.activities.peers import (
    MODEL_PATH,
    REPO,
    TOKEN,
    TOKEN_ENV,
    ServedPeer,
    download,
    model_input,
    node_settings,
    served_peer,
    version_dir,
)
from tests.servers.fake_hf import FakeHub
from tests.storage.conftest import model_bytes

FILES = {"config.json": b'{"model_type": "llama"}', "weights/model.bin": model_bytes(10_000, seed=7)}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def hub():
    hub = FakeHub()
    hub.add_repo(REPO, FILES)
    with hub:
        yield hub


@pytest.fixture
def node(tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    settings = node_settings(tmp_path / "a", hub=hub)
    version = download(settings, model_input("a")).version_id
    return settings, version


@pytest.fixture
def peer(node):
    with served_peer(node[0], token=TOKEN) as peer:
        yield peer


def get(peer: ServedPeer, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    address = urlsplit(peer.base)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def file_url(version: str, name: str) -> str:
    return file_path(storage_path=MODEL_PATH, version_id=version, name=name)


def test_a_file_of_a_complete_version_is_served_whole_and_by_range(node, peer):
    _, version = node
    data = FILES["weights/model.bin"]
    assert get(peer, file_url(version, "weights/model.bin"), AUTH)[::2] == (200, data)
    status, headers, body = get(
        peer, file_url(version, "weights/model.bin"), {**AUTH, "Range": "bytes=10-99"}
    )
    assert (status, body, headers["Content-Range"]) == (206, data[10:100], f"bytes 10-99/{len(data)}")
    assert (
        get(peer, file_url(version, "weights/model.bin"), {**AUTH, "Range": "bytes=9990-"})[2] == data[9990:]
    )
    assert get(peer, file_url(version, "weights/model.bin"), {**AUTH, "Range": "bytes=-5"})[2] == data[-5:]
    status, headers, body = get(
        peer, file_url(version, "weights/model.bin"), {**AUTH, "Range": "bytes=0-"}, "HEAD"
    )
    assert (status, headers["Content-Length"], body) == (206, str(len(data)), b"")
    manifest = json.loads(get(peer, manifest_path(storage_path=MODEL_PATH, version_id=version), AUTH)[2])
    assert sorted(f["name"] for f in manifest["files"]) == sorted(FILES)


@pytest.mark.parametrize(
    "header", ["bytes=10000-", "bytes=20000-20010", "bytes=5-2", "bytes=0-1,5-6", "items=0-1"]
)
def test_a_range_it_cannot_satisfy_is_416_with_the_size(node, peer, header):
    _, version = node
    status, headers, _ = get(peer, file_url(version, "weights/model.bin"), {**AUTH, "Range": header})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(FILES['weights/model.bin'])}"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_a_missing_or_wrong_token_is_401(node, peer, authorization):
    _, version = node
    headers = {"Authorization": authorization} if authorization is not None else {}
    status, answer, body = get(peer, file_url(version, "config.json"), headers)
    assert status == 401 and FILES["config.json"] not in body
    assert answer.get("WWW-Authenticate") == "Bearer"


def test_without_a_token_of_its_own_it_refuses_everyone_and_advertises_nothing(node):
    settings, version = node
    with served_peer(settings, token=None) as peer:
        assert peer.url == ""
        status, _, body = get(peer, file_url(version, "config.json"), {"Authorization": "Bearer "})
        assert status == 401 and b"no peer token" in body
        assert get(peer, file_url(version, "config.json"), AUTH)[0] == 401


def test_traversal_and_names_outside_the_manifest_are_404(node, peer):
    settings, version = node
    vdir = version_dir(settings, version)
    (vdir / "extra.txt").write_text("not part of the version")
    store = quote(MODEL_PATH, safe="")
    base = f"/v1/versions/{store}/{version}"
    for path in [
        f"{base}/files/../../owner.json",
        f"{base}/files/%2e%2e/%2e%2e/owner.json",
        f"{base}/files/..%2F..%2Fowner.json",
        f"{base}/files/weights%2Fmodel.bin",  # an encoded slash never joins segments
        f"{base}/files//etc/passwd",
        f"{base}/files/%2Fetc%2Fpasswd",
        f"{base}/files/extra.txt",  # in the directory, not in the manifest
        f"{base}/files/.modelferry/manifest.json",
        f"{base}/files/",
        f"{base}",
        f"/v1/versions/{quote('/raid/models/../../etc', safe='')}/{version}/files/config.json",
        f"/v1/versions/{quote('/etc', safe='')}/{version}/files/passwd",
        f"/v1/versions/{quote('/raid/models/.modelferry-versions/peer-llm', safe='')}/{version}/manifest",
        f"/v1/versions/{store}/..%2F{version}/files/config.json",
        f"/v1/versions/{store}/.modelferry/files/config.json",
        "/v1/versions",
        "/",
    ]:
        status, _, body = get(peer, path, AUTH)
        assert status == 404, (path, status, body)
    assert get(peer, f"{base}/files/config.json", AUTH)[0] == 200  # the same route, a listed name


def test_an_incomplete_version_is_not_served(node, peer):
    settings, version = node
    (version_dir(settings, version) / ".modelferry" / "manifest.json").unlink()
    status, _, body = get(peer, file_url(version, "config.json"), AUTH)
    assert status == 404 and b"not complete" in body
    assert get(peer, manifest_path(storage_path=MODEL_PATH, version_id=version), AUTH)[0] == 404


def test_symlinks_leading_out_of_the_version_are_not_followed(node, peer, tmp_path):
    settings, version = node
    vdir = version_dir(settings, version)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"S" * len(FILES["config.json"]))  # the size the manifest expects
    (vdir / "config.json").unlink()
    os.symlink(secret, vdir / "config.json")
    (vdir / "weights" / "model.bin").rename(tmp_path / "model.bin")
    (vdir / "weights").rmdir()
    os.symlink(tmp_path, vdir / "weights")
    for name in ("config.json", "weights/model.bin"):
        status, _, body = get(peer, file_url(version, name), AUTH)
        assert status == 404 and b"S" * 10 not in body, (name, body)


def test_a_version_directory_that_is_a_symlink_is_not_served(node, peer, tmp_path):
    settings, version = node
    vdir = version_dir(settings, version)
    vdir.rename(tmp_path / "moved")
    os.symlink(tmp_path / "moved", vdir)
    assert get(peer, file_url(version, "config.json"), AUTH)[0] == 404


def test_a_damaged_file_of_another_size_is_not_served(node, peer):
    settings, version = node
    (version_dir(settings, version) / "weights" / "model.bin").write_bytes(b"short")
    status, _, body = get(peer, file_url(version, "weights/model.bin"), AUTH)
    assert status == 404 and b"damaged" in body


def test_it_is_read_only(node, peer):
    _, version = node
    status, headers, _ = get(peer, file_url(version, "config.json"), AUTH, method="PUT")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
