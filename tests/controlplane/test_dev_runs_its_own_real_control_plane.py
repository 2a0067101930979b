"""`modelferry dev --kube real`: dev starts the real control plane (modelferry/dev/kube) instead of
the embedded API server, with a process kubelet per node whose filesystem is that node's dev root.
The example becomes Ready on both nodes, and a Pod that selects OME's label for it is scheduled
there and reads the model's files through its hostPath; on SIGTERM everything is gone. Without
the binaries, dev says how to build them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from modelferry.names import ModelKind, ome_node_label_key
from tests.e2e.processes import worker_env

pytestmark = pytest.mark.controlplane

EXAMPLE = "tiny-llama"


def dev_command(home: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "modelferry.cli", "dev", "--kube", "real", "--home", str(home),
        "--temporal-port", "0", "--headless", "--port", "off", *extra,
    ]  # fmt: skip


def eventually(probe: Callable[[], Any], *, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return found


def reader_pod(node: str) -> dict[str, Any]:
    """An inference server's stand-in: OME's nodeSelector for the example, pinned to `node` by its
    hostname, and a check that the model's config is where the models root says."""
    label = ome_node_label_key(kind=ModelKind.CLUSTER_BASE_MODEL, namespace=None, name=EXAMPLE)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"reader-{node}"},
        "spec": {
            "nodeSelector": {label: "Ready", "kubernetes.io/hostname": node},
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "reader",
                    "image": "busybox",
                    "command": ["test", "-s", f"/models/modelferry/{EXAMPLE}/config.json"],
                    "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "models", "hostPath": {"path": "/raid/models", "type": "Directory"}}],
        },
    }


@pytest.mark.timeout(240)
def test_dev_runs_the_example_on_a_real_control_plane_with_process_kubelets(
    kube_bin: Path, tmp_path: Path
) -> None:
    home, log = tmp_path / "home", tmp_path / "dev.log"
    env = {k: v for k, v in worker_env({"MODELFERRY_KUBE_BIN": str(kube_bin)}).items() if k != "CI"}
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            dev_command(home, "--nodes", "2", "--node-name", "box", "--example"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        eventually(lambda: "modelferry dev is up" in log.read_text(), timeout=120, what="dev up", log=log)
        api = kube_config.new_client_from_config(config_file=str(home / "kube" / "kubeconfig-admin"))
        custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)

        def example_ready() -> dict[str, Any] | None:
            try:  # dev applies it just after saying it is up
                got = custom.get_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", EXAMPLE)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
            return got if (got.get("status") or {}).get("state") == "Ready" else None

        ready = eventually(example_ready, timeout=120, what=f"{EXAMPLE} Ready", log=log)
        assert sorted(ready["status"]["nodesReady"]) == ["box-1", "box-2"]
        nodes = {n.metadata.name: n for n in core.list_node().items}
        assert set(nodes) == {"box-1", "box-2"}
        assert all(n.status.node_info.os_image == "modelferry process kubelet" for n in nodes.values())

        eventually(
            lambda: core.list_namespaced_service_account("default").items,
            timeout=30,
            what="the default ServiceAccount",
            log=log,
        )
        core.create_namespaced_pod("default", reader_pod("box-2"))

        def finished() -> Any:
            pod = core.read_namespaced_pod("reader-box-2", "default")
            return pod if pod.status.phase in ("Succeeded", "Failed") else None

        pod = eventually(finished, timeout=60, what="the reader Pod finished", log=log)
        assert (pod.spec.node_name, pod.status.phase) == ("box-2", "Succeeded")
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()
    assert dev.returncode == 0, log.read_text()[-3000:]
    apiserver = subprocess.run(["pgrep", "-f", str(home / "kube")], capture_output=True, text=True)
    assert apiserver.stdout == "", f"left running: {apiserver.stdout}"


def test_without_the_binaries_dev_says_how_to_build_them(tmp_path: Path) -> None:
    env = {
        k: v for k, v in worker_env({"MODELFERRY_KUBE_CACHE": str(tmp_path / "empty")}).items() if k != "CI"
    }
    done = subprocess.run(dev_command(tmp_path / "home"), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run `bash hack/kube/build.sh`" in done.stderr and "MODELFERRY_KUBE_BIN" in done.stderr
    assert not os.path.exists(tmp_path / "home" / "kube")
