"""`PeeredBackend` through the engine, against hand-made peers that misbehave in ways a real peer
server never would on purpose (stall, ignore the range, answer another range, send too much),
with an in-memory origin: every download ends verified, the bad peer dropped with the reason,
and the origin asked only for what no good peer gave.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import urllib3

from activities.storage.engine import download_model
from activities.storage.peer import Peer, PeeredBackend, _timed_out
from tests.storage.conftest import model_bytes, visible_files
from tests.storage.fakes import MemoryBackend

FILES = {"small.json": b'{"a": 1}' * 50, "big.bin": model_bytes(2 * 1024 * 1024, seed=11)}
TOKEN = "t0ken"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on a bad answer is the point


class FakePeer:
    """Serves FILES at any `/.../files/<name>` path; `mode` decides how it misbehaves."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[str | None] = []
        self.release = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                peer.requests.append(self.headers.get("Range"))
                name = unquote(self.path.split("/files/", 1)[1])
                data = FILES[name]
                first, last = self.headers["Range"].removeprefix("bytes=").split("-")
                start, end = int(first), int(last) + 1
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, b"no")
                if peer.mode == "ignore-range":
                    return self._answer(200, data)
                if peer.mode == "other-range":
                    return self._answer(
                        206, data[start:end], content_range=f"bytes 0-{end - start - 1}/{len(data)}"
                    )
                body = data[start:end]
                if peer.mode == "too-much":
                    body += b"extra"
                busy = peer.mode == "stall-once" and len(peer.requests) == 1
                busy |= peer.mode == "stall-first-three" and len(peer.requests) <= 3
                if peer.mode == "stall" or busy:
                    self._head(206, len(body), f"bytes {start}-{end - 1}/{len(data)}")
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    peer.release.wait(30)
                    return
                self._answer(206, body, content_range=f"bytes {start}-{end - 1}/{len(data)}")

            def _head(self, status: int, length: int, content_range: str | None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                if content_range:
                    self.send_header("Content-Range", content_range)
                self.end_headers()

            def _answer(self, status: int, body: bytes, *, content_range: str | None = None) -> None:
                self._head(status, len(body), content_range)
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peers() -> Iterator[dict[str, FakePeer]]:
    made: dict[str, FakePeer] = {}
    yield made
    for peer in made.values():
        peer.stop()


def peered(origin: MemoryBackend, *peers: tuple[str, FakePeer]) -> PeeredBackend:
    return PeeredBackend(
        origin=origin,
        peers=[Peer(node=node, url=peer.url, version_id="v1") for node, peer in peers],
        storage_path="/raid/models/m",
        token=TOKEN,
        read_timeout=0.5,
    )


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("stall", "timed out"),
        ("ignore-range", "HTTP 200"),
        ("other-range", "Content-Range"),
        ("too-much", "bytes for"),
    ],
)
def test_a_misbehaving_peer_is_dropped_and_the_origin_serves(peers, fast_options, dest: Path, mode, reason):
    peers["bad"] = FakePeer(mode)
    origin = MemoryBackend(dict(FILES))
    backend = peered(origin, ("bad", peers["bad"]))
    started = time.monotonic()
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert reason in backend.dropped_peers["bad"], backend.dropped_peers
    assert time.monotonic() - started < fast_options.stall_timeout * 3  # no engine stall needed
    assert origin.bytes_served >= len(FILES["big.bin"]) // 2


def test_good_peers_feed_every_part_and_the_origin_only_lists(peers, fast_options, dest: Path):
    peers["good"] = FakePeer("good")
    origin = MemoryBackend(dict(FILES))
    backend = peered(origin, ("good", peers["good"]))
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert origin.bytes_served == 0 and origin.listings == 1
    assert backend.bytes_from_peers == {"good": sum(len(v) for v in FILES.values())}
    assert len(peers["good"].requests) > 2  # the big file went in ranged parts (fast_options)


def test_a_file_the_origin_lists_without_a_digest_never_comes_from_a_peer(peers, fast_options, dest: Path):
    peers["good"] = FakePeer("good")
    origin = MemoryBackend(dict(FILES), digests=("etag",))  # nothing to check a peer's bytes against
    backend = peered(origin, ("good", peers["good"]))
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert peers["good"].requests == []
    assert origin.bytes_served == sum(len(v) for v in FILES.values())


def test_a_peer_that_is_slow_once_is_not_dropped(peers, fast_options, dest: Path):
    """A busy peer times out once: that range goes on from the origin, and the peer keeps feeding
    the other ranges (it is dropped only after repeated timeouts)."""
    peers["busy"] = FakePeer("stall-once")
    origin = MemoryBackend(dict(FILES))
    backend = peered(origin, ("busy", peers["busy"]))
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert backend.dropped_peers == {}
    assert backend.bytes_from_peers["busy"] > 0
    assert origin.bytes_served < sum(len(v) for v in FILES.values())


def test_ranges_that_stall_together_are_one_busy_spell(peers, fast_options, dest: Path):
    """A peer busy feeding other nodes stalls every range in flight at once: three timeouts of the
    same spell are one strike, so the peer is kept and feeds what follows; one that never answers
    is still dropped (the "stall" case above)."""
    peers["busy"] = FakePeer("stall-first-three")
    origin = MemoryBackend(dict(FILES))
    backend = peered(origin, ("busy", peers["busy"]))
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert backend.dropped_peers == {}
    assert len(peers["busy"].requests) > 3
    assert backend.bytes_from_peers["busy"] > 0


_REFUSED = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "busy"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ConnectTimeoutError("connect timed out"), True),
        (TimeoutError("timed out"), True),
        (_REFUSED, False),  # a subclass of ConnectTimeoutError in urllib3 2, but the peer is gone
        (urllib3.exceptions.MaxRetryError(None, "/x", _REFUSED), False),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("connection reset"), False),
    ],
)
def test_only_timeouts_count_as_a_busy_peer(error: BaseException, busy: bool):
    assert _timed_out(error) is busy
