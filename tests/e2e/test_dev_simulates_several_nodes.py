"""`modelferry dev --nodes 3`: three Nodes in the embedded API server, each with its own root and its
own worker on its own queue. The example model becomes Ready on all three, with its files under each
node's root; a model whose nodeSelector picks one node (by the dev index label) lands there only."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from modelferry.dev.example import example_resource
from modelferry.names import DEV_NODE_INDEX_LABEL
from tests.e2e.processes import worker_env
from tests.e2e.test_dev_mode_runs_the_whole_system import dev_command

pytestmark = pytest.mark.e2e


def test_three_simulated_nodes_each_get_the_model_and_a_selector_picks_one(tmp_path):
    picked = example_resource(name="picked")
    picked["spec"]["storage"]["storageUri"] = "pvc://default:example-models/tiny-llama"
    picked["spec"]["storage"]["nodeSelector"] = {DEV_NODE_INDEX_LABEL: "2"}
    manifest = tmp_path / "picked.yaml"
    manifest.write_text(yaml.safe_dump(picked))
    home = tmp_path / "home"
    done = subprocess.run(
        dev_command(
            home,
            "--nodes",
            "3",
            "--node-name",
            "sim",
            "--example",
            "--apply",
            str(manifest),
            "--exit-when-ready",
        ),
        capture_output=True,
        text=True,
        timeout=240,
        env=worker_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ClusterBaseModel/tiny-llama is Ready on sim-1, sim-2, sim-3" in done.stdout
    assert "ClusterBaseModel/picked is Ready on sim-2:" in done.stdout
    for node in ("sim-1", "sim-2", "sim-3"):
        model = home / "nodes" / node / "raid" / "models" / "modelferry" / "tiny-llama"
        assert model.is_symlink() and (model / "model.safetensors").is_file(), node
        picked_here = (home / "nodes" / node / "raid" / "models" / "modelferry" / "picked").exists()
        assert picked_here == (node == "sim-2"), node
    assert not (home / "node").exists(), "N nodes do not use the one-node layout"


def test_nodes_must_be_a_positive_count(tmp_path):
    done = subprocess.run(
        dev_command(tmp_path / "home", "--nodes", "0"),
        capture_output=True,
        text=True,
        timeout=60,
        env=worker_env(),
    )
    assert done.returncode == 2 and "--nodes '0': expected a whole number of nodes, at least 1" in done.stderr
