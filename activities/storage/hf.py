"""The `hf://` backend: list a Hugging Face repository at one commit and read file byte ranges.

Listing uses `huggingface_hub.HfApi(endpoint=...)`: the revision (branch, tag or sha) is resolved
to a commit sha once, and the recursive tree *at that sha* gives every file with its size, the
LFS sha256 (large files) or the git blob sha1 (small files); the engine checks those digests
while writing. `allowPatterns` / `ignorePatterns` (comma-separated or a JSON list, fnmatch as
huggingface_hub does) select files, e.g. `ignorePatterns: original/*,*.pth`.

Bytes come from `GET {endpoint}/{repo}/resolve/{sha}/{file}` with a `Range` header, through one
pooled urllib3 client. Redirects (LFS files go to a CDN on another origin) are followed by hand
so the token is sent only to the Hub's own origin, never to a redirected host; CDN URLs are
reused for a while so each part does not pay the redirect again. Why urllib3 and not httpx (which
huggingface_hub 2.4 uses, as its fork `httpx2`): streaming 1 GiB with four parallel ranged reads
plus SHA-256 measured 415-600 MB/s with httpx2 (64 KiB chunks through its pure-Python layers)
and 1.5-1.7 GB/s with urllib3 on the same 2-core machine; see bench/README.md.

huggingface_hub reads its settings from the environment once, at import, into module constants.
Setting `HF_HUB_DISABLE_TELEMETRY` in `os.environ` afterwards does nothing, and with telemetry on,
every request's user-agent triggers an "agent detection" fetch of
`https://huggingface.co/api/agent-harnesses` (the public Hub, even with `endpoint=` set). So
`configure_hub_library` sets the constant itself, and installs an HTTP client with finite
timeouts (the library's default client has none, so a stalled listing would hang forever).
A missing token is `token=False`, never `None`: `None` would send a token cached on the machine.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import urllib3

from activities.storage.base import Buffer, ModelListing, RemoteFile, read_into_reused_buffer
from activities.storage.registry import BackendSettings
from modelferry.errors import (
    AccessDeniedError,
    BackendNotAvailableError,
    GatedRepoError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from modelferry.storage_uri import HuggingFaceUri

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
READ_CHUNK = 1024 * 1024  # bytes per read from the socket: few Python-level calls per GiB
MAX_REDIRECTS = 5
REDIRECT_TTL = 600.0  # seconds a CDN URL is reused (the Hub's signed URLs live far longer)
USER_AGENT = "modelferry/0.1 (hf backend)"

_configure_lock = threading.Lock()
_configured = False


def configure_hub_library(*, connect_timeout: float, read_timeout: float) -> None:
    """Telemetry off and finite timeouts for huggingface_hub (process-wide, once)."""
    global _configured
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True  # read at call time; the env var only at import
    with _configure_lock:
        if _configured:
            return
        _configured = True
        try:  # huggingface_hub >= 1.0 (httpx2); older releases used requests with a 10 s timeout
            import httpx2
            from huggingface_hub import set_client_factory
            from huggingface_hub.utils._http import hf_request_event_hook
        except ImportError:
            return
        timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)

        def factory() -> httpx2.Client:
            return httpx2.Client(
                event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True, timeout=timeout
            )

        set_client_factory(factory)


def parse_patterns(value: str | None) -> list[str] | None:
    """`"a/*,*.json"` or `'["a/*", "*.json"]'` -> ["a/*", "*.json"]; empty -> None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as error:
            raise BackendNotAvailableError(f"patterns {value!r} are not a valid JSON list: {error}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise BackendNotAvailableError(f"patterns {value!r} must be a JSON list of strings")
        return [i.strip() for i in items if i.strip()] or None
    return [p.strip() for p in text.split(",") if p.strip()] or None


def token_from(secret: Mapping[str, str] | None, parameters: Mapping[str, str]) -> str | None:
    """The token: `secret[parameters.secretKey]` if named, else `secret.token` / `secret.HF_TOKEN`."""
    if not secret:
        return None
    key = parameters.get("secretKey")
    if key:
        if not secret.get(key):
            raise AccessDeniedError(f"the storage secret has no non-empty key {key!r} (parameters.secretKey)")
        return secret[key].strip()
    value = secret.get("token") or secret.get("HF_TOKEN")
    return value.strip() if value else None


class HuggingFaceBackend:
    scheme = "hf"

    def __init__(
        self,
        uri: HuggingFaceUri,
        *,
        parameters: Mapping[str, str] | None = None,
        secret: Mapping[str, str] | None = None,
        settings: BackendSettings | None = None,
    ) -> None:
        params = dict(parameters or {})
        self.settings = settings or BackendSettings()
        self.repo_id = uri.repo_id
        self.revision = uri.revision
        self.endpoint = (params.get("endpoint") or self.settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.allow_patterns = parse_patterns(params.get("allowPatterns"))
        self.ignore_patterns = parse_patterns(params.get("ignorePatterns"))
        self._token = token_from(secret, params)
        self._commit: str | None = None
        self._redirects: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        configure_hub_library(
            connect_timeout=self.settings.connect_timeout, read_timeout=self.settings.read_timeout
        )
        pool_size = self.settings.concurrency * self.settings.multipart_concurrency + 2
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=self.settings.connect_timeout, read=self.settings.read_timeout),
            retries=False,  # the engine retries, with backoff and Retry-After
        )

    # --- the StorageBackend protocol ---------------------------------------------------------

    def describe(self) -> str:
        text = f"hf://{self.repo_id}@{self._commit or self.revision}"
        if self.endpoint != DEFAULT_ENDPOINT:
            parts = urlsplit(self.endpoint)
            text += f" via {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return text

    def list_files(self) -> ModelListing:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import filter_repo_objects

        api = HfApi(endpoint=self.endpoint, token=self._token or False, library_name="modelferry")
        try:
            info = api.model_info(self.repo_id, revision=self.revision, timeout=self.settings.read_timeout)
            if not info.sha:
                raise SourceUnavailableError(f"{self.describe()}: the Hub did not say which commit it is")
            tree = [
                e
                for e in api.list_repo_tree(self.repo_id, recursive=True, revision=info.sha)
                if isinstance(e, RepoFile)
            ]
        except SourceError:
            raise
        except Exception as error:
            raise self._api_error(error) from error
        self._commit = info.sha
        selected = filter_repo_objects(
            tree,
            allow_patterns=self.allow_patterns,
            ignore_patterns=self.ignore_patterns,
            key=lambda e: e.path,
        )
        files = tuple(
            RemoteFile(
                name=e.path,
                size=e.size,
                sha256=e.lfs.sha256 if e.lfs else None,
                git_sha1=None if e.lfs else e.blob_id,  # an LFS blob id hashes the pointer, not the bytes
            )
            for e in sorted(selected, key=lambda e: e.path)
        )
        if not files:
            raise SourceNotFoundError(f"{self.describe()}: no files match allowPatterns/ignorePatterns")
        return ModelListing(revision=info.sha, files=files)

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[Buffer]:
        if end <= start:
            return
        response = self._open(file, start, end)
        remaining = end - start
        # The http.client response under urllib3's: read straight into a reused buffer, no object
        # per chunk (see read_into_reused_buffer). urllib3 reads through this same object itself.
        body = getattr(response, "_fp", None)
        raw = body if response.status == 206 and isinstance(body, http.client.HTTPResponse) else None
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        try:
            if raw is not None and not encoded:
                for view in read_into_reused_buffer(raw.readinto, remaining):
                    remaining -= len(view)
                    yield view
            else:
                for chunk in self._read_chunks(response, start, remaining, decode=encoded):
                    remaining -= len(chunk)
                    yield chunk
            if remaining:
                raise SourceUnavailableError(
                    f"{file.name}: the connection ended {remaining} bytes before byte {end} (truncated body)"
                )
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            raise SourceUnavailableError(
                f"{file.name}: reading bytes {start}-{end}: {_brief(error)}"
            ) from None
        finally:
            if raw is not None and raw.isclosed():
                response.release_conn()  # the body was read to its end: the connection is clean
            else:
                response.close()  # unread bytes are left on it: never hand it back to the pool

    @staticmethod
    def _read_chunks(
        response: urllib3.BaseHTTPResponse, start: int, remaining: int, *, decode: bool
    ) -> Iterator[bytes]:
        """The fallback: an origin that ignored Range (200, skip to `start`) or encoded the body."""
        skip = start if response.status == 200 else 0
        # read1: whatever has arrived (≤ READ_CHUNK), so a slow link still shows progress often.
        while remaining and (chunk := response.read1(READ_CHUNK, decode_content=decode)):
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk, skip = chunk[skip:], 0
            chunk = chunk[:remaining]
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._http.clear()

    # --- HTTP ----------------------------------------------------------------------------------

    def _open(self, file: RemoteFile, start: int, end: int) -> urllib3.BaseHTTPResponse:
        commit = self._commit or self.revision
        hub_url = f"{self.endpoint}/{self.repo_id}/resolve/{quote(commit, safe='')}/{quote(file.name)}"
        cached = self._cached_redirect(file.name)
        url = cached or hub_url
        headers = {
            "Range": f"bytes={start}-{end - 1}",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
        }
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if self._token and _origin(url) == _origin(self.endpoint):
                sent["Authorization"] = f"Bearer {self._token}"
            try:
                response = self._http.request(
                    "GET", url, headers=sent, preload_content=False, redirect=False, retries=False
                )
            except urllib3.exceptions.HTTPError as error:
                raise SourceUnavailableError(f"{file.name}: {_brief(error)}") from None
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.drain_conn()
                response.release_conn()
                continue
            if response.status in (200, 206):
                if url != hub_url and _origin(url) != _origin(self.endpoint):
                    self._remember_redirect(file.name, url)
                if response.status == 206:
                    _check_content_range(file, response, start)
                return response
            failure = self._http_error(file, response, from_hub=_origin(url) == _origin(self.endpoint))
            response.close()
            if cached and url == cached:
                self._forget_redirect(file.name)  # an expired CDN URL: ask the Hub again
                cached, url = None, hub_url
                continue
            raise failure
        raise SourceUnavailableError(
            f"{file.name}: more than {MAX_REDIRECTS} redirects from {self.describe()}"
        )

    def _cached_redirect(self, name: str) -> str | None:
        with self._lock:
            entry = self._redirects.get(name)
        return entry[0] if entry and entry[1] > time.monotonic() else None

    def _remember_redirect(self, name: str, url: str) -> None:
        with self._lock:
            self._redirects[name] = (url, time.monotonic() + REDIRECT_TTL)

    def _forget_redirect(self, name: str) -> None:
        with self._lock:
            self._redirects.pop(name, None)

    def _http_error(
        self, file: RemoteFile, response: urllib3.BaseHTTPResponse, *, from_hub: bool
    ) -> SourceError:
        status = response.status
        code = response.headers.get("X-Error-Code") if from_hub else None
        where = f"{self.describe()}: {file.name}: HTTP {status}" + (f" {code}" if code else "")
        return _map_status(status, code, where, retry_after=_retry_after(response.headers), from_hub=from_hub)

    def _api_error(self, error: BaseException) -> SourceError:
        from huggingface_hub import errors as hf

        where = self.describe()
        if isinstance(error, hf.GatedRepoError):
            return _map_status(403, "GatedRepo", where, retry_after=None, from_hub=True)
        if isinstance(error, hf.RevisionNotFoundError):
            return SourceNotFoundError(f"{where}: revision {self.revision!r} not found")
        if isinstance(error, hf.RepositoryNotFoundError):
            hint = "" if self._token else " (a private repository needs a token: set storageKey)"
            return SourceNotFoundError(f"{where}: repository not found{hint}")
        if isinstance(error, hf.RemoteEntryNotFoundError | hf.DisabledRepoError):
            return SourceNotFoundError(f"{where}: {type(error).__name__}")
        if isinstance(error, hf.HfHubHTTPError) and error.response is not None:
            response = error.response
            code = response.headers.get("X-Error-Code")
            retry_after = _retry_after(response.headers)
            return _map_status(
                response.status_code,
                code,
                f"{where}: HTTP {response.status_code}",
                retry_after=retry_after,
                from_hub=True,
            )
        return SourceUnavailableError(f"{where}: {_brief(error)}")


def _map_status(
    status: int, code: str | None, where: str, *, retry_after: float | None, from_hub: bool
) -> SourceError:
    if code == "GatedRepo":
        return GatedRepoError(f"{where}: gated repository: request access on the Hub or set storageKey")
    if code in ("RepoNotFound", "RevisionNotFound", "EntryNotFound"):
        return SourceNotFoundError(f"{where}: not found")
    if status in (401, 403) and from_hub:
        return GatedRepoError(
            f"{where}: access denied: request access on the Hub or set storageKey to a token"
        )
    if status == 404:
        return SourceNotFoundError(f"{where}: not found")
    if status in (403, 408, 410, 416, 429) or status >= 500:
        # 403 from a CDN: an expired signed URL; 416: the file changed since it was listed.
        return SourceUnavailableError(f"{where}: try again later", retry_after=retry_after)
    return BackendNotAvailableError(f"{where}: the request cannot succeed as made")


def _check_content_range(file: RemoteFile, response: urllib3.BaseHTTPResponse, start: int) -> None:
    value = response.headers.get("Content-Range", "")
    try:
        first = int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        first = -1
    if first != start:
        response.close()
        raise SourceUnavailableError(
            f"{file.name}: asked for bytes from {start}, got Content-Range {value!r}"
        )


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _brief(error: BaseException) -> str:
    """A one-line reason without URLs' query strings (signed CDN URLs carry credentials)."""
    text = f"{type(error).__name__}: {error}"
    return text.split("?")[0][:300]
