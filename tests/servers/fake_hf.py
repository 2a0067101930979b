"""A fake Hugging Face Hub for tests: answers the real `huggingface_hub` client the way the Hub does.

Served paths (what `HfApi.model_info`, `HfApi.list_repo_tree`, `hf_hub_download` and
`snapshot_download` call):

- `GET /api/models/{repo}[/revision/{rev}]`: model info with `sha` and `siblings`;
- `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true`: entries with `type`, `path`, `size`,
  `oid` (git blob sha1) and for LFS files `lfs {oid (sha256), size, pointerSize}`, paginated with a
  GitHub-style `Link: <...>; rel="next"` header when `page_size` is set;
- `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: `X-Repo-Commit`, `ETag` (and for LFS files
  `X-Linked-Etag`/`X-Linked-Size`), `Content-Length`, `Accept-Ranges`, and `Range` → 206 with
  `Content-Range`. With `redirect_lfs`, LFS files answer 302 to a second listener, a "CDN" on a
  different origin (another port), as the Hub redirects to its CDN; the CDN records whether it
  ever received an `Authorization` header (it must not).

Errors carry `X-Error-Code` like the Hub (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
`GatedRepo`). A gated repo lists freely but refuses file bytes without an allowed token; a private
one answers 401 `RepoNotFound` to everything without one.

Faults are queued per (repo, path) and consumed one per data GET: an HTTP status (500, 429 with
Retry-After, 404), a connection reset mid-body, a truncated body, wrong bytes, a stalled stream.
A file can be listed yet missing, and `ignore_range` makes the Hub answer ranged GETs with the
whole file (200), as some mirrors do. `bytes_served` counts file bytes written to clients;
`bytes_per_second` paces every file response, so a test can act mid-transfer.
Listeners bind 127.0.0.1 on free ports, run in daemon threads; `stop()` ends stalls at once.
The HTTP side lives in `fake_hf_http.py`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

LFS_POINTER_SIZE = 134


@dataclass(frozen=True)
class Status:
    """Answer with this HTTP status (and optional headers) instead of the bytes."""

    code: int
    error_code: str | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class Reset:
    """Send `after` bytes of the body, then reset the connection (RST)."""

    after: int = 0


@dataclass(frozen=True)
class Truncate:
    """Promise the full Content-Length, send `after` bytes, then close cleanly."""

    after: int = 0


@dataclass(frozen=True)
class Corrupt:
    """Send the bytes with one flipped."""


@dataclass(frozen=True)
class Stall:
    """Send `after` bytes, then send nothing for `seconds` (or until the server stops)."""

    after: int = 0
    seconds: float = 30.0


Fault = Status | Reset | Truncate | Corrupt | Stall


@dataclass
class FakeFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        content = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    @property
    def pointer(self) -> bytes:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    commit: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit
    gated: bool = False
    private: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens with access
    missing: set[str] = field(default_factory=set)  # listed, but resolve answers 404


class FakeHub:
    def __init__(self, *, redirect_lfs: bool = True, page_size: int | None = None) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.redirect_lfs = redirect_lfs
        self.page_size = page_size
        self.ignore_range = False  # answer every data GET with 200 and the whole file
        self.bytes_per_second: int | None = None  # cap per file response; None: as fast as it can
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.bytes_served = 0
        self.requests: list[dict[str, Any]] = []
        self.cdn_saw_authorization = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self.url = ""
        self.cdn_url = ""

    # --- set-up ---------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        lfs_min_size: int = 1024,
        gated: bool = False,
        private: bool = False,
        tokens: set[str] | None = None,
    ) -> FakeRepo:
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        commit = digest.hexdigest()
        repo = FakeRepo(
            repo_id=repo_id,
            files={p: FakeFile(data=d, lfs=len(d) >= lfs_min_size) for p, d in files.items()},
            commit=commit,
            branches={"main": commit},
            gated=gated,
            private=private,
            tokens=set(tokens or ()),
        )
        self.repos[repo_id] = repo
        return repo

    def add_fault(self, repo_id: str, path: str, *faults: Fault) -> None:
        with self._lock:
            self.faults.setdefault((repo_id, path), []).extend(faults)

    def served_for(self, path: str) -> int:
        return sum(r["bytes"] for r in self.requests if r.get("file") == path)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeHub:
        from tests.servers.fake_hf_http import make_listener

        hub = make_listener(self, cdn=False)
        cdn = make_listener(self, cdn=True)
        self._servers = [hub, cdn]
        self.url = f"http://127.0.0.1:{hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{cdn.server_address[1]}"
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (called from handler threads) -----------------------------------

    def _take_fault(self, repo_id: str, path: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get((repo_id, path))
            return queue.pop(0) if queue else None

    def _count(self, record: dict[str, Any], n: int) -> None:
        with self._lock:
            self.bytes_served += n
            record["bytes"] += n


@contextmanager
def running_hub(**kwargs: Any) -> Iterator[FakeHub]:
    hub = FakeHub(**kwargs).start()
    try:
        yield hub
    finally:
        hub.stop()
