"""`modelferry dev --kubeconfig FILE` against a real cluster: it installs our CRDs where they are
missing, refuses a node name the cluster does not have (naming the ones it has), and brings the
example model to Ready on the node it serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelferry.dev.kube.cluster import ControlPlane
from tests.e2e.processes import worker_env

pytestmark = pytest.mark.controlplane


def dev(home: Path, kubeconfig: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "modelferry.cli", "dev", "--home", str(home), "--kubeconfig", str(kubeconfig),
        "--temporal-port", "0", "--headless", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=worker_env())


def test_an_unknown_node_is_refused_naming_the_clusters_nodes(control_plane: ControlPlane, node, tmp_path):
    done = dev(tmp_path / "home", control_plane.admin_kubeconfig, "--node-name", "no-such-node", "--example")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no node 'no-such-node'" in done.stderr and node in done.stderr


def test_the_example_becomes_ready_on_a_real_cluster(control_plane: ControlPlane, node, kubectl, tmp_path):
    done = dev(
        tmp_path / "home",
        control_plane.admin_kubeconfig,
        "--node-name",
        node,
        "--example",
        "--exit-when-ready",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ready" in done.stdout
    crds = kubectl("get", "crd", "-o", "name").stdout
    assert "clusterbasemodels.ome.io" in crds
    ready = kubectl("get", "clusterbasemodel", "tiny-llama", "-o", "jsonpath={.status.state}").stdout
    assert ready == "Ready"
    assert (
        tmp_path / "home" / "node" / "raid" / "models" / "modelferry" / "tiny-llama" / "config.json"
    ).is_file()
