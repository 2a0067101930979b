"""Process kubelets: simulated nodes that make the real control plane usable end to end.

A `ProcessKubelet` is one node. It talks to the API server as that node (user
`system:node:<name>` in group `system:nodes`, its own client certificate), so the Node authorizer
and NodeRestriction admission judge it as they would a real kubelet. It registers its Node (the
labels and capacity it is given, Ready, address 127.0.0.1), keeps its Lease in kube-node-lease
renewed, watches the pods bound to it (`spec.nodeName=<name>`) and runs each one as local
processes (podrunner.py). The node's filesystem is a directory (`root`): hostPath volumes, pod
sandboxes (`var/lib/kubelet/pods/<uid>`) and container logs (`var/log/pods/...`) live under it.

`running_nodes(control_plane, nodes={name: labels}, root=tmp)` starts several, waits until the
scheduler may use them (Ready, and the not-ready taint that admission puts on a new Node taken
off by the node lifecycle controller), and stops them all on exit.

Not simulated: images (a container's command runs on this machine; see podspec.py for what runs
when there is none), init and ephemeral containers, probes, resource limits, `kubectl logs` and
`exec` (no kubelet server: read `ProcessKubelet.log_path`), token refresh (tokens are asked for
an hour, longer than any test).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import platform
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from .cluster import PROJECT, ControlPlane, write_kubeconfig
from .kubeapi import MERGE, ApiError, KubeApi
from .podrunner import NodeContext, PodRunner
from .podspec import LOOPBACK, now

log = logging.getLogger(__name__)

NODES_GROUP = "system:nodes"
LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
LEASE_SECONDS = 40  # the kubelet's default lease duration
RENEW_SECONDS = 10.0  # the kubelet renews at a quarter of the duration
STATUS_SECONDS = 60.0  # the kubelet reports an unchanged status every 5 min; the lease is the heartbeat
READY_TIMEOUT = 60.0  # the node lifecycle controller looks at new nodes every 5 s
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class ProcessKubelet:
    def __init__(
        self,
        plane: ControlPlane,
        *,
        name: str,
        root: Path,
        labels: Mapping[str, str] | None = None,
        capacity: Mapping[str, str] | None = None,
        claims: Mapping[str, Path] | None = None,
        restart_backoff: float = 1.0,
    ) -> None:
        self.name = name
        self.root = root
        self.user = f"system:node:{name}"
        self.labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
            **(labels or {}),
        }
        self.capacity = dict(capacity or DEFAULT_CAPACITY)
        self._plane = plane
        self._claims = dict(claims or {})
        self._restart_backoff = restart_backoff
        self._stop = threading.Event()
        self._runners: dict[str, PodRunner] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._since = now()
        self.kubeconfig: Path | None = None
        self.registration_seconds: float | None = None  # until the Node was created
        self.ready_seconds: float | None = None  # until the scheduler may place pods on it

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Registers the Node and its Lease and starts watching pods; `wait_ready` waits for
        the control plane to accept the node."""
        began = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        client = self._plane.ca.issue_client(self.user, groups=[NODES_GROUP])
        self.kubeconfig = write_kubeconfig(
            self._plane.directory / f"kubeconfig-node-{self.name}",
            url=self._plane.url,
            ca=self._plane.ca.files.cert,
            client=client,
        )
        self.api = KubeApi(
            url=self._plane.url, ca=self._plane.ca.files.cert, cert=client.cert, key=client.key
        )
        node_uid = self._register()
        self._renew_lease(node_uid)
        self.registration_seconds = round(time.monotonic() - began, 2)
        self._began = began
        self._context = NodeContext(
            name=self.name,
            root=self.root,
            api=self.api,
            ca=self._plane.ca.files.cert,
            base_env=_base_env(self._plane.url),
            claims=self._claims,
            restart_backoff=self._restart_backoff,
        )
        for target, label in ((self._watch_pods, "pods"), (lambda: self._heartbeat(node_uid), "heartbeat")):
            thread = threading.Thread(target=target, name=f"kubelet-{self.name}-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Seconds from `start` until the Node is Ready and untainted (not-ready), as seen by
        the node itself."""
        deadline = time.monotonic() + timeout
        while not self._schedulable():
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name} not Ready and untainted within {timeout:.0f}s")
            time.sleep(0.2)
        self.ready_seconds = round(time.monotonic() - self._began, 2)
        return self.ready_seconds

    def stop(self) -> None:
        """Every pod's processes killed (SIGTERM, SIGKILL after a second), then the threads."""
        self._stop.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop(timeout=0)
        for runner in runners:
            runner.stop()
        if hasattr(self, "api"):
            self.api.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> ProcessKubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at -------------------------------------------------------------------

    def runner(self, namespace: str, name: str) -> PodRunner | None:
        """The latest pod of that name this node has run."""
        with self._lock:
            found = [r for r in self._runners.values() if (r.namespace, r.name) == (namespace, name)]
        return found[-1] if found else None

    def log_path(self, namespace: str, pod: str, container: str, restart: int = 0) -> Path | None:
        runner = self.runner(namespace, pod)
        return runner.log_path(container, restart) if runner else None

    # --- the Node and its Lease ---------------------------------------------------------------

    def _register(self) -> str:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "status": self._node_status(),
        }
        try:
            created = self.api.post("/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
            # Registered before (a restarted kubelet): take the Node over, as the kubelet does.
            created = self.api.patch(f"/api/v1/nodes/{self.name}", {"metadata": {"labels": self.labels}})
        self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self._node_status()})
        return str(created["metadata"]["uid"])

    def _node_status(self) -> dict[str, Any]:
        beat = now()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": beat,
                "lastTransitionTime": self._since,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                ),
                condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                condition("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": LOOPBACK},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": self.name,
                "systemUUID": self.name,
                "bootID": self._since,
                "kernelVersion": platform.release(),
                "osImage": "modelferry process kubelet",
                "containerRuntimeVersion": "process://1",
                "kubeletVersion": "v1.35.4",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    def _renew_lease(self, node_uid: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        renew_time = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew_time}
        try:
            self.api.patch(path, {"spec": spec}, content_type=MERGE)
        except ApiError as e:
            if e.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node_uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec,
            }
            self.api.post(path.rsplit("/", 1)[0], lease)

    def _heartbeat(self, node_uid: str) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(RENEW_SECONDS):
            try:
                self._renew_lease(node_uid)
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    self.api.patch(f"/api/v1/nodes/{self.name}/status", {"status": self._node_status()})
                    last_status = time.monotonic()
            except (ApiError, requests.RequestException) as e:
                if not self._stop.is_set():
                    log.warning("node %s: heartbeat failed: %s", self.name, e)

    def _schedulable(self) -> bool:
        node = self.api.get(f"/api/v1/nodes/{self.name}")
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions") or []
        )
        tainted = any(t["key"] == NOT_READY_TAINT for t in node.get("spec", {}).get("taints") or [])
        return ready and not tainted

    # --- pods -----------------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.name}"
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self.api.get("/api/v1/pods", fieldSelector=selector)
                    version = listed["metadata"]["resourceVersion"]
                    present = {p["metadata"]["uid"] for p in listed["items"]}
                    for pod in listed["items"]:
                        self._sync(pod)
                    with self._lock:
                        vanished = [r for uid, r in self._runners.items() if uid not in present]
                    for runner in vanished:
                        runner.deleted()
                for event in self.api.watch(
                    "/api/v1/pods",
                    fieldSelector=selector,
                    resourceVersion=version,
                    allowWatchBookmarks="true",
                ):
                    pod = event["object"]
                    version = pod["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self._forget(pod)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._sync(pod)
            except (ApiError, requests.RequestException) as e:
                if self._stop.is_set():
                    return
                log.warning("node %s: pod watch ended (%s); listing again", self.name, e)
                version = None
                self._stop.wait(0.5)

    def _sync(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            runner = self._runners.get(uid)
        if runner is not None:
            runner.update(pod)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._confirm_deletion(pod)  # nothing of it runs here
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return  # over before this kubelet saw it
        runner = PodRunner(pod, node=self._context)
        with self._lock:
            if self._stop.is_set():
                return
            self._runners[uid] = runner
        runner.start()

    def _forget(self, pod: dict[str, Any]) -> None:
        with self._lock:
            runner = self._runners.get(pod["metadata"]["uid"])
        if runner is not None:
            runner.deleted()

    def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            self.api.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )


def _base_env(api_url: str) -> dict[str, str]:
    """The test run's environment without what would point a pod elsewhere (our settings, a
    kubeconfig, pytest's), modelferry importable, and the API server as a pod sees it."""
    dropped = ("MODELFERRY_", "KUBERNETES_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "KUBECONFIG"}
    env["PYTHONPATH"] = str(PROJECT)
    address = urlparse(api_url)
    host, port = str(address.hostname), str(address.port)
    env |= {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
    }
    return env


@contextlib.contextmanager
def running_nodes(
    control_plane: ControlPlane,
    *,
    nodes: Mapping[str, Mapping[str, str]],
    root: Path,
    capacity: Mapping[str, str] | None = None,
    claims: Mapping[str, Mapping[str, Path]] | None = None,
    timeout: float = READY_TIMEOUT,
) -> Iterator[dict[str, ProcessKubelet]]:
    """One ProcessKubelet per `nodes` entry (name: labels), each with `root/<name>` as its
    filesystem and `claims[name]` as its local claim directories; yielded once all are ready."""
    kubelets = {
        name: ProcessKubelet(
            control_plane,
            name=name,
            root=root / name,
            labels=labels,
            capacity=capacity,
            claims=(claims or {}).get(name),
        )
        for name, labels in nodes.items()
    }
    try:
        for kubelet in kubelets.values():
            kubelet.start()
        for kubelet in kubelets.values():
            kubelet.wait_ready(timeout)
        yield kubelets
    finally:
        for kubelet in kubelets.values():
            kubelet.stop()
