"""The hf:// backend with the real huggingface_hub client against a local fake Hub.

Every fault ends verified-correct or clearly failed; no request ever leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from activities.storage.base import DownloadOptions
from activities.storage.engine import DownloadCancelledError, download_model
from activities.storage.hf import HuggingFaceBackend, parse_patterns
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import (
    AccessDeniedError,
    GatedRepoError,
    PersistentChecksumMismatchError,
    SourceNotFoundError,
)
from modelferry.storage_uri import parse_storage_uri
from tests.servers.fake_hf import Corrupt, FakeHub, Reset, Stall, Status, Truncate
from tests.storage.conftest import model_bytes, partial_files, visible_files

REPO = "acme/tiny-llm"
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model-00001-of-00002.safetensors": model_bytes(1_300_000, seed=1),
    "model-00002-of-00002.safetensors": model_bytes(400_000, seed=2),
    "tokenizer/tokenizer.json": model_bytes(5000, seed=3),
    "original/consolidated.pth": model_bytes(3000, seed=4),
}
WANTED = {k: v for k, v in FILES.items() if not k.startswith("original/")}
BIG = "model-00001-of-00002.safetensors"


@pytest.fixture(autouse=True)
def no_public_hub(monkeypatch):
    """Fail any name lookup other than localhost (the public Hub, telemetry, agent detection)."""
    resolve = socket.getaddrinfo
    looked_up: list[str] = []

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            looked_up.append(str(host))
            raise OSError(f"test blocked a lookup of {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield
    assert looked_up == []


@pytest.fixture
def hub():
    with FakeHub(page_size=2) as hub:
        hub.add_repo(REPO, dict(FILES))
        yield hub


def backend_for(hub: FakeHub, uri: str = f"hf://{REPO}", *, secret=None, read_timeout=10.0, **params):
    params.setdefault("ignorePatterns", "original/*,*.pth")
    return open_backend(
        parse_storage_uri(uri, parameters=params),
        parameters=params,
        secret=secret,
        settings=BackendSettings(hf_endpoint=hub.url, read_timeout=read_timeout),
    )


def test_listing_pins_the_commit_and_carries_the_hub_digests(hub: FakeHub) -> None:
    backend = backend_for(hub)
    listing = backend.list_files()
    repo = hub.repos[REPO]
    assert listing.revision == repo.commit
    by_name = {f.name: f for f in listing.files}
    assert set(by_name) == set(WANTED)
    big, small = by_name[BIG], by_name["config.json"]
    assert big.sha256 == repo.files[BIG].sha256 and big.git_sha1 is None
    assert small.git_sha1 == repo.files["config.json"].git_oid and small.sha256 is None
    assert backend.describe() == f"hf://{REPO}@{repo.commit} via {hub.url}"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"allowPatterns": "*.json"}, {"config.json", "tokenizer/tokenizer.json"}),  # fnmatch: * crosses /
        ({"allowPatterns": '["tokenizer/*", "config.json"]'}, {"config.json", "tokenizer/tokenizer.json"}),
        ({"ignorePatterns": "*.safetensors,original/*"}, {"config.json", "tokenizer/tokenizer.json"}),
    ],
)
def test_allow_and_ignore_patterns(hub: FakeHub, params, expected) -> None:
    assert {f.name for f in backend_for(hub, **params).list_files().files} == expected


def test_pattern_syntax() -> None:
    assert parse_patterns(" a/*, *.json ,") == ["a/*", "*.json"]
    assert parse_patterns('["x"]') == ["x"]
    assert parse_patterns("") is None


def test_download_end_to_end_sends_the_token_only_to_the_hub(hub: FakeHub, dest: Path, fast_options) -> None:
    hub.repos[REPO].private = True
    hub.repos[REPO].tokens = {"hf_secret"}
    backend = backend_for(hub, secret={"token": "hf_secret"})
    result = download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == WANTED
    assert result.revision == hub.repos[REPO].commit
    assert any(r["cdn"] for r in hub.requests), "LFS files came through the CDN redirect"
    assert not hub.cdn_saw_authorization
    assert all(r["authorization"] for r in hub.requests if not r["cdn"])
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["revision"] == hub.repos[REPO].commit and "hf_secret" not in json.dumps(manifest)


@pytest.mark.parametrize(
    "faults",
    [
        [Reset(after=70_000)],
        [Status(500), Status(503)],
        [Status(429, retry_after="0.3")],
        [Truncate(after=10_000)],
        [Corrupt()],
        [Stall(after=1000, seconds=30)],
    ],
    ids=["reset", "5xx", "429-retry-after", "truncated", "wrong-bytes-once", "stall"],
)
def test_faults_end_verified(hub: FakeHub, dest: Path, fast_options, faults) -> None:
    fast_options.stall_timeout = 0.5
    hub.add_fault(REPO, BIG, *faults)
    hub.add_fault(REPO, "config.json", *faults)
    started = time.monotonic()
    download_model(backend_for(hub), dest, options=fast_options)
    assert visible_files(dest) == WANTED
    assert partial_files(dest) == []
    if isinstance(faults[0], Status) and faults[0].retry_after:
        assert time.monotonic() - started >= 0.3


def test_an_origin_that_ignores_range_still_ends_verified(hub: FakeHub, dest: Path, fast_options) -> None:
    hub.ignore_range = True  # every part gets the whole file (200): skip to its start, stop at its end
    download_model(backend_for(hub), dest, options=fast_options)
    assert visible_files(dest) == WANTED
    assert partial_files(dest) == []


def test_backend_read_timeout_also_ends_a_stall(hub: FakeHub, dest: Path, fast_options) -> None:
    fast_options.stall_timeout = 60
    hub.add_fault(REPO, "config.json", Stall(after=0, seconds=30))
    download_model(backend_for(hub, read_timeout=0.3), dest, options=fast_options)
    assert visible_files(dest) == WANTED


def test_wrong_bytes_every_time_fail_permanently(hub: FakeHub, dest: Path, fast_options) -> None:
    hub.add_fault(REPO, "tokenizer/tokenizer.json", Corrupt(), Corrupt())
    with pytest.raises(
        PersistentChecksumMismatchError, match=r"tokenizer/tokenizer.json: sha256 expected \w+, got \w+ again"
    ):
        download_model(backend_for(hub), dest, options=fast_options)
    assert "tokenizer/tokenizer.json" not in visible_files(dest)
    assert not any("tokenizer.json" in str(p) for p in partial_files(dest))


def test_listed_but_missing_file_fails_clearly(hub: FakeHub, dest: Path, fast_options) -> None:
    hub.repos[REPO].missing.add("config.json")
    with pytest.raises(SourceNotFoundError, match=r"config.json: HTTP 404 EntryNotFound"):
        download_model(backend_for(hub), dest, options=fast_options)
    assert not (dest / ".modelferry/manifest.json").exists()
    assert "config.json" not in visible_files(dest)


def test_gated_repo_needs_a_token(hub: FakeHub, dest: Path, fast_options) -> None:
    hub.repos[REPO].gated = True
    hub.repos[REPO].tokens = {"hf_ok"}
    with pytest.raises(GatedRepoError, match="gated"):
        download_model(backend_for(hub), dest, options=fast_options)
    assert visible_files(dest) == {}
    backend = backend_for(hub, secret={"my-key": "hf_ok"}, secretKey="my-key")
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == WANTED


def test_missing_secret_key_is_access_denied(hub: FakeHub) -> None:
    with pytest.raises(AccessDeniedError, match="other"):
        backend_for(hub, secret={"token": "x"}, secretKey="other")


@pytest.mark.parametrize(
    ("uri", "match"),
    [("hf://acme/nope", "repository not found"), (f"hf://{REPO}@v9", "revision 'v9' not found")],
)
def test_unknown_repo_or_revision(hub: FakeHub, uri: str, match: str) -> None:
    with pytest.raises(SourceNotFoundError, match=match):
        backend_for(hub, uri).list_files()


def test_resume_after_cancel_fetches_only_missing_bytes(hub: FakeHub, dest: Path, fast_options) -> None:
    total = sum(map(len, WANTED.values()))
    cancel = threading.Event()
    hub.add_fault(REPO, BIG, Stall(after=100_000, seconds=30))  # holds the first part mid-way
    fast_options.stall_timeout = 60
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(DownloadCancelledError):
        download_model(backend_for(hub), dest, options=fast_options, cancel=cancel)
    served_first = hub.bytes_served
    assert 0 < served_first < total
    result = download_model(backend_for(hub), dest, options=fast_options)
    assert visible_files(dest) == WANTED
    assert result.bytes_transferred == hub.bytes_served - served_first
    assert served_first + result.bytes_transferred <= total + 2 * 2 * 1024 * 1024  # lost ≤ unflushed batches


def test_registry_opens_the_hf_backend(hub: FakeHub) -> None:
    assert isinstance(backend_for(hub), HuggingFaceBackend)


def test_the_fake_hub_serves_the_real_snapshot_download(hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(REPO, local_dir=tmp_path / "snap", endpoint=hub.url, token=False)
    got = visible_files(tmp_path / "snap")
    assert {k: v for k, v in got.items() if not k.startswith(".cache/")} == FILES


def test_default_options_are_sane() -> None:
    assert DownloadOptions().multipart_threshold > DownloadOptions().part_size
