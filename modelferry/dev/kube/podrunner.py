"""One pod on a process kubelet, in a thread of its own: its volumes made local, each container run
as a local process (restarted as `restartPolicy` says), its status reported through the
pods/status subresource, and, once it is deleted, its processes stopped (SIGTERM, then SIGKILL
after the grace period), the terminal status reported and the deletion confirmed with
gracePeriodSeconds=0, which is how the real kubelet lets a pod go.

Each process starts in a session of its own, so `sh -c` and everything it starts are signalled
together, and dies with the thread that started it if the test run is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from modelferry.dev.children import die_with_parent

from .kubeapi import ApiError, KubeApi
from .podspec import (
    EXIT_START_ERROR,
    LOOPBACK,
    NODE_ROOT_ENV,
    Conditions,
    ContainerRun,
    StartError,
    container_argv,
    container_env,
    exit_code_of,
    is_modelferry,
    now,
    phase,
    set_pod_conditions,
    should_restart,
    working_dir,
)
from .volumes import PodVolumes, VolumeError, read_data, set_up_volumes

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a running pod looks at its processes
MOUNT_RETRY_SECONDS = 1.0
MIN_GRACE_SECONDS = 2.0  # the real kubelet's minimum too, for a forced (grace 0) deletion
STOP_GRACE_SECONDS = 1.0  # when the harness stops: nobody waits for a clean exit


@dataclass(frozen=True)
class NodeContext:
    """What every pod on one node shares."""

    name: str
    root: Path  # the node's filesystem: hostPath volumes live under it
    api: KubeApi
    ca: Path  # the cluster CA, for a pod whose projection brings none
    base_env: Mapping[str, str]
    claims: Mapping[str, Path] = field(default_factory=dict)
    restart_backoff: float = 1.0  # first CrashLoopBackOff delay, doubled per restart up to 10 s


class PodRunner:
    def __init__(self, pod: dict[str, Any], *, node: NodeContext) -> None:
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self._pod = pod
        self._node = node
        spec = pod["spec"]
        self._restart_policy = spec.get("restartPolicy", "Always")
        self.runs = [ContainerRun(name=c["name"], image=c.get("image", "")) for c in spec["containers"]]
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._restart_at: dict[str, float] = {}
        self._conditions = Conditions()
        self._sandbox_ready = False
        self._started = False
        self._start_time = now()
        self.sandbox = node.root / "var" / "lib" / "kubelet" / "pods" / self.uid
        self._logs = node.root / "var" / "log" / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self._delete_grace: float | None = None  # set once the pod has a deletionTimestamp
        self._gone = False  # the pod is no longer in the API: nothing to report
        self._halt = False  # the harness is stopping
        self._wake = threading.Event()
        self.seen_at = time.monotonic()
        self.running_at: float | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"pod-{self.namespace}-{self.name}", daemon=True
        )

    # --- from the kubelet's threads ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        self._pod = pod
        if pod["metadata"].get("deletionTimestamp") and self._delete_grace is None:
            self._delete_grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            self._wake.set()

    def deleted(self) -> None:
        """The pod is gone from the API (a forced deletion): stop its processes, report nothing."""
        self._gone = True
        if self._delete_grace is None:
            self._delete_grace = 0.0
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._halt = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def log_path(self, container: str, restart: int = 0) -> Path:
        return self._logs / container / f"{restart}.log"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in list(self._processes.items()) if p.poll() is None}

    # --- the pod's thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            volumes = self._set_up()
            if volumes is not None and not self._leaving():
                self._started = True
                for index in range(len(self.runs)):
                    self._start_container(index, volumes)
                self._report()
                self._supervise(volumes)
            if self._halt:
                self._terminate(STOP_GRACE_SECONDS)
            else:
                self._wait_for_deletion()
                self._let_go()
        except Exception:
            log.exception("pod %s/%s on %s", self.namespace, self.name, self._node.name)
            self._terminate(0)
        finally:
            self.done.set()

    def _leaving(self) -> bool:
        return self._halt or self._delete_grace is not None

    def _set_up(self) -> PodVolumes | None:
        """The volumes, retried while they cannot be set up; None if the pod goes first."""
        self.sandbox.mkdir(parents=True, exist_ok=True)
        self._report()
        while not self._leaving():
            try:
                volumes = set_up_volumes(
                    self._pod,
                    api=self._node.api,
                    node_root=self._node.root,
                    sandbox=self.sandbox,
                    claims=self._node.claims,
                )
            except VolumeError as e:
                for run in self.runs:
                    run.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
                self._report()
                self._wake.wait(MOUNT_RETRY_SECONDS)
                continue
            self._sandbox_ready = True
            return volumes
        return None

    def _supervise(self, volumes: PodVolumes) -> None:
        """Until every container has ended for good, or the pod is deleted or the harness stops."""
        backoff = {run.name: self._node.restart_backoff for run in self.runs}
        while not self._leaving() and phase(self.runs, started=True) == "Running":
            self._wake.wait(POLL_SECONDS)
            changed = False
            for index, run in enumerate(self.runs):
                process = self._processes.get(run.name)
                if process is not None and process.poll() is not None:
                    del self._processes[run.name]
                    code = exit_code_of(process.returncode)
                    run.finish(code)
                    if should_restart(self._restart_policy, code):
                        run.back_off()
                        self._restart_at[run.name] = time.monotonic() + backoff[run.name]
                        backoff[run.name] = min(backoff[run.name] * 2, 10.0)
                    changed = True
                due = self._restart_at.get(run.name)
                if due is not None and time.monotonic() >= due and not self._leaving():
                    del self._restart_at[run.name]
                    self._start_container(index, volumes)
                    changed = True
            if changed:
                self._report()

    def _start_container(self, index: int, volumes: PodVolumes) -> None:
        container = self._pod["spec"]["containers"][index]
        run = self.runs[index]
        try:
            argv, env, cwd = self._process_spec(container, volumes)
            out = self.log_path(run.name, run.starts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "ab") as sink:
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # the pod's thread lives as long as its processes: none outlives a killed run
                    preexec_fn=die_with_parent(signal.SIGKILL),
                )
        except (StartError, OSError) as e:
            run.start(pid=None)
            run.finish(EXIT_START_ERROR, reason="StartError", message=str(e))
            if should_restart(self._restart_policy, EXIT_START_ERROR):
                run.back_off()
                self._restart_at[run.name] = time.monotonic() + self._node.restart_backoff
            return
        self._processes[run.name] = process
        run.start(pid=process.pid)
        if self.running_at is None:
            self.running_at = time.monotonic()

    def _process_spec(
        self, container: Mapping[str, Any], volumes: PodVolumes
    ) -> tuple[list[str], dict[str, str], Path]:
        mounts = volumes.mounts(container)
        base = {**self._node.base_env, "HOSTNAME": self.name, "HOME": str(self.sandbox / "home")}
        (self.sandbox / "home").mkdir(exist_ok=True)
        base |= self._api_access(volumes)
        # A scratch volume at /tmp: where Python's tempfile (and most tools) put temporary files.
        for scratch in (m for m in mounts if m.path.rstrip("/") == "/tmp"):
            base["TMPDIR"] = str(scratch.local)
        if is_modelferry(container):
            base[NODE_ROOT_ENV] = str(self._node.root)
        api, namespace = self._node.api, self.namespace

        def lookup_all(kind: str, name: str) -> dict[str, str] | None:
            data = read_data(api, kind=kind, namespace=namespace, name=name)
            return None if data is None else {k: v.decode() for k, v in data.items()}

        def lookup(kind: str, name: str, key: str) -> str | None:
            return (lookup_all(kind, name) or {}).get(key)

        env = container_env(
            self._pod, container, base=base, lookup=lookup, lookup_all=lookup_all, mounts=mounts
        )
        argv = container_argv(container, env=env, mounts=mounts)
        return argv, env, working_dir(container, mounts=mounts, default=self.sandbox)

    def _api_access(self, volumes: PodVolumes) -> dict[str, str]:
        """A kubeconfig made of the pod's projected token, named by KUBECONFIG (any client) and
        MODELFERRY_KUBECONFIG (our settings): `load_incluster_config` reads a fixed path a
        process cannot be given. Without a token KUBECONFIG names a file that does not exist, so
        no client falls back to the host's ~/.kube/config."""
        kubeconfig = self.sandbox / "kubeconfig"
        if volumes.token is None:
            return {"KUBECONFIG": str(self.sandbox / "no-service-account-token")}
        ca = volumes.token_ca if volumes.token_ca and volumes.token_ca.exists() else self._node.ca
        user = {"token": volumes.token.read_text()}
        cluster = {"server": self._node.api.url, "certificate-authority": str(ca)}
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "cluster", "cluster": cluster}],
                    "users": [{"name": "pod", "user": user}],
                    "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": "pod"}}],
                    "current-context": "pod",
                }
            )
        )
        return {"KUBECONFIG": str(kubeconfig), "MODELFERRY_KUBECONFIG": str(kubeconfig)}

    def _wait_for_deletion(self) -> None:
        while self._delete_grace is None and not self._halt:
            self._wake.wait()
            self._wake.clear()

    def _let_go(self) -> None:
        """Deleted: stop the processes within the grace period, report the terminal phase and
        confirm the deletion (unless the harness is stopping or the pod is already gone)."""
        if self._halt:
            self._terminate(STOP_GRACE_SECONDS)
            return
        self._terminate(max(self._delete_grace or 0.0, MIN_GRACE_SECONDS))
        if self._gone:
            return
        self._report(final=True)
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        with contextlib.suppress(ApiError):
            self._node.api.delete(path, {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})

    def _terminate(self, grace: float) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after `grace` seconds."""
        self._restart_at.clear()
        running = {name: p for name, p in self._processes.items() if p.poll() is None}
        for process in running.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            _signal_group(process, signal.SIGKILL)  # what the leader left behind in its group
        for run in self.runs:
            ended = self._processes.pop(run.name, None)
            if ended is not None:
                run.finish(exit_code_of(ended.returncode))
            run.settle()

    def _report(self, *, final: bool = False) -> None:
        if self._gone:
            return
        pod_phase = phase(self.runs, started=self._started, final=final)
        set_pod_conditions(
            self._conditions, self.runs, sandbox_ready=self._sandbox_ready, pod_phase=pod_phase
        )
        ips = [{"ip": LOOPBACK}]
        status = {
            "phase": pod_phase,
            "conditions": self._conditions.as_list(),
            "hostIP": LOOPBACK,
            "hostIPs": ips,
            "podIP": LOOPBACK,
            "podIPs": ips,
            "startTime": self._start_time,
            "containerStatuses": [run.status() for run in self.runs],
        }
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        for attempt in range(5):
            try:
                self._node.api.patch(path, {"metadata": {"uid": self.uid}, "status": status})
                return
            except ApiError as e:
                if e.status in (404, 409):  # gone (deleted meanwhile), or another pod of that name
                    log.info("pod %s/%s: status not written: %s", self.namespace, self.name, e)
                    return
                if 400 <= e.status < 500 and e.status != 429:  # refused for good
                    log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, e)
                    return
                log.warning("pod %s/%s: status write failed, retrying: %s", self.namespace, self.name, e)
            except requests.RequestException as e:
                log.warning("pod %s/%s: status write failed, retrying: %s", self.namespace, self.name, e)
            time.sleep(0.2 * (attempt + 1))


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
