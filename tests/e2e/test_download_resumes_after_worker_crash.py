"""A node worker killed mid-download: the retried attempt resumes instead of starting over."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.e2e.harness import cluster_model, running_pipeline, unique
from tests.e2e.processes import start_worker_process, write_worker_config
from tests.servers.fake_hf import FakeHub, Stall

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


async def test_worker_killed_mid_download_resumes(tmp_path, one_node_cluster):
    weights = os.urandom(24 * MIB)
    config = json.dumps(
        {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "vocab_size": 256,
            "max_position_embeddings": 4096,
        }
    ).encode()
    with FakeHub(redirect_lfs=False) as hub:
        hub.add_repo("acme/big", {"config.json": config, "model.safetensors.bin": weights})
        # The first GET of the weights stalls after 16 MiB: the worker is killed while it waits.
        hub.add_fault("acme/big", "model.safetensors.bin", Stall(after=16 * MIB, seconds=60))
        name = unique("big")
        obj = cluster_model(name, uri="hf://acme/big", path=f"/raid/models/{name}")
        obj["spec"]["storage"]["parameters"] = {"endpoint": hub.url}
        async with running_pipeline(
            cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], start_node_workers=False
        ) as p:
            cfg = write_worker_config(tmp_path / "worker.yaml", p.settings, node_root=p.node_roots["node-1"])
            first = start_worker_process(node="node-1", config=cfg, log=tmp_path / "worker1.log")
            try:
                await p.apply(obj)
                await p.wait_for(
                    lambda: hub.served_for("model.safetensors.bin") >= 16 * MIB,
                    timeout=60,
                    what="16 MiB served",
                )
                await asyncio.sleep(1.5)  # the engine checkpoints every few MiB; let the last one land
            finally:
                first.kill()
                first.wait()
            served_before_kill = hub.served_for("model.safetensors.bin")
            second = start_worker_process(node="node-1", config=cfg, log=tmp_path / "worker2.log")
            try:
                ready = await p.wait_state(obj, "Ready", timeout=120)
            finally:
                second.terminate()
                second.wait(timeout=30)
        refetched = hub.served_for("model.safetensors.bin") - served_before_kill
        assert ready["status"]["nodesReady"] == ["node-1"]
        assert refetched < len(weights) // 2, (refetched, served_before_kill)
        on_disk = p.node_roots["node-1"] / "raid" / "models" / name / "model.safetensors.bin"
        assert on_disk.read_bytes() == weights
