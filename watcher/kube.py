"""The watcher's only door to the Kubernetes API.

Everything else in `watcher/` works on plain JSON dicts (exactly what the API server sent, camelCase)
and on our typed errors: this module is the one place that imports the `kubernetes` client and
turns an `ApiException` or a dropped connection into `KubeNotFoundError`, `KubeConflictError`,
`KubeForbiddenError`, `KubeGoneError` or `KubeUnavailableError`.

Responses are read raw (`_preload_content=False`) and parsed with `json`, for three reasons: the
client would turn Nodes and Leases into generated classes we would only convert back; a watch must
be read line by line as the server flushes it; and keeping the raw response lets another thread
interrupt a blocked watch at once (`WatchStream.close`), so shutdown never waits for a read timeout.

Every method here blocks; async callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelferry.errors import (
    KubeError,
    KubeGoneError,
    KubeUnavailableError,
    kube_error_for_status,
)
from modelferry.names import API_GROUP, API_VERSION, ModelKind

log = logging.getLogger(__name__)

BOOKMARK = "BOOKMARK"
ERROR = "ERROR"


@dataclass(frozen=True)
class ResourceType:
    """What a list/watch addresses: a model CRD (all namespaces) or core Nodes."""

    kind: str
    plural: str
    group: str = ""  # "" is the core group
    version: str = "v1"
    namespaced: bool = False

    @property
    def is_core(self) -> bool:
        return self.group == ""


NODES = ResourceType(kind="Node", plural="nodes")


def model_resource(kind: ModelKind) -> ResourceType:
    return ResourceType(
        kind=kind.value, plural=kind.plural, group=API_GROUP, version=API_VERSION, namespaced=kind.namespaced
    )


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    resource_version: str


def map_api_error(error: BaseException, *, what: str) -> KubeError:
    """Turn a client exception into our typed error; `what` names the request for the message."""
    if isinstance(error, KubeError):
        return error
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        detail = _status_message(error.body) or str(error.reason or "")
        return kube_error_for_status(status, f"{what}: HTTP {status} {detail}".rstrip())
    return KubeUnavailableError(f"{what}: {type(error).__name__}: {error}")


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200]
    return str(parsed.get("message", "")) if isinstance(parsed, dict) else ""


class WatchStream:
    """One open watch: iterate `(type, object)` pairs; `close()` may be called from any thread.

    A server-side ERROR event raises the typed error (410 → `KubeGoneError`) instead of being
    yielded, so a caller only ever sees ADDED, MODIFIED, DELETED and BOOKMARK.
    """

    def __init__(self, response: Any, *, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        buffer = b""
        try:
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield self._event(line)
            if buffer.strip() and not self._closed.is_set():
                yield self._event(buffer)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            if self._closed.is_set():
                return
            raise map_api_error(error, what=self._what) from error
        finally:
            self.close()

    def _event(self, line: bytes) -> tuple[str, dict[str, Any]]:
        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == ERROR:
            code = int(obj.get("code") or 0)
            message = f"{self._what}: watch error {code} {obj.get('message', '')}".rstrip()
            if code == 410:
                raise KubeGoneError(message, status=410)
            raise KubeUnavailableError(message, status=code or None)
        return str(kind), obj

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        # shutdown() wakes a read blocked in another thread; close() drops the connection (it may
        # be mid-stream, so it must not go back to the pool for reuse); release_conn() frees the
        # pool slot.
        for step in (self._response.shutdown, self._response.close, self._response.release_conn):
            with contextlib.suppress(Exception):
                step()


class KubeClient:
    """Blocking, dict-in dict-out calls the watcher needs, over one `kubernetes.client.ApiClient`."""

    def __init__(self, api_client: Any, *, request_timeout: float = 30.0) -> None:
        self._api_client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._coordination = k8s.CoordinationV1Api(api_client)
        self._timeout = request_timeout

    # --- list and watch ---------------------------------------------------------------------

    def list_objects(self, resource: ResourceType) -> Listing:
        what = f"list {resource.plural}"
        body = self._call(what, self._list_call(resource), _request_timeout=self._timeout)
        items = body.get("items") or []
        for item in items:  # a list's items carry no kind; put it back so objects look alike
            item.setdefault("kind", resource.kind)
        return Listing(items=items, resource_version=str(body.get("metadata", {}).get("resourceVersion", "")))

    def watch_objects(
        self, resource: ResourceType, *, resource_version: str, timeout_seconds: int
    ) -> WatchStream:
        """Open a watch from `resource_version`; the server ends it after `timeout_seconds`."""
        what = f"watch {resource.plural}"
        try:
            response = self._list_call(resource)(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                # Read timeout past the server's own, so a silently dead connection is noticed.
                _request_timeout=(self._timeout, timeout_seconds + self._timeout),
            )
        except Exception as error:
            raise map_api_error(error, what=what) from error
        return WatchStream(response, what=what)

    def _list_call(self, resource: ResourceType) -> Any:
        if resource.is_core:
            if resource.plural != "nodes":
                raise ValueError(f"unsupported core resource {resource.plural}")
            return self._core.list_node

        def call(**kwargs: Any) -> Any:
            return self._custom.list_cluster_custom_object(
                resource.group, resource.version, resource.plural, **kwargs
            )

        return call

    # --- model status -----------------------------------------------------------------------

    def patch_model_status(
        self, *, kind: ModelKind, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one model resource."""
        what = f"patch {kind.plural}/{name} status"
        if kind.namespaced:
            call = lambda **kw: self._custom.patch_namespaced_custom_object_status(  # noqa: E731
                API_GROUP, API_VERSION, namespace, kind.plural, name, body, **kw
            )
        else:
            call = lambda **kw: self._custom.patch_cluster_custom_object_status(  # noqa: E731
                API_GROUP, API_VERSION, kind.plural, name, body, **kw
            )
        return self._call(what, call, _request_timeout=self._timeout)

    # --- leases -----------------------------------------------------------------------------

    def read_lease(self, *, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            f"read lease {namespace}/{name}",
            self._coordination.read_namespaced_lease,
            name,
            namespace,
            _request_timeout=self._timeout,
        )

    def create_lease(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            f"create lease {namespace}/{body.get('metadata', {}).get('name')}",
            self._coordination.create_namespaced_lease,
            namespace,
            body,
            _request_timeout=self._timeout,
        )

    def replace_lease(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace; `body.metadata.resourceVersion` makes it conditional (409 when stale)."""
        return self._call(
            f"replace lease {namespace}/{name}",
            self._coordination.replace_namespaced_lease,
            name,
            namespace,
            body,
            _request_timeout=self._timeout,
        )

    # --- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            response = fn(*args, _preload_content=False, **kwargs)
            data = response.data
            response.release_conn()
        except Exception as error:
            raise map_api_error(error, what=what) from error
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as error:
            raise KubeUnavailableError(f"{what}: response is not JSON") from error
        return parsed if isinstance(parsed, dict) else {}


def load_api_client(*, kubeconfig: str | None = None) -> Any:
    """An ApiClient from `kubeconfig`, else the in-cluster service account, else ~/.kube/config."""
    from kubernetes import config

    if kubeconfig:
        return config.new_client_from_config(config_file=str(kubeconfig))
    try:
        config.load_incluster_config()
        return k8s.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()
