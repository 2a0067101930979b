"""`modelferry dev` as a process, and what an operator does beside it: `kubectl`, the modelferry
CLI (which finds the stack through `<home>/settings.yaml`), reading the resource, the node's
ConfigMap entry and label, and the files under the simulated node's root.

Used by the tests of a model's life after Ready (updates, admin actions, repairs, restarts), which
run the whole product as a user does: real node activities on real files, the real Temporal dev
server, the embedded API server, and models served by the fake Hugging Face Hub
(`tests/servers/fake_hf.py`) running in the test process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException
from safetensors.numpy import save as save_safetensors

from modelferry.dev.example import _CONFIG, _tensors  # the example model, with other weights per seed
from modelferry.layout import VERSIONS_DIR_NAME
from modelferry.names import API_GROUP, API_VERSION, STATE_DIR_NAME
from tests.e2e.processes import worker_env

NODE = "node-e2e"  # the one simulated node (`--node-name`)
AGENT_NAMESPACE = "ome"
PLURAL = "clusterbasemodels"
KUBECTL = Path(sys.executable).parent / "kubectl"


def tiny_llama_files(*, seed: int) -> dict[str, bytes]:
    """A small, parseable Llama checkpoint whose weights depend on `seed` (other seed, other
    bytes, same config): two weight shards, so one can be damaged and the other left alone."""
    tensors = _tensors(_CONFIG, seed=seed)
    names = sorted(tensors)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:half]},
        "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[half:]},
    }
    files = {
        name: save_safetensors(
            {k: np.ascontiguousarray(v) for k, v in part.items()}, metadata={"format": "pt"}
        )
        for name, part in shards.items()
    }
    files["config.json"] = (json.dumps(_CONFIG, indent=2) + "\n").encode()
    files["generation_config.json"] = b'{"max_new_tokens": 64}\n'
    return files


def hf_model(name: str, *, repo: str, endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": "test",
            "version": "1.0.0",
            "storage": {
                "storageUri": f"hf://{repo}",
                "path": f"/raid/models/{name}",
                "parameters": {"endpoint": endpoint},
            },
        },
    }


def hash_tree(directory: Path) -> dict[str, str]:
    """sha256 of every regular file under `directory` (links followed at the top only), by
    relative path; modelferry's own state directory left out."""
    out: dict[str, str] = {}
    root = directory.resolve()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] == STATE_DIR_NAME:
            continue
        if path.is_file():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def expected_hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def wait_until(probe: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class DevStack:
    """One `modelferry dev` process over `home` (one node, `NODE`, under `<home>/node`)."""

    def __init__(self, home: Path, *, extra_args: list[str] | None = None) -> None:
        self.home = home
        self.extra_args = list(extra_args or [])
        self.log_path = home.parent / f"{home.name}-dev.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.custom: Any = None
        self.core: Any = None

    # --- the process ------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modelferry.cli",
            "dev",
            "--home",
            str(self.home),
            "--headless",
            "--temporal-port",
            "0",
            "--kube-port",
            "0",
            "--node-name",
            NODE,
            *self.extra_args,
        ]

    def start(self, *, timeout: float = 90.0) -> None:
        self.starts += 1
        marker = f"=== start {self.starts} ===\n"
        with open(self.log_path, "a") as log:
            log.write(marker)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(
            self.command(), stdout=log_file, stderr=subprocess.STDOUT, env=worker_env()
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while "modelferry dev is up" not in self.log_path.read_text().rpartition(marker)[2]:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.2)
        api_client = kube_config.new_client_from_config(config_file=str(self.kubeconfig))
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text()[-6000:]

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def settings_file(self) -> Path:
        return self.home / "settings.yaml"

    @property
    def node_root(self) -> Path:
        return self.home / "node"

    # --- what an operator runs --------------------------------------------------------------

    def kubectl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, timeout=timeout, env=env)

    def cli(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """`modelferry ARGS` run beside dev: it reads `<home>/settings.yaml` from the working
        directory's `.modelferry` only, so the file is named with --config."""
        return subprocess.run(
            [sys.executable, "-m", "modelferry.cli", *args, "--config", str(self.settings_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=worker_env(),
        )

    def history(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        """`modelferry history cbm/NAME`, as text and as the --json rows."""
        text = self.cli("history", f"cbm/{name}")
        assert text.returncode == 0, text.stdout + text.stderr
        return text.stdout, self.history_rows(name)

    def history_rows(self, name: str) -> list[dict[str, Any]]:
        rows = self.cli("history", f"cbm/{name}", "--json")
        assert rows.returncode == 0, rows.stdout + rows.stderr
        return list(json.loads(rows.stdout))

    # --- the resource -----------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, obj)

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions") or [] if c.get("type") == kind), None)

    def wait_state(
        self,
        name: str,
        state: str,
        *,
        timeout: float = 90.0,
        check: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The resource once its status says `state` for its current generation (and `check`)."""

        def probe() -> dict[str, Any] | None:
            got = self.get(name)
            status = got.get("status") or {}
            current = status.get("observedGeneration") == got["metadata"]["generation"]
            if status.get("state") == state and current and (check is None or check(got)):
                return got
            return None

        try:
            return wait_until(probe, timeout=timeout, what=f"{name} {state}")
        except AssertionError as e:
            raise AssertionError(f"{e}; status now: {json.dumps(self.status(name))}\n{self.log()}") from None

    def wait_settled(self, name: str, *, timeout: float = 90.0) -> dict[str, Any]:
        """Ready, and the parsed metadata written into the spec (a write that bumps the
        generation once after the first delivery): the generation a test's patch follows."""
        return self.wait_state(
            name, "Ready", timeout=timeout, check=lambda got: "modelArchitecture" in got["spec"]
        )

    def configmap_entry(self, key: str) -> dict[str, Any] | None:
        try:
            cm = self.core.read_namespaced_config_map(NODE, AGENT_NAMESPACE)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        value = (cm.data or {}).get(key)
        return json.loads(value) if value else None

    def entry_status(self, key: str) -> str | None:
        """The `status` of the node's ConfigMap entry for `key` (None: no entry)."""
        return (self.configmap_entry(key) or {}).get("status")

    def node_label(self, uid: str) -> str | None:
        return (self.core.read_node(NODE).metadata.labels or {}).get(f"models.ome/{uid}")

    def events(self, name: str) -> list[dict[str, Any]]:
        """The resource's Events as `kubectl get events` shows them."""
        done = self.kubectl(
            "get", "events", "-A", "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return list(json.loads(done.stdout)["items"])

    # --- the node's files -------------------------------------------------------------------

    def model_path(self, name: str) -> Path:
        return self.node_root / "raid" / "models" / name

    def versions_dir(self, name: str) -> Path:
        return self.node_root / "raid" / "models" / VERSIONS_DIR_NAME / name

    def versions(self, name: str) -> set[str]:
        """The complete version directories of the model on the node."""
        store = self.versions_dir(name)
        if not store.is_dir():
            return set()
        return {p.name for p in store.iterdir() if (p / STATE_DIR_NAME / "manifest.json").is_file()}

    def serving_version(self, name: str) -> str:
        return Path(os.readlink(self.model_path(name))).name


def settings_of(home: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((home / "settings.yaml").read_text()))
