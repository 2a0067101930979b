"""The process kubelets' one way to the API server: a few REST verbs over plain dicts, a watch
that can be stopped at once, and one error type carrying the HTTP status.

Not the `kubernetes` client: a kubelet needs raw JSON (status patches with a uid precondition,
deletes with `gracePeriodSeconds=0`, watch events as they come) and must be able to cut a watch
short when the harness stops, which the generated client cannot.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read; everything is on 127.0.0.1
WATCH_SERVER_SECONDS = 60  # the server ends a watch after this; the kubelet then watches again

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(RuntimeError):
    """A non-2xx answer: `status` is the HTTP code, `reason` the Status reason (NotFound, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


class KubeApi:
    """Authenticates with a client certificate; thread-safe enough for one kubelet's threads
    (requests' connection pool is; each watch gets its own response)."""

    def __init__(self, *, url: str, ca: Path, cert: Path, key: Path) -> None:
        self.url = url
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment: the server is local
        self._session.verify = str(ca)
        self._session.cert = (str(cert), str(key))
        self._watches: set[requests.Response] = set()
        self._lock = threading.Lock()
        self._closed = False

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, body=body)

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", path, body=body)

    def patch(self, path: str, body: dict[str, Any], *, content_type: str = STRATEGIC) -> dict[str, Any]:
        return self._call("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("DELETE", path, body=body)

    def watch(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Watch events (`{"type", "object"}`) until the server ends the watch or `close()`; an
        ERROR event (410 Gone for a too-old resourceVersion) is raised as ApiError."""
        params = {**params, "watch": "true", "timeoutSeconds": WATCH_SERVER_SECONDS}
        response = self._session.get(
            self.url + path,
            params=params,
            stream=True,
            timeout=(REQUEST_TIMEOUT[0], WATCH_SERVER_SECONDS + REQUEST_TIMEOUT[1]),
        )
        with self._lock:
            if self._closed:
                response.close()
                return
            self._watches.add(response)
        try:
            _raise_for(response)
            for line in response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(
                        status.get("code", 500), status.get("reason", ""), status.get("message", "")
                    )
                yield event
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            if not self._closed:
                raise
        finally:
            with self._lock:
                self._watches.discard(response)
            response.close()

    def close(self) -> None:
        """Ends every open watch now (their iterators stop) and refuses new ones."""
        with self._lock:
            self._closed = True
            watches = list(self._watches)
        for response in watches:
            with contextlib.suppress(Exception):
                response.raw.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
        self._session.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        response = self._session.request(
            method,
            self.url + path,
            params=params,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=REQUEST_TIMEOUT,
        )
        _raise_for(response)
        return dict(response.json()) if response.content else {}


def _raise_for(response: requests.Response) -> None:
    if response.ok:
        return
    try:
        status = response.json()
    except ValueError:
        status = {"message": response.text[:500]}
    raise ApiError(response.status_code, status.get("reason", ""), status.get("message", ""))
