"""Peer delivery, the serving side: a node worker serves the complete versions it holds to the
node workers of its cluster, so a model crosses the origin's link once, not once per node.

Read-only HTTP on `peer.bind_address:peer.port` (127.0.0.1:8090 by default; 0 a free port):

    GET|HEAD /v1/versions/<storage.path, percent-encoded whole>/<version id>/files/<file name>
    GET|HEAD /v1/versions/<storage.path, percent-encoded whole>/<version id>/manifest

(built by `activities.storage.peer`, the fetching side). A file answers 200, or 206 with
`Content-Range` for one `Range: bytes=a-b` (also `a-` and `-n`); a range it cannot satisfy is 416
with `Content-Range: bytes */<size>`. Nothing else exists: no listing of directories, models or
versions, only a version's manifest.

What it serves, and what it refuses (404 naming why, never a byte):

- every request must carry `Authorization: Bearer <token>`, the per-cluster secret from the
  variable `peer.token_env` names (compared in constant time). Without that variable set, the
  server refuses every request with 401 and says so in its log once, and the worker advertises no
  peer URL: a node that cannot check callers serves nobody;
- `storage.path` must pass the same rules as a delivery (absolute, normalised, below a models
  root, not inside modelferry's state), and the version id must be a plain directory name;
- the version must be COMPLETE (its `.modelferry/manifest.json` exists) and a real directory
  inside the models root (no symlink on the way that leads out);
- the file must be listed in that manifest, be a regular file (opened with O_NOFOLLOW, its parent
  resolving inside the version directory) and have the manifest's size. Serving does not re-hash:
  the fetching node checks every byte against the origin's digests, and drops a peer that lies.

It runs on the worker's event loop (aiohttp's low-level server; file bytes go by `sendfile`, so
serving costs the loop next to nothing) and stops with the worker; a stop cuts transfers in flight
after `SHUTDOWN_GRACE` seconds, and the fetching nodes go on from the next peer or the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from aiohttp import web

from activities.node_options import peer_token
from activities.storage.manifest import Manifest, StateLayout, read_manifest
from activities.storage.peer import API_PREFIX
from modelferry.admission import admission_policy
from modelferry.errors import ModelferryError
from modelferry.layout import host_path, model_layout
from modelferry.ownership import check_models_root
from modelferry.settings import Settings
from modelferry.storage_uri import safe_relative_path, validate_model_path

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 1.0  # seconds a stopping server lets transfers run: peers fall over to others
SEND_CHUNK = 1024 * 1024  # bytes per write when sendfile is not available (or a rate is capped)
_VERSION_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_UNSPECIFIED = ("", "0.0.0.0", "::")


class PeerRequestError(Exception):
    """A request the server refuses: its HTTP status and a short reason (sent as the body)."""

    def __init__(self, status: int, reason: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class ServedFile:
    """A file the server may send: an open file object and its size (the caller closes it)."""

    file: IO[bytes]
    size: int


def peer_server_wanted(settings: Settings) -> bool:
    return settings.peer.enabled and settings.peer.port is not None


# --- what a path means -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerPath:
    storage_path: str
    version_id: str
    file: str | None  # None: the manifest


def parse_peer_path(raw_path: str) -> PeerPath:
    """Parse the raw (still percent-encoded) request path; PeerRequestError 404 when it names
    nothing this server serves. Segments are decoded one by one, so an encoded `/` can never
    split a file name, and `.`, `..` or an empty segment anywhere is refused."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith(API_PREFIX + "/"):
        raise PeerRequestError(404, "not found")
    raw = path[len(API_PREFIX) + 1 :].split("/")
    try:
        segments = [unquote(s, errors="strict") for s in raw]
    except UnicodeDecodeError:
        raise PeerRequestError(404, "not found") from None
    if len(segments) < 3 or any(s in ("", ".", "..") or "\0" in s for s in segments):
        raise PeerRequestError(404, "not found")
    storage_path, version_id, what, *rest = segments
    if not _VERSION_ID.match(version_id):
        raise PeerRequestError(404, f"version id {version_id!r} is not a version directory name")
    if what == "manifest" and not rest:
        return PeerPath(storage_path=storage_path, version_id=version_id, file=None)
    if what != "files" or not rest or any("/" in s or "\\" in s for s in rest):
        raise PeerRequestError(404, "not found")
    return PeerPath(storage_path=storage_path, version_id=version_id, file="/".join(rest))


# --- what a path resolves to on disk (blocking: runs in a thread) ------------------------------


def complete_version(settings: Settings, *, storage_path: str, version_id: str) -> tuple[Path, Manifest]:
    """The version directory of a complete version and its manifest; PeerRequestError 404 else."""
    try:
        validate_model_path(storage_path)
        root = check_models_root(storage_path, models_roots=admission_policy(settings).models_roots)
    except ModelferryError as error:
        raise PeerRequestError(404, str(error)) from None
    root_on_host = host_path(node_root=settings.node.root, storage_path=root)
    version_dir = model_layout(node_root=settings.node.root, storage_path=storage_path).version_dir(
        version_id
    )
    try:
        st = version_dir.lstat()
    except OSError:
        raise PeerRequestError(404, f"no version {version_id} of {storage_path} on this node") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PeerRequestError(404, f"version {version_id} of {storage_path} is not a directory")
    if not version_dir.resolve().is_relative_to(root_on_host.resolve()):
        raise PeerRequestError(404, f"version {version_id} of {storage_path} leads outside its models root")
    manifest_file = StateLayout(version_dir).manifest
    manifest = read_manifest(manifest_file) if _is_regular(manifest_file) else None
    if manifest is None:
        raise PeerRequestError(404, f"version {version_id} of {storage_path} is not complete on this node")
    return version_dir, manifest


def open_version_file(settings: Settings, *, storage_path: str, version_id: str, name: str) -> ServedFile:
    """Open one file of a complete version for reading, after every check in the docstring."""
    version_dir, manifest = complete_version(settings, storage_path=storage_path, version_id=version_id)
    record = next((r for r in manifest.files if r.name == name), None)
    if record is None:
        raise PeerRequestError(404, f"{name!r} is not a file of version {version_id}")
    try:
        parts = safe_relative_path(name).parts
    except ModelferryError as error:
        raise PeerRequestError(404, str(error)) from None
    path = version_dir.joinpath(*parts)
    if not Path(os.path.realpath(path.parent)).is_relative_to(version_dir.resolve()):
        raise PeerRequestError(404, f"{name}: a symlink on the way leads outside version {version_id}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise PeerRequestError(404, f"{name}: cannot be opened ({error.strerror})") from None
    file = os.fdopen(fd, "rb", buffering=0)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PeerRequestError(404, f"{name}: not a regular file")
        if st.st_size != record.size:
            raise PeerRequestError(
                404, f"{name}: {st.st_size} bytes on disk, the manifest says {record.size} (damaged)"
            )
    except BaseException:
        file.close()
        raise
    return ServedFile(file=file, size=st.st_size)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a `Range` header, None without one; PeerRequestError 416 when it cannot be
    served (malformed, several ranges, or starting past the end)."""
    if header is None:
        return None
    unsatisfiable = PeerRequestError(
        416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
    )
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header, re.ASCII | re.IGNORECASE)
    if match is None or match.group(1) == match.group(2) == "":
        raise unsatisfiable
    first, last = match.group(1), match.group(2)
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise unsatisfiable
    return start, end


# --- the server ---------------------------------------------------------------------------------


class PeerServer:
    """The HTTP server: `await start()`, `url` (what peers use; "" while it serves nobody),
    `await stop()`. `max_bytes_per_second` caps each response (None: as fast as the disk and the
    link go); tests use it to act in the middle of a transfer."""

    def __init__(
        self, *, settings: Settings, token: str | None, max_bytes_per_second: int | None = None
    ) -> None:
        self._settings = settings
        self._token = token.encode() if token else None
        self._rate = max_bytes_per_second
        self._runner: web.ServerRunner | None = None
        self.port = 0
        self.url = ""
        self.bytes_sent = 0  # file bytes handed to the socket (a cut transfer counts what went out)

    async def start(self) -> None:
        peer = self._settings.peer
        if self._token is None:
            log.warning(
                "peer server: $%s is not set, so every request is refused (401) and this node "
                "serves no peer; set the cluster's peer token there to serve peers",
                peer.token_env,
            )
        runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, peer.bind_address, peer.port or 0, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self._token is not None:
            self.url = advertised_url(self._settings, port=self.port)
        log.info(
            "peer server: complete versions on http://%s:%d (advertised as %s)",
            peer.bind_address,
            self.port,
            self.url or "nothing: no token",
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self.url = ""
        if runner is not None:
            await runner.cleanup()

    # --- requests ---------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if request.method not in ("GET", "HEAD"):
                raise PeerRequestError(405, "read-only", headers={"Allow": "GET, HEAD"})
            self._authorize(request.headers.get("Authorization", ""))
            where = parse_peer_path(request.raw_path)
            if where.file is None:
                return await self._manifest(request, where)
            return await self._file(request, where)
        except PeerRequestError as error:
            if error.status != 401:
                log.debug("peer server: %s %s: %d %s", request.method, request.raw_path, error.status, error)
            return web.Response(status=error.status, text=str(error) + "\n", headers=error.headers)

    def _authorize(self, header: str) -> None:
        if self._token is None:
            raise PeerRequestError(401, "this node has no peer token: it serves nobody")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            raise PeerRequestError(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    async def _manifest(self, request: web.BaseRequest, where: PeerPath) -> web.StreamResponse:
        version_dir, _ = await asyncio.to_thread(
            complete_version, self._settings, storage_path=where.storage_path, version_id=where.version_id
        )
        body = await asyncio.to_thread(StateLayout(version_dir).manifest.read_bytes)
        return web.Response(body=b"" if request.method == "HEAD" else body, content_type="application/json")

    async def _file(self, request: web.BaseRequest, where: PeerPath) -> web.StreamResponse:
        assert where.file is not None
        served = await asyncio.to_thread(
            open_version_file,
            self._settings,
            storage_path=where.storage_path,
            version_id=where.version_id,
            name=where.file,
        )
        try:
            wanted = byte_range(request.headers.get("Range"), served.size)
            start, end = wanted or (0, served.size)
            response = web.StreamResponse(status=206 if wanted else 200)
            response.headers["Accept-Ranges"] = "bytes"
            response.headers["Content-Type"] = "application/octet-stream"
            if wanted:
                response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{served.size}"
            response.content_length = end - start
            await response.prepare(request)
            if request.method == "GET" and end > start:
                try:
                    await self._send(request, response, served.file, start, end - start)
                except ConnectionError as error:  # the fetching node hung up (or fell over): normal
                    log.debug("peer server: %s cut at its peer's end: %s", where.file, error)
                    return response
            await response.write_eof()
            return response
        finally:
            served.file.close()

    async def _send(
        self, request: web.BaseRequest, response: web.StreamResponse, file: IO[bytes], offset: int, count: int
    ) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the peer hung up")
        if self._rate is None:
            with contextlib.suppress(NotImplementedError):
                await asyncio.get_running_loop().sendfile(transport, file, offset, count)
                self.bytes_sent += count
                return
        while count > 0:
            size = min(count, SEND_CHUNK if self._rate is None else max(1, self._rate // 20))
            chunk = await asyncio.to_thread(os.pread, file.fileno(), size, offset)
            if not chunk:
                raise ConnectionResetError("the file ended early")  # cut the body: never pad it
            await response.write(chunk)
            self.bytes_sent += len(chunk)
            offset += len(chunk)
            count -= len(chunk)
            if self._rate is not None:
                await asyncio.sleep(len(chunk) / self._rate)


def advertised_url(settings: Settings, *, port: int) -> str:
    """`peer.advertise_url`, else `http://<bind address>:<port>`; an unspecified bind address
    (0.0.0.0, ::) is replaced by this host's address, the best a worker can guess alone (a pod
    should set `peer.advertise_url` from its IP)."""
    peer = settings.peer
    if peer.advertise_url:
        return peer.advertise_url.rstrip("/")
    host = peer.bind_address
    if host in _UNSPECIFIED:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def start_peer_server(settings: Settings) -> PeerServer | None:
    """The node worker's peer server when `peer.enabled` and `peer.port` say so, else None. A port
    already taken is one WARNING and no peer server: the node still gets and serves its models,
    it only cannot feed its peers (they fetch from others or the origin)."""
    if not peer_server_wanted(settings):
        return None
    server = PeerServer(settings=settings, token=peer_token(settings))
    try:
        await server.start()
    except OSError as error:
        log.warning(
            "peer server not started, cannot listen on %s:%s: %s",
            settings.peer.bind_address,
            settings.peer.port,
            error,
        )
        return None
    return server
