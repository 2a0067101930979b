"""HTTP/1.1 plumbing on the standard library: one thread per connection, keep-alive, JSON bodies,
and chunked watch streams. What to answer is decided in `endpoints`; this module only moves bytes.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import tables
from .endpoints import ApiEndpoints, ApiRequest, ApiResponse, WatchStream
from .errors import ApiError
from .store import Store, present
from .watchhub import Bookmark, Closed

log = logging.getLogger(__name__)

# How often an idle watch wakes up to notice a gone client, a deadline or a server stop.
_WATCH_POLL_SECONDS = 0.5


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, store: Store, bookmark_interval: float) -> None:
        super().__init__(address, ApiRequestHandler)
        self.store = store
        self.endpoints = ApiEndpoints(store, server_address=f"{address[0]}:{self.server_address[1]}")
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections so their threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _encode(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


class ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "modelferry-apiserver"
    # Headers and body go out as separate writes; without this, Nagle + delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    server: ApiHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        result: ApiResponse | WatchStream
        try:
            request = ApiRequest(
                method=method,
                path=url.path,
                query=query,
                body=self._read_body(),
                content_type=self.headers.get("Content-Type", ""),
                accept=self.headers.get("Accept", ""),
            )
            result = self.server.endpoints.handle(request)
        except ApiError as e:
            result = ApiResponse(e.code, e.to_status())
        except Exception as e:  # a bug here must still answer like a server, not drop the connection
            log.exception("internal error serving %s %s", method, self.path)
            result = ApiResponse(500, ApiError(500, "InternalError", f"internal error: {e}").to_status())
        if isinstance(result, WatchStream):
            self._stream(result)
        else:
            self._send(result)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def _send(self, response: ApiResponse) -> None:
        data = _encode(response.body)
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    # --- watch ----------------------------------------------------------------------------------

    def _stream(self, ws: WatchStream) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            if ws.error is not None:
                self._chunk({"type": "ERROR", "object": ws.error})
            elif not self._pump(ws):
                self.close_connection = True  # the client went away
                return
            # A finished stream leaves the connection reusable, as clients' pools expect.
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = self.close_connection or self.server.stopping.is_set()
        except OSError:
            self.close_connection = True  # the client went away
        finally:
            if ws.watcher is not None:
                self.server.store.unwatch(ws.rt, ws.watcher)

    def _chunk(self, event: dict[str, Any]) -> None:
        data = _encode(event) + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _pump(self, ws: WatchStream) -> bool:
        """Send events until the deadline, a stop or a closed watcher; False if the client left."""
        assert ws.watcher is not None
        rt, store = ws.rt, self.server.store
        deadline = time.monotonic() + ws.timeout
        next_bookmark = time.monotonic() + self.server.bookmark_interval
        while not self.server.stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return True
            if ws.bookmarks and now >= next_bookmark:
                store.bookmark(ws.watcher)
                next_bookmark = now + self.server.bookmark_interval
            item = ws.watcher.next(timeout=min(_WATCH_POLL_SECONDS, deadline - now))
            if item is None:
                if self._client_gone():
                    return False
            elif isinstance(item, Closed):
                return True
            elif isinstance(item, Bookmark):
                if ws.bookmarks or item.initial_events_end:
                    meta: dict[str, Any] = {"resourceVersion": str(item.rv)}
                    if item.initial_events_end:
                        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                    bookmark = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
                    if ws.as_partial_metadata:
                        bookmark = tables.partial_metadata(bookmark)
                    self._chunk({"type": "BOOKMARK", "object": bookmark})
            elif (seen := ws.watcher.translate(item)) is not None:
                event_type, obj = seen[0], present(rt, seen[1])
                if ws.as_table:
                    obj = tables.table(
                        rt,
                        [obj],
                        list_meta={"resourceVersion": obj["metadata"]["resourceVersion"]},
                        include_object=ws.include_object,
                    )
                elif ws.as_partial_metadata:
                    obj = tables.partial_metadata(obj)
                self._chunk({"type": event_type, "object": obj})
        return True

    def _client_gone(self) -> bool:
        """True once the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
