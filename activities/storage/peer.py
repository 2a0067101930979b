"""Peer delivery, the fetching side: a backend that reads a model's bytes from nodes that already
hold the version, and falls over to the origin.

`PeeredBackend` wraps the origin backend. The listing always comes from the origin: it carries
the digests, and the engine checks every byte against them as it does for any source, so a peer
can make a download fast but can never make it wrong. For each byte range the engine asks for,
the peers are tried in the order given (the workflow rotates that order per node, which spreads
the load), then the origin. A peer is dropped for the rest of this download, with the reason, when
it refuses the token (401/403), does not hold the version or file (404), refuses the range (416),
answers anything else unexpected, fails to connect, stalls past its read timeout, ends a body
early, or served bytes of a file that failed its digest (`checksum_failed`, the engine's hook).
A failure mid-range goes on from the same offset with the next source in the same call, so
failing over costs the engine no retry.

Only files the origin lists with a digest the engine verifies are read from peers; a file with
none (an object without a content MD5, a claim's file) always comes from the origin, because a
peer's bytes must be checked against something the origin promised.

The URL scheme is shared with the server (`activities.peer_server`):
`GET <peer url>/v1/versions/<storage.path, percent-encoded whole>/<version id>/files/<file name>`
(each segment of the name percent-encoded) with `Range: bytes=a-b` and
`Authorization: Bearer <cluster token>`; `.../manifest` answers the version's manifest.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import urllib3

from activities.storage.base import Buffer, ModelListing, RemoteFile, StorageBackend, read_into_reused_buffer
from activities.storage.hashing import expected_digests

log = logging.getLogger(__name__)

API_PREFIX = "/v1/versions"
USER_AGENT = "modelferry/0.1 (peer)"
# A peer is a node in the same cluster: one that takes longer than this to connect, or to send the
# next byte, is slower than going back to the origin. Far below the engine's stall timeout, so a
# stalled peer is dropped here and the range goes on elsewhere within the same part attempt.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
_REASON_BODY = 200  # characters of a peer's error body kept in the reason


def version_path(*, storage_path: str, version_id: str) -> str:
    """`/v1/versions/<storage.path>/<version id>`: `storage.path` is one segment (its `/` encoded)."""
    return f"{API_PREFIX}/{quote(storage_path, safe='')}/{quote(version_id, safe='')}"


def file_path(*, storage_path: str, version_id: str, name: str) -> str:
    segments = "/".join(quote(part, safe="") for part in name.split("/"))
    return f"{version_path(storage_path=storage_path, version_id=version_id)}/files/{segments}"


def manifest_path(*, storage_path: str, version_id: str) -> str:
    return f"{version_path(storage_path=storage_path, version_id=version_id)}/manifest"


@dataclass(frozen=True, slots=True)
class Peer:
    """A node whose worker serves the version: `url` is its peer server's base URL."""

    node: str
    url: str
    version_id: str


class PeerDropped(Exception):
    """Internal: this peer failed; the message is the reason recorded for it."""


class PeerSlow(PeerDropped):
    """Internal: this peer timed out. A busy peer is not a bad one: the range goes on elsewhere,
    and the peer is dropped only after `SLOW_STRIKES` busy spells in one download."""


# Busy spells a peer may have in one download before it is dropped; any other failure drops it at
# once. Timeouts less than one read timeout after the spell's first are the same spell: ranges in
# flight together stall together when a peer is busy feeding many nodes at once (the netns bench
# saw healthy peers dropped when each of those timeouts counted).
SLOW_STRIKES = 3


class PeeredBackend:
    """The origin's listing, bytes from peers first (see the module docstring)."""

    def __init__(
        self,
        *,
        origin: StorageBackend,
        peers: Sequence[Peer],
        storage_path: str,
        token: str,
        pool_size: int = 16,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.scheme = origin.scheme
        self.origin = origin
        self.peers = list(peers)
        self.storage_path = storage_path
        self._token = token
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._dropped: dict[str, str] = {}
        self._strikes: dict[str, int] = {}
        self._spell_started: dict[str, float] = {}
        self._fed: dict[str, int] = {}
        self._served: dict[str, set[str]] = {}  # file name -> peers that fed bytes of its current try
        self._http = urllib3.PoolManager(
            num_pools=max(1, len(self.peers)),
            maxsize=max(1, pool_size),
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            headers={"User-Agent": USER_AGENT},
        )

    # --- what the download activity reports ---------------------------------------------------

    @property
    def bytes_from_peers(self) -> dict[str, int]:
        with self._lock:
            return {node: n for node, n in self._fed.items() if n}

    @property
    def dropped_peers(self) -> dict[str, str]:
        with self._lock:
            return dict(self._dropped)

    def strike(self, node: str, reason: str) -> None:
        """A timeout: this range goes on from the next source; the third busy spell drops the peer."""
        now = time.monotonic()
        with self._lock:
            started = self._spell_started.get(node)
            if started is not None and now - started < self._read_timeout:
                return  # another range of the same spell
            self._spell_started[node] = now
            self._strikes[node] = strikes = self._strikes.get(node, 0) + 1
        if strikes >= SLOW_STRIKES:
            self.drop(node, f"{reason} ({strikes} times busy past the read timeout)")
        else:
            log.info("peer %s busy (%d of %d times): %s", node, strikes, SLOW_STRIKES, reason)

    def drop(self, node: str, reason: str) -> None:
        with self._lock:
            if node in self._dropped:
                return
            self._dropped[node] = reason
        log.warning("peer %s dropped for the rest of this download: %s", node, reason)

    # --- StorageBackend -----------------------------------------------------------------------

    def describe(self) -> str:
        return self.origin.describe()  # the manifest names the origin: peers only carried its bytes

    def list_files(self) -> ModelListing:
        return self.origin.list_files()

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[Buffer]:
        if end <= start:
            return
        position = start
        if expected_digests(file):
            for peer in self.peers:
                if self._is_dropped(peer.node):
                    continue
                stream = self._read_from_peer(peer, file, position, end)
                try:
                    for chunk in stream:
                        position += len(chunk)
                        self._count(peer.node, file.name, len(chunk))
                        yield chunk
                except PeerSlow as error:
                    self.strike(peer.node, str(error))
                except PeerDropped as error:
                    self.drop(peer.node, str(error))
                finally:
                    stream.close()  # also when the engine abandons this attempt: the connection goes
                if position == end:
                    return
        yield from self.origin.read_range(file, position, end)

    def checksum_failed(self, file: RemoteFile) -> bool:
        """The engine's hook: `file` failed its digest. Drop every peer that fed bytes of it; True
        when one did, so the engine fetches it again from the next source without counting this
        as the source's own mismatch (bounded: each True drops at least one peer for good)."""
        with self._lock:
            fed = self._served.pop(file.name, set())
        for node in sorted(fed):
            self.drop(node, f"served bytes of {file.name} that failed its digest check")
        return bool(fed)

    def close(self) -> None:
        self._http.clear()  # the origin is its opener's to close

    # --- HTTP ---------------------------------------------------------------------------------

    def _is_dropped(self, node: str) -> bool:
        with self._lock:
            return node in self._dropped

    def _count(self, node: str, name: str, n: int) -> None:
        with self._lock:
            self._fed[node] = self._fed.get(node, 0) + n
            self._served.setdefault(name, set()).add(node)

    def _read_from_peer(
        self, peer: Peer, file: RemoteFile, start: int, end: int
    ) -> Generator[Buffer, None, None]:
        """Bytes [start, end) of `file` from `peer`; any failure is PeerDropped with the reason."""
        url = peer.url.rstrip("/") + file_path(
            storage_path=self.storage_path, version_id=peer.version_id, name=file.name
        )
        try:
            response = self._http.request(
                "GET",
                url,
                headers={"Authorization": f"Bearer {self._token}", "Range": f"bytes={start}-{end - 1}"},
                preload_content=False,
                decode_content=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as error:
            failure = PeerSlow if _timed_out(error) else PeerDropped
            raise failure(f"cannot reach {peer.url}: {_brief(error)}") from None
        remaining = end - start
        body = None
        try:
            _check_answer(response, file=file, start=start, end=end)
            body = getattr(response, "_fp", None)
            if isinstance(body, http.client.HTTPResponse):  # read straight into a reused buffer
                chunks: Iterator[Buffer] = read_into_reused_buffer(body.readinto, remaining)
            else:
                chunks = response.stream(1024 * 1024, decode_content=False)
            for chunk in chunks:
                if len(chunk) > remaining:
                    raise PeerDropped(f"sent more than the {end - start} bytes asked for of {file.name}")
                remaining -= len(chunk)
                yield chunk
            if remaining:
                raise PeerDropped(f"ended {file.name} {remaining} bytes before byte {end}")
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            failure = PeerSlow if _timed_out(error) else PeerDropped
            raise failure(f"reading {file.name} bytes {start}-{end}: {_brief(error)}") from None
        finally:
            if isinstance(body, http.client.HTTPResponse) and body.isclosed():
                response.release_conn()  # the body was read to its end: the connection is clean
            else:
                response.close()  # unread bytes may be left on it: never hand it back to the pool


def _timed_out(error: BaseException) -> bool:
    reason = getattr(error, "reason", None)  # MaxRetryError wraps the cause
    for cause in (error, reason):
        # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError: a
        # peer that refuses is gone, not busy
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
    return False


def _check_answer(response: urllib3.BaseHTTPResponse, *, file: RemoteFile, start: int, end: int) -> None:
    status = response.status
    if status == 206:
        want = f"bytes {start}-{end - 1}/{file.size}"
        got = response.headers.get("Content-Range", "")
        if got.strip() != want:
            raise PeerDropped(f"answered {file.name} with Content-Range {got!r}, not {want!r}")
        length = response.headers.get("Content-Length")
        if length is not None and length.strip() != str(end - start):
            raise PeerDropped(f"sent {length} bytes for {end - start} bytes of {file.name}")
        if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            raise PeerDropped(f"encoded {file.name} ({response.headers['Content-Encoding']})")
        return
    detail = _body_excerpt(response)
    if status in (401, 403):
        raise PeerDropped(f"refused our token (HTTP {status}){detail}")
    if status == 404:
        raise PeerDropped(f"does not serve {file.name} of this version (HTTP 404){detail}")
    if status == 416:
        raise PeerDropped(f"refused bytes {start}-{end} of {file.name} (HTTP 416){detail}")
    raise PeerDropped(f"answered HTTP {status} for {file.name}{detail}")


def _body_excerpt(response: urllib3.BaseHTTPResponse) -> str:
    try:
        text = response.read(_REASON_BODY, decode_content=False).decode("utf-8", "replace").strip()
    except Exception:
        return ""
    return f": {text}" if text else ""


def _brief(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
