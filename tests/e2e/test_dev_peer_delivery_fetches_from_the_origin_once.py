"""`modelferry dev --nodes 3 --peer-delivery`: one model onto three simulated nodes crosses the
origin's link once. The first node fetches it from the origin (a fake Hugging Face Hub); once it is
Ready its worker's peer server feeds the other two, every byte still checked against the origin's
digests; all three end Ready with identical, verified files."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.e2e.processes import worker_env
from tests.e2e.test_dev_mode_runs_the_whole_system import dev_command
from tests.servers.fake_hf import FakeHub

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
NODES = ("sim-1", "sim-2", "sim-3")


def test_three_nodes_with_peer_delivery_fetch_the_model_from_the_origin_once(tmp_path):
    files = {
        "config.json": b'{"model_type": "llama"}',
        "tokenizer.json": os.urandom(64 * 1024),
        "model.safetensors.bin": os.urandom(16 * MIB),
    }
    size = sum(len(v) for v in files.values())
    with FakeHub(redirect_lfs=False) as hub:
        hub.add_repo("acme/spread", files)
        model = {
            "apiVersion": "ome.io/v1beta1",
            "kind": "ClusterBaseModel",
            "metadata": {"name": "spread"},
            "spec": {
                "storage": {
                    "storageUri": "hf://acme/spread",
                    "path": "/raid/models/spread",
                    "parameters": {"endpoint": hub.url},
                }
            },
        }
        manifest = tmp_path / "spread.yaml"
        manifest.write_text(yaml.safe_dump(model))
        home = tmp_path / "home"
        done = subprocess.run(
            dev_command(
                home,
                "--nodes",
                str(len(NODES)),
                "--node-name",
                "sim",
                "--peer-delivery",
                "--apply",
                str(manifest),
                "--exit-when-ready",
            ),
            capture_output=True,
            text=True,
            timeout=240,
            env=worker_env(),
        )
        origin = hub.bytes_served
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ClusterBaseModel/spread is Ready on {', '.join(NODES)}" in done.stdout, done.stdout
    for node in NODES:
        link = home / "nodes" / node / "raid" / "models" / "spread"
        assert link.is_symlink(), node
        assert {name: (link / name).read_bytes() for name in files} == files, node
    ratio = origin / size
    print(f"origin sent {origin} bytes for a {size}-byte model on {len(NODES)} nodes: {ratio:.2f}x")
    assert ratio <= 1.2, ratio
