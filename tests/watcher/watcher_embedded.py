"""The embedded API server as a behaviour-test backend (the twin of `FakeBackend`), and a source
wrapper that can cut the informer's watches to force a resume or a 410."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.kube import KubeClient as ActivitiesKubeClient
from modelferry.apiserver.testing import api_client, running_apiserver
from modelferry.names import API_GROUP, API_VERSION, ModelKind
from watcher.kube import KubeClient, Listing, ResourceType, WatchStream

NAMESPACES = ("team-a",)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, **server_options: Any) -> None:
        self._running = running_apiserver(nodes=(), **server_options)
        self.server = self._running.__enter__()
        self.api_client = api_client(self.server)
        self.kube = KubeClient(self.api_client)
        self.source: Any = self.kube
        self.status_writer: Any = ActivitiesKubeClient(self.api_client)  # the workflow's writer
        self._custom = k8s.CustomObjectsApi(self.api_client)
        self._core = k8s.CoreV1Api(self.api_client)
        for ns in NAMESPACES:
            self._core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def _args(self, kind: ModelKind, namespace: str | None) -> list[Any]:
        return (
            [API_GROUP, API_VERSION, namespace, kind.plural]
            if kind.namespaced
            else [API_GROUP, API_VERSION, kind.plural]
        )

    def _call(
        self, verb: str, kind: ModelKind, namespace: str | None, *args: Any, status: bool = False
    ) -> Any:
        scope = "namespaced" if kind.namespaced else "cluster"
        name = f"{verb}_{scope}_custom_object{'_status' if status else ''}"
        return getattr(self._custom, name)(*self._args(kind, namespace), *args)

    def get(self, kind: ModelKind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self._call("get", kind, namespace, name)  # type: ignore[no-any-return]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = ModelKind(obj["kind"])
        body = {
            **obj,
            "metadata": {k: v for k, v in obj["metadata"].items() if k not in ("generation", "uid")},
        }
        body.pop("status", None)
        return self._call("create", kind, obj["metadata"].get("namespace"), body)  # type: ignore[no-any-return]

    def update_spec(self, kind: ModelKind, name: str, namespace: str | None, spec: dict[str, Any]) -> None:
        obj = self.get(kind, name, namespace)
        obj["spec"] = spec
        self._call("replace", kind, namespace, name, obj)

    def write_status(self, kind: ModelKind, name: str, namespace: str | None, status: dict[str, Any]) -> None:
        self._call("patch", kind, namespace, name, {"status": status}, status=True)

    def delete(self, kind: ModelKind, name: str, namespace: str | None = None) -> None:
        self._call("delete", kind, namespace, name)

    def remove_finalizers(self, kind: ModelKind, name: str, namespace: str | None = None) -> None:
        self._call("patch", kind, namespace, name, {"metadata": {"finalizers": None}})

    def set_node(self, name: str, labels: dict[str, str]) -> None:
        try:
            node = self._core.read_node(name)
        except ApiException as e:
            if e.status != 404:
                raise
            self.server.add_node(name, labels)
            return
        node.metadata.labels = labels
        self._core.replace_node(name, node)

    def remove_node(self, name: str) -> None:
        self._core.delete_node(name)

    def close(self) -> None:
        self._running.__exit__(None, None, None)


class GatedSource:
    """The real `KubeClient`, with a gate in front of new watches and a way to break open ones."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._open = threading.Event()
        self._open.set()
        self._streams: list[WatchStream] = []
        self._lock = threading.Lock()

    def list_objects(self, resource: ResourceType) -> Listing:
        return self._kube.list_objects(resource)

    def watch_objects(
        self, resource: ResourceType, *, resource_version: str, timeout_seconds: int
    ) -> WatchStream:
        self._open.wait()
        stream = self._kube.watch_objects(
            resource, resource_version=resource_version, timeout_seconds=timeout_seconds
        )
        with self._lock:
            self._streams.append(stream)
        return stream

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._streams)

    def cut(self, *, hold: bool) -> None:
        """Break every open watch; with `hold`, new watches wait until `release()`."""
        if hold:
            self._open.clear()
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()

    def release(self) -> None:
        self._open.set()
