"""Node workers as separate processes (to kill them), and a fake kubelet that runs worker Jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from modelferry.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFERRY_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(extra or {})
    return env


def write_worker_config(path: Path, settings: Settings, *, node_root: Path) -> Path:
    data = settings.model_dump(mode="json")
    data["node"]["root"] = str(node_root)
    path.write_text(yaml.safe_dump(data))
    return path


def start_worker_process(
    *, node: str, config: Path, log: Path, extra_args: list[str] | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelferry.cli",
            "worker",
            "--node",
            node,
            "--config",
            str(config),
            *(extra_args or []),
        ],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        env=worker_env(),
    )


class FakeKubelet:
    """Plays kubelet for worker Jobs: when a Job pinned to one of `nodes` appears, runs its
    container's command as a local process (with the node's filesystem root and API access a pod
    would get), and records the Job Complete/Failed when the process exits."""

    def __init__(
        self,
        *,
        api_client: Any,
        nodes: dict[str, Path],
        kubeconfig: Path,
        log_dir: Path,
        claim_dirs: dict[str, Path] | None = None,
    ):
        self.batch = k8s.BatchV1Api(api_client)
        self.claim_dirs = claim_dirs or {}
        self.nodes = nodes
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.started: list[str] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                jobs = self.batch.list_job_for_all_namespaces().items
            except Exception:
                continue
            for job in jobs:
                self._sync(job)

    def _mounted(self, args: list[str]) -> list[str]:
        """A claim volume mounted at /mnt/...: point `--pvc ns:claim=/mnt/...` at the local dir."""
        out = list(args)
        for i, arg in enumerate(out):
            if i and out[i - 1] == "--pvc":
                key, _, _mount = arg.partition("=")
                claim = key.rpartition(":")[2]
                if claim in self.claim_dirs:
                    out[i] = f"{key}={self.claim_dirs[claim]}"
        return out

    def _sync(self, job: Any) -> None:
        name = job.metadata.name
        key = f"{name}/{job.metadata.uid}"
        pod = job.spec.template.spec
        if pod.node_name not in self.nodes or job.metadata.deletion_timestamp:
            return
        proc = self.processes.get(key)
        if proc is None:
            container = pod.containers[0]
            env = {e.name: e.value for e in container.env or [] if e.value is not None}
            env |= {
                "MODELFERRY_KUBECONFIG": str(self.kubeconfig),
                "MODELFERRY_NODE_ROOT": str(self.nodes[pod.node_name]),
            }
            self.processes[key] = subprocess.Popen(
                [sys.executable, "-m", "modelferry.cli", *self._mounted(container.args)],
                stdout=open(self.log_dir / f"{name}.log", "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                env=worker_env(env),
            )
            self.started.append(name)
            return
        if proc.poll() is not None and not (job.status and job.status.conditions):
            kind = "Complete" if proc.returncode == 0 else "Failed"
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            job.status = k8s.V1JobStatus(
                conditions=[k8s.V1JobCondition(type=kind, status="True", last_transition_time=now)],
                succeeded=1 if kind == "Complete" else 0,
                failed=0 if kind == "Complete" else 1,
            )
            try:
                self.batch.replace_namespaced_job_status(name, job.metadata.namespace, job)
            except ApiException:
                pass
