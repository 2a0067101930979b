"""A small HTTP proxy in front of moto_server that injects the network faults moto cannot.

The client under test uses the proxy's URL as its S3 endpoint (path-style); every request goes to
moto unchanged unless a queued `Fault` (the same vocabulary as the fake OCI server) matches it:
"status" answers an S3 XML error (`SlowDown` 503 with Retry-After, `AccessDenied` 403, ...)
without asking moto; "reset", "truncate", "corrupt" and "stall" let moto answer, then spoil the
body after `after_bytes`. Method "LIST" is a bucket listing, "GET"/"HEAD" an object request;
`name` is the object key. moto does not check signatures, so forwarding the signed Host is fine.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.servers.fake_oci import Fault, FaultQueue

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class S3FaultProxy(FaultQueue):
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.bytes_served = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> S3FaultProxy:
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="s3-fault-proxy", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@contextmanager
def running_s3_fault_proxy(upstream: str) -> Iterator[S3FaultProxy]:
    proxy = S3FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: S3FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        proxy = self.proxy
        with proxy.lock:
            proxy.requests.append((self.command, self.path))
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = urlsplit(self.path).path
        _, _, key = path.lstrip("/").partition("/")
        method = "LIST" if self.command == "GET" and not key else self.command
        fault = proxy.take_fault(method, unquote(key) or None)
        if fault is not None and fault.kind == "status":
            return self._s3_error(fault)
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.end_headers()
        finally:
            upstream.close()
        if self.command != "HEAD":
            self._send_body(data, fault)

    def _send_body(self, data: bytes, fault: Fault | None) -> None:
        cut = len(data) if fault is None else min(fault.after_bytes, len(data))
        if fault is not None and fault.kind == "corrupt":
            cut = len(data)
            data = data[: fault.after_bytes] + bytes(b ^ 0xFF for b in data[fault.after_bytes :])
        try:
            self.wfile.write(data[:cut])
            self.wfile.flush()
            with self.proxy.lock:
                self.proxy.bytes_served += cut
            if fault is None or fault.kind == "corrupt":
                return
            if fault.kind == "stall":
                self.proxy.stopping.wait(fault.stall_seconds)
            elif fault.kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
        self.connection.close()

    def _s3_error(self, fault: Fault) -> None:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{fault.code}</Code><Message>injected</Message>"
            f"<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        self.send_response(fault.status)
        self.send_header("content-type", "application/xml")
        self.send_header("content-length", str(len(xml) if self.command != "HEAD" else 0))
        if fault.retry_after is not None:
            self.send_header("retry-after", f"{fault.retry_after:g}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)
