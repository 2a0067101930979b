"""Peer delivery through the download activity, over real HTTP on 127.0.0.1: node A gets a model
from the origin (a fake Hugging Face Hub), its peer server serves that version, and node B
downloads with A as its peer.

A peer only carries bytes: the listing comes from the origin and the engine checks every byte
against its digests. A peer that is cut off mid-file, serves a flipped byte, no longer holds the
version, refuses the token or cannot be reached is dropped (with the reason in `dropped_peers`)
and the bytes come from the next peer or the origin; the download always ends verified.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelferry.messages import DownloadModelResult, PeerSource
from tests.activities.peers import (
    REPO,
    TOKEN,
    TOKEN_ENV,
    download,
    model_input,
    node_settings,
    served_peer,
    version_dir,
    version_files,
)
from tests.servers.fake_hf import FakeHub
from tests.storage.conftest import model_bytes

BIG = "model.safetensors"
FILES = {
    "config.json": b'{"model_type": "llama", "hidden_size": 64}',  # a git blob: sha1 digest
    "tokenizer/tokenizer.json": model_bytes(5000, seed=2),  # LFS: sha256
    BIG: model_bytes(3 * 1024 * 1024, seed=1),
}
TOTAL = sum(len(v) for v in FILES.values())


@pytest.fixture
def hub():
    hub = FakeHub()
    hub.add_repo(REPO, FILES)
    with hub:
        yield hub


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return TOKEN


@pytest.fixture
def holder(tmp_path: Path, hub: FakeHub) -> tuple[Any, str]:
    """Node A with the model delivered from the origin: (its settings, the version id)."""
    a = node_settings(tmp_path / "a", hub=hub)
    result = download(a, model_input("a"))
    assert version_files(a, result.version_id) == FILES
    return a, result.version_id


@pytest.fixture
def b(tmp_path: Path, hub: FakeHub) -> Any:
    return node_settings(tmp_path / "b", hub=hub)


def origin_bytes(hub: FakeHub, since: int) -> int:
    return hub.bytes_served - since


def test_a_version_a_peer_holds_is_fetched_without_one_origin_byte(hub, holder, b):
    a, version = holder
    with served_peer(a, token=TOKEN) as peer:
        before = hub.bytes_served
        result = download(b, model_input("b", [peer.source("a", version)]), peer_url="http://b:8090")
    assert origin_bytes(hub, before) == 0  # the listing came from the origin, no file body did
    assert result.version_id == version
    assert result.bytes_from_peers == {"a": TOTAL}
    assert result.dropped_peers == {}
    assert result.peer_url == "http://b:8090"  # B's own server, for the nodes after it
    assert version_files(b, version) == FILES


def test_a_peer_killed_mid_file_is_dropped_and_the_origin_serves_only_the_rest(hub, holder, b):
    a, version = holder
    with served_peer(a, token=TOKEN, max_bytes_per_second=1024 * 1024) as peer:
        before = hub.bytes_served
        done: dict[str, DownloadModelResult] = {}
        worker = threading.Thread(
            target=lambda: done.update(result=download(b, model_input("b", [peer.source("a", version)])))
        )
        worker.start()
        deadline = time.monotonic() + 20
        while peer.server.bytes_sent < 600_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        peer.kill()
        worker.join(timeout=60)
    result = done["result"]
    assert version_files(b, version) == FILES
    assert "a" in result.dropped_peers, result
    fed = result.bytes_from_peers["a"]
    assert 500_000 < fed < TOTAL
    # The origin sent what the peer did not: the rest of the cut file, resumed at its offset.
    assert origin_bytes(hub, before) <= TOTAL - fed + 1024 * 1024
    assert origin_bytes(hub, before) < len(FILES[BIG])
    print(
        f"peer fed {fed} bytes before it was cut; origin {origin_bytes(hub, before)}; {result.dropped_peers}"
    )


def test_a_peer_serving_a_flipped_byte_is_dropped_and_the_file_refetched(hub, holder, b):
    a, version = holder
    damaged = version_dir(a, version) / BIG
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))  # same size: the server cannot tell, the digest can
    with served_peer(a, token=TOKEN) as peer:
        before = hub.bytes_served
        result = download(b, model_input("b", [peer.source("a", version)]))
    assert version_files(b, version) == FILES
    assert "digest" in result.dropped_peers["a"]
    assert origin_bytes(hub, before) == len(FILES[BIG])  # only the damaged file came again


def test_a_peer_whose_version_was_deleted_answers_404_and_the_origin_serves(hub, holder, b):
    a, version = holder
    for path in sorted(version_dir(a, version).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    version_dir(a, version).rmdir()
    with served_peer(a, token=TOKEN) as peer:
        before = hub.bytes_served
        result = download(b, model_input("b", [peer.source("a", version)]))
    assert version_files(b, version) == FILES
    assert "404" in result.dropped_peers["a"]
    assert result.bytes_from_peers == {}
    assert origin_bytes(hub, before) == TOTAL


def test_an_unreachable_peer_is_skipped_for_the_next_one(hub, holder, b):
    a, version = holder
    # Bound but not listening, and held: connections are refused, and no other process (a
    # parallel test) can take the port meanwhile.
    with socket.socket() as closed, served_peer(a, token=TOKEN) as peer:
        closed.bind(("127.0.0.1", 0))
        dead = PeerSource(node="gone", url=f"http://127.0.0.1:{closed.getsockname()[1]}", version_id=version)
        before = hub.bytes_served
        result = download(b, model_input("b", [dead, peer.source("a", version)]))
    assert version_files(b, version) == FILES
    assert "cannot reach" in result.dropped_peers["gone"]
    assert result.bytes_from_peers == {"a": TOTAL}
    assert origin_bytes(hub, before) == 0


def test_a_peer_refusing_our_token_is_dropped(hub, holder, b):
    a, version = holder
    with served_peer(a, token="another-clusters-token") as peer:
        before = hub.bytes_served
        result = download(b, model_input("b", [peer.source("a", version)]))
    assert version_files(b, version) == FILES
    assert "401" in result.dropped_peers["a"]
    assert origin_bytes(hub, before) == TOTAL


def test_without_a_token_no_peer_is_asked(hub, holder, b, monkeypatch):
    a, version = holder
    with served_peer(a, token=TOKEN) as peer:
        monkeypatch.delenv(TOKEN_ENV)
        before = hub.bytes_served
        result = download(b, model_input("b", [peer.source("a", version)]))
        assert peer.server.bytes_sent == 0
    assert version_files(b, version) == FILES
    assert TOKEN_ENV in result.dropped_peers["a"]
    assert origin_bytes(hub, before) == TOTAL
