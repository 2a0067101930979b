"""The watcher's only door to the Kubernetes API.

Everything else in `watcher/` works on plain JSON dicts (exactly what the API server sent, camelCase)
and on our typed errors. Loading the client, the timeouts and the mapping of an `ApiException` or a
dropped connection to `KubeNotFoundError`, `KubeConflictError`, `KubeForbiddenError`,
`KubeGoneError` or `KubeUnavailableError` are shared with the activities' client and live in
`modelferry.kubeclient`; this module adds what only the watcher does.

Responses are read raw (`_preload_content=False`) and parsed with `json`, for three reasons: the
client would turn Nodes and Leases into generated classes we would only convert back; a watch must
be read line by line as the server flushes it; and keeping the raw response lets another thread
interrupt a blocked watch at once (`WatchStream.close`), so shutdown never waits for a read timeout.
Nodes are listed and watched as metadata only (PartialObjectMetadata): placement needs their names
and labels, not their status, which the kubelet rewrites every few seconds.

Every method here blocks; async callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from modelferry.errors import KubeUnavailableError, kube_error_for_status
from modelferry.kubeclient import (
    JSON,
    METADATA_ACCEPT,
    METADATA_LIST_ACCEPT,
    TIMEOUTS,
    Timeouts,
    get_json,
    kube_errors,
    read_json,
    request,
)
from modelferry.names import API_GROUP, API_VERSION, ModelKind

log = logging.getLogger(__name__)

BOOKMARK = "BOOKMARK"
ERROR = "ERROR"


@dataclass(frozen=True)
class ResourceType:
    """What a list/watch addresses: a model CRD (all namespaces) or core Nodes.

    `metadata_only`: list and watch PartialObjectMetadata (apiVersion, kind and metadata only).
    """

    kind: str
    plural: str
    group: str = ""  # "" is the core group
    version: str = "v1"
    namespaced: bool = False
    metadata_only: bool = False

    @property
    def is_core(self) -> bool:
        return self.group == ""

    @property
    def path(self) -> str:
        """The cluster-wide collection's URL path."""
        if self.is_core:
            return f"/api/{self.version}/{self.plural}"
        return f"/apis/{self.group}/{self.version}/{self.plural}"


NODES = ResourceType(kind="Node", plural="nodes", metadata_only=True)  # placement reads labels only


def model_resource(kind: ModelKind) -> ResourceType:
    return ResourceType(
        kind=kind.value, plural=kind.plural, group=API_GROUP, version=API_VERSION, namespaced=kind.namespaced
    )


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    resource_version: str


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
            with kube_errors(self._what):
                for chunk in self._response.stream(amt=None, decode_content=False):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield self._event(line)
                if buffer.strip() and not self._closed.is_set():
                    yield self._event(buffer)
        except (KubeUnavailableError, ValueError) as error:
            if self._closed.is_set():
                return  # close() cut the connection on purpose
            if isinstance(error, ValueError):  # a read on a response that was torn down under it
                raise KubeUnavailableError(f"{self._what}: {error}") from None
            raise
        finally:
            self.close()

    def _event(self, line: bytes) -> tuple[str, dict[str, Any]]:
        try:
            event = json.loads(line)
        except ValueError:
            raise KubeUnavailableError(f"{self._what}: a watch event is not JSON") from None
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == ERROR:
            code = int(obj.get("code") or 0)
            raise kube_error_for_status(
                code, f"{self._what}: watch error {code} {obj.get('message', '')}".rstrip()
            )
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
    """Blocking, dict-in dict-out calls the watcher needs, over one `kubernetes.client.ApiClient`
    (from `modelferry.kubeclient.load_api_client`); `timeouts` bounds every call."""

    def __init__(self, api_client: Any, *, timeouts: Timeouts = TIMEOUTS) -> None:
        self._api_client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._coordination = k8s.CoordinationV1Api(api_client)
        self._timeouts = timeouts

    # --- list and watch ---------------------------------------------------------------------

    def list_objects(self, resource: ResourceType) -> Listing:
        body = get_json(
            self._api_client,
            resource.path,
            what=f"list {resource.plural}",
            accept=METADATA_LIST_ACCEPT if resource.metadata_only else JSON,
            timeout=self._timeouts.request(),
        )
        items = body.get("items") or []
        for item in items:  # a list's items carry no kind; put it back so objects look alike
            item.setdefault("kind", resource.kind)
        return Listing(items=items, resource_version=str(body.get("metadata", {}).get("resourceVersion", "")))

    def watch_objects(
        self, resource: ResourceType, *, resource_version: str, timeout_seconds: int
    ) -> WatchStream:
        """Open a watch from `resource_version`; the server ends it after `timeout_seconds`."""
        what = f"watch {resource.plural}"
        response = request(
            self._api_client,
            "GET",
            resource.path,
            what=what,
            query=[
                ("watch", True),
                ("resourceVersion", resource_version),
                ("allowWatchBookmarks", True),
                ("timeoutSeconds", timeout_seconds),
            ],
            accept=METADATA_ACCEPT if resource.metadata_only else JSON,
            timeout=self._timeouts.watch(timeout_seconds),
        )
        return WatchStream(response, what=what)

    # --- leases -----------------------------------------------------------------------------

    def read_lease(self, *, namespace: str, name: str) -> dict[str, Any]:
        return self._call(
            f"read lease {namespace}/{name}", self._coordination.read_namespaced_lease, name, namespace
        )

    def create_lease(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            f"create lease {namespace}/{body.get('metadata', {}).get('name')}",
            self._coordination.create_namespaced_lease,
            namespace,
            body,
        )

    def replace_lease(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace; `body.metadata.resourceVersion` makes it conditional (409 when stale)."""
        return self._call(
            f"replace lease {namespace}/{name}",
            self._coordination.replace_namespaced_lease,
            name,
            namespace,
            body,
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """A generated-API call, its answer read raw as JSON."""
        with kube_errors(what):
            response = fn(*args, _preload_content=False, _request_timeout=self._timeouts.request())
        return read_json(response, what=what)
