"""The HTTP side of the fake Hugging Face Hub (see `fake_hf.py` for what it answers and why)."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.servers.fake_hf import (
    LFS_POINTER_SIZE,
    Corrupt,
    FakeFile,
    FakeHub,
    FakeRepo,
    Reset,
    Stall,
    Status,
    Truncate,
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer (it read the headers of an error and closed) is normal.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_listener(hub: FakeHub, *, cdn: bool) -> ThreadingHTTPServer:
    class Handler(_Handler):
        pass

    Handler.hub = hub
    Handler.is_cdn = cdn
    return _Server(("127.0.0.1", 0), Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub
    is_cdn: bool

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # --- routing ----------------------------------------------------------------------------

    def _dispatch(self, *, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        record: dict[str, Any] = {
            "method": self.command,
            "path": path,
            "range": self.headers.get("Range"),
            "authorization": self.headers.get("Authorization") is not None,
            "cdn": self.is_cdn,
            "bytes": 0,
        }
        with self.hub._lock:
            self.hub.requests.append(record)
        if self.is_cdn:
            if record["authorization"]:
                self.hub.cdn_saw_authorization = True
            return self._cdn(path, head=head, record=record)
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/") :], parse_qs(split.query))
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            revision, _, file_path = rest.partition("/")
            return self._resolve(repo_id, revision, file_path, head=head, record=record)
        self._error(404, "RepoNotFound", "not found")

    def _repo(self, repo_id: str, *, for_bytes: bool) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if repo is None or (repo.private and token not in repo.tokens):
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if for_bytes and repo.gated and token not in repo.tokens:
            self._error(403, "GatedRepo", "Access to this model is restricted; request access")
            return None
        return repo

    def _commit(self, repo: FakeRepo, revision: str) -> str | None:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision == repo.commit:
            return revision
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return None

    def _api(self, rest: str, query: dict[str, list[str]]) -> None:
        for repo_id in sorted(self.hub.repos, key=len, reverse=True):
            if rest == repo_id or rest.startswith(repo_id + "/"):
                break
        else:
            return self._error(401, "RepoNotFound", "Repository not found")
        repo = self._repo(repo_id, for_bytes=False)
        if repo is None:
            return None
        tail = rest[len(repo_id) :].lstrip("/")
        if tail == "" or tail.startswith("revision/"):
            commit = self._commit(repo, tail.removeprefix("revision/") or "main")
            if commit is None:
                return None
            info = {
                "_id": repo.commit[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
            return self._json(200, info)
        if tail.startswith("tree/"):
            revision, _, sub = tail[len("tree/") :].partition("/")
            commit = self._commit(repo, revision)
            if commit is None:
                return None
            return self._tree(
                repo,
                sub,
                recursive=query.get("recursive", ["false"])[0] in ("true", "True", "1"),
                cursor=int(query.get("cursor", ["0"])[0]),
                revision=revision,
            )
        return self._error(404, "EntryNotFound", "unknown API path")

    def _tree(self, repo: FakeRepo, sub: str, *, recursive: bool, cursor: int, revision: str) -> None:
        prefix = f"{sub}/" if sub else ""
        if sub and not any(p.startswith(prefix) for p in repo.files):
            return self._error(404, "EntryNotFound", f"{sub} does not exist")
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for path in sorted(repo.files):
            if not path.startswith(prefix):
                continue
            rel_parts = path[len(prefix) :].split("/")
            for depth in range(1, len(rel_parts)):
                d = prefix + "/".join(rel_parts[:depth])
                if d not in dirs and (recursive or depth == 1):
                    dirs.add(d)
                    entries.append(
                        {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d}
                    )
            if not recursive and len(rel_parts) > 1:
                continue
            f = repo.files[path]
            entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": len(f.data), "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": LFS_POINTER_SIZE}
            entries.append(entry)
        headers = {}
        page = entries
        if self.hub.page_size:
            page = entries[cursor : cursor + self.hub.page_size]
            if cursor + self.hub.page_size < len(entries):
                nxt = f"{self.hub.url}/api/models/{repo.repo_id}/tree/{quote(revision, safe='')}"
                nxt += (f"/{quote(sub)}" if sub else "") + f"?recursive={str(recursive).lower()}"
                nxt += f"&cursor={cursor + self.hub.page_size}"
                headers["Link"] = f'<{nxt}>; rel="next"'
        return self._json(200, page, headers)

    def _resolve(
        self, repo_id: str, revision: str, file_path: str, *, head: bool, record: dict[str, Any]
    ) -> None:
        repo = self._repo(repo_id, for_bytes=True)
        if repo is None:
            return None
        commit = self._commit(repo, revision)
        if commit is None:
            return None
        f = repo.files.get(file_path)
        if f is None or file_path in repo.missing:
            return self._error(404, "EntryNotFound", f"{file_path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{f.sha256 if f.lfs else f.git_oid}"'}
        if f.lfs:
            headers |= {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))}
            if self.hub.redirect_lfs:
                location = f"{self.hub.cdn_url}/cdn/{repo_id}/{f.sha256}?X-Signature=abc"
                return self._send(302, b"", headers | {"Location": location}, head=head)
        record["file"] = file_path
        return self._bytes(repo_id, file_path, f, headers, head=head, record=record)

    def _cdn(self, path: str, *, head: bool, record: dict[str, Any]) -> None:
        _, _, rest = path.partition("/cdn/")
        repo_id, _, sha = rest.rpartition("/")
        repo = self.hub.repos.get(repo_id)
        match = [(p, f) for p, f in (repo.files.items() if repo else []) if f.lfs and f.sha256 == sha]
        if not match:
            return self._send(
                404, b"<Error>NoSuchKey</Error>", {"Content-Type": "application/xml"}, head=head
            )
        file_path, f = match[0]
        record["file"] = file_path
        return self._bytes(repo_id, file_path, f, {"ETag": f'"{f.sha256}"'}, head=head, record=record)

    # --- bytes, with faults ---------------------------------------------------------------

    def _bytes(
        self,
        repo_id: str,
        file_path: str,
        f: FakeFile,
        headers: dict[str, str],
        *,
        head: bool,
        record: dict[str, Any],
    ) -> None:
        data = f.data
        start, end, status = 0, len(data), 200
        wanted = None if self.hub.ignore_range else self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[len("bytes=") :].partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(len(data), int(last) + 1) if first and last else len(data)
            if start >= len(data) and len(data) > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head=head)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers["Accept-Ranges"] = "bytes"
        body = data[start:end]
        fault = None if head else self.hub._take_fault(repo_id, file_path)
        if isinstance(fault, Status):
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._error(fault.code, fault.error_code, f"injected {fault.code}", extra)
        if isinstance(fault, Corrupt) and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(status)
        for k, v in (headers | {"Content-Length": str(len(body))}).items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return None
        limit = fault.after if isinstance(fault, Reset | Truncate | Stall) else len(body)
        view = memoryview(body)
        sent = 0
        rate = self.hub.bytes_per_second
        chunk = 16 * 1024 if rate else 256 * 1024  # small chunks when paced: a smooth byte count
        started = time.monotonic()
        try:
            while sent < min(limit, len(body)):
                n = self.wfile.write(view[sent : min(limit, sent + chunk)])
                sent += n
                self.hub._count(record, n)
                if rate:
                    self.hub._stop.wait(max(0.0, started + sent / rate - time.monotonic()))
            self.wfile.flush()
            if isinstance(fault, Stall):
                self.hub._stop.wait(fault.seconds)
                self.close_connection = True
            elif isinstance(fault, Reset):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
            elif isinstance(fault, Truncate):
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return None

    # --- plain answers --------------------------------------------------------------------

    def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._send(code, body, {"Content-Type": "application/json", **(headers or {})}, head=False)

    def _error(
        self, code: int, error_code: str | None, message: str, headers: dict[str, str] | None = None
    ) -> None:
        extra = dict(headers or {})
        if error_code:
            extra["X-Error-Code"] = error_code
        extra["X-Error-Message"] = message
        body = json.dumps({"error": message}).encode()
        self._send(code, body, {"Content-Type": "application/json", **extra}, head=self.command == "HEAD")

    def _send(self, code: int, body: bytes, headers: dict[str, str], *, head: bool) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
