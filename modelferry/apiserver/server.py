"""`EmbeddedApiServer`: the whole server behind a start/stop/context-manager face.

It is the one-machine and test stand-in for a real cluster, never the production path: the
product talks to it exactly as to a real API server, through the official client over HTTP.
It binds to loopback only and serves from a daemon thread.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from . import errors
from .handler import ApiHttpServer
from .persistence import DebouncedSaver, load_state, write_atomic
from .resources import CRD_STORAGE_KEY
from .seed import INITIAL_NAMESPACES, namespace_manifest, node_lease_manifest, node_manifest
from .store import Store

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class EmbeddedApiServer:
    """A single-node Kubernetes API server in this process.

    `nodes` are Node names or whole Node manifests to have at start; `state_path` keeps every
    object across restarts; `watch_window` is how many events per kind a watch can resume from.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_path: Path | None = None,
        watch_window: int = 100,
        nodes: Iterable[str | dict[str, Any]] = (),
        bookmark_interval: float = 30.0,
        save_delay: float = 0.2,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the embedded API server binds to loopback only, not {host!r}")
        self._host = host
        self._requested_port = port
        self.store = Store(watch_window=watch_window)
        self._state_path = Path(state_path) if state_path else None
        self._nodes = list(nodes)
        self._bookmark_interval = bookmark_interval
        self._save_delay = save_delay
        self._httpd: ApiHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._saver: DebouncedSaver | None = None
        self.kubeconfig_path: Path | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmbeddedApiServer:
        if self._httpd is not None:
            raise RuntimeError("the API server is already running")
        if self._state_path is not None:
            state = load_state(self._state_path)
            if state is not None:
                self.store.restore(state)
            self._saver = DebouncedSaver(self._state_path, self.store.snapshot, delay=self._save_delay)
            self.store.add_listener(self._saver.mark_dirty)
            self._saver.start()
        for name in INITIAL_NAMESPACES:
            if not self.store.bucket("/namespaces").get(("", name)):
                self.apply_manifest(namespace_manifest(name))
        for node in self._nodes:
            if isinstance(node, str):
                self.add_node(node)
            else:
                self.apply_manifest(node)
        self._httpd = ApiHttpServer(
            (self._host, self._requested_port), store=self.store, bookmark_interval=self._bookmark_interval
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="modelferry-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every watch and connection, and save the state one last time."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stopping.set()
            self.store.close_watches()
            httpd.shutdown()
            httpd.close_connections()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._saver is not None:
            self._saver.stop()
            self._saver = None

    def __enter__(self) -> EmbeddedApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the API server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def kubeconfig(
        self, *, context_name: str = "modelferry-dev", namespace: str = "default"
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context_name, "cluster": {"server": self.url}}],
            "users": [{"name": context_name, "user": {}}],
            "contexts": [
                {
                    "name": context_name,
                    "context": {"cluster": context_name, "user": context_name, "namespace": namespace},
                }
            ],
            "current-context": context_name,
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: Path | str, *, context_name: str = "modelferry-dev", namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig (no credentials: the server has no auth) for kubectl and the client."""
        target = Path(path)
        doc = self.kubeconfig(context_name=context_name, namespace=namespace)
        write_atomic(target, yaml.safe_dump(doc, sort_keys=False).encode())
        self.kubeconfig_path = target
        return target

    # --- server-side helpers (seeding; clients go through HTTP) ---------------------------------

    def apply_manifest(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or unconditionally replace one object, status included (CRDs and Nodes for
        `modelferry dev`; clients go through HTTP)."""
        store = self.store
        with store.lock:
            rt = store.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if rt is None:
                raise ValueError(
                    f"no served resource for apiVersion={obj.get('apiVersion')} kind={obj.get('kind')}"
                )
            meta = obj.get("metadata") or {}
            namespace = meta.get("namespace") or ("default" if rt.namespaced else "")
            existing = store.bucket(rt.storage_key).get(store.key(rt, namespace, meta.get("name", "")))
            if existing is None:
                stored = store.create(rt, namespace, obj)
            else:
                body = copy.deepcopy(obj)
                body["metadata"] = {**body.get("metadata", {}), "resourceVersion": ""}
                stored = store.replace(rt, existing, body, subresource=None, dry_run=False)
            if rt.status_subresource and "status" in obj and rt.storage_key != CRD_STORAGE_KEY:
                current = store.lookup(rt, namespace, stored["metadata"]["name"])
                status_body = {**stored, "status": copy.deepcopy(obj["status"])}
                stored = store.replace(rt, current, status_body, subresource="status", dry_run=False)
            return stored

    def add_node(
        self, name: str, labels: dict[str, str] | None = None, *, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Add a Ready node; for an existing node, merge `labels` and `annotations` into its own."""
        nodes = self.store.registry.get("", "v1", "nodes")
        assert nodes is not None
        try:
            existing = self.store.get(nodes, None, name)
        except errors.ApiError as e:
            if e.code != 404:
                raise
            manifest = node_manifest(name, labels)
            if annotations:
                manifest["metadata"]["annotations"] = dict(annotations)
            node = self.apply_manifest(manifest)
            self.apply_manifest(node_lease_manifest(name))  # what a kubelet keeps renewing
            return node
        meta = existing["metadata"]
        merged = {
            **existing,
            "metadata": {
                **meta,
                "labels": {**(meta.get("labels") or {}), **(labels or {})},
                "annotations": {**(meta.get("annotations") or {}), **(annotations or {})},
            },
        }
        return self.apply_manifest(merged)

    def node_labels(self) -> dict[str, dict[str, str]]:
        """Every node's name and labels."""
        nodes = self.store.registry.get("", "v1", "nodes")
        assert nodes is not None
        with self.store.lock:
            return {
                obj["metadata"]["name"]: dict(obj["metadata"].get("labels") or {})
                for obj in self.store.bucket(nodes.storage_key).values()
            }

    def remove_node(self, name: str) -> None:
        """Delete a node, as `kubectl delete node` does; a missing node is no error."""
        nodes = self.store.registry.get("", "v1", "nodes")
        assert nodes is not None
        try:
            self.store.delete(nodes, None, name)
        except errors.ApiError as e:
            if e.code != 404:
                raise
