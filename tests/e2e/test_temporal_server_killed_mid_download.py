"""The Temporal server SIGKILLed mid-download and started again on the same database: the node
worker keeps its transfer going, the workflows resume from the persisted history, the model ends
Ready and verified, and the bytes fetched stay close to the model's size (nothing starts over)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.e2e.harness import cluster_model, running_pipeline, unique
from tests.servers.fake_hf import FakeHub

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MIB = 1024 * 1024


async def test_temporal_killed_mid_download_resumes_and_ends_ready(tmp_path, one_node_cluster):
    weights = os.urandom(24 * MIB)
    with FakeHub(redirect_lfs=False) as hub:
        files = {"config.json": b'{"model_type": "llama"}', "model.safetensors.bin": weights}
        hub.add_repo("acme/big", files)
        hub.bytes_per_second = 4 * MIB  # ~6 s of transfer: the kill lands in the middle
        name = unique("tkill")
        obj = cluster_model(name, uri="hf://acme/big", path=f"/raid/models/{name}")
        obj["spec"]["storage"]["parameters"] = {"endpoint": hub.url}
        async with running_pipeline(
            cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"], temporal_db=tmp_path / "temporal.db"
        ) as p:
            await p.apply(obj)
            await p.wait_for(
                lambda: hub.served_for("model.safetensors.bin") >= 8 * MIB, timeout=60, what="8 MiB served"
            )
            assert p.temporal.process is not None
            p.temporal.process.kill()
            p.temporal.process.wait()
            killed_at = time.monotonic()
            await asyncio.sleep(1.0)  # the workers see the server gone
            await p.temporal.restart()
            restarted_in = time.monotonic() - killed_at
            ready = await p.wait_state(obj, "Ready", timeout=120)
            ready_after_kill = time.monotonic() - killed_at
        assert ready["status"]["nodesReady"] == ["node-1"]
        on_disk = p.node_roots["node-1"] / "raid" / "models" / name / "model.safetensors.bin"
        assert on_disk.read_bytes() == weights
        ratio = hub.served_for("model.safetensors.bin") / len(weights)
        print(f"restarted in {restarted_in:.1f}s, Ready {ready_after_kill:.1f}s after the kill, {ratio:.2f}x")
        assert ratio <= 1.2, ratio
