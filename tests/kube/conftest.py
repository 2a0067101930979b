"""Local servers for the Kubernetes client tests: one that answers every request with a chosen
HTTP status (a Kubernetes Status body) or drops the connection unanswered, one that accepts and
never answers, and a kubeconfig pointing at either, so clients are built the way every entry point
builds them (`modelferry.kubeclient.load_api_client`)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.kubeclient import load_api_client
from modelferry.settings import KubeSettings

DROP = "drop"  # close the connection without an answer
CUT_WATCH = "cut-watch"  # a watch that sends one event, then the connection breaks mid-stream


def client_for(url: str, directory: Path) -> Any:
    """An ApiClient for `url`, loaded from a kubeconfig as in production."""
    kubeconfig = directory / f"kubeconfig-{url.rsplit(':', 1)[-1]}"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": url}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return load_api_client(KubeSettings(kubeconfig=kubeconfig))


class _Answering(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AnsweringServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.answer
        if answer == DROP:
            self.close_connection = True
            return
        if answer == CUT_WATCH:
            event = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "n1"}}}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk: a broken stream
            self.close_connection = True
            return
        status = int(answer)
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"injected {status}",
                "code": status,
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _answer


class AnsweringServer(ThreadingHTTPServer):
    daemon_threads = True
    answer: int | str = 500

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def answering_server() -> Iterator[AnsweringServer]:
    server = AnsweringServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never sends a byte (a half-open peer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


ClientFactory = Callable[[str], Any]


@pytest.fixture
def api_client_for(tmp_path: Path) -> ClientFactory:
    return lambda url: client_for(url, tmp_path)
