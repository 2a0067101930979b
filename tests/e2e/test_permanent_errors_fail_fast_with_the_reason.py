"""Permanent source errors (gated repo without access, missing repo) fail the node at once with
the reason in the status; a token from the Secret named by storageKey opens the gated repo."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import cluster_model, running_pipeline, unique
from tests.servers.fake_hf import FakeHub

pytestmark = pytest.mark.e2e

CONFIG = json.dumps(
    {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 256,
        "intermediate_size": 128,
        "max_position_embeddings": 1024,
    }
).encode()


async def test_gated_and_missing_repos_fail_with_reason_and_a_secret_token_opens_the_gate(
    tmp_path, one_node_cluster
):
    with FakeHub(redirect_lfs=False) as hub:
        hub.add_repo(
            "acme/gated", {"config.json": CONFIG, "weights.bin": b"w" * 4096}, gated=True, tokens={"hf_good"}
        )
        gated = cluster_model(unique("gated"), uri="hf://acme/gated", path="/raid/models/gated")
        gated["spec"]["storage"]["parameters"] = {"endpoint": hub.url}
        missing = cluster_model(unique("missing"), uri="hf://acme/nope", path="/raid/models/nope")
        missing["spec"]["storage"]["parameters"] = {"endpoint": hub.url}
        async with running_pipeline(cluster=one_node_cluster, tmp=tmp_path, nodes=["node-1"]) as p:
            await p.apply(gated)
            await p.apply(missing)
            failed = await p.wait_state(gated, "Failed", timeout=45)
            ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
            assert "GatedRepoError" in ready["message"] and "gated" in ready["message"]
            assert failed["status"]["nodesFailed"] == ["node-1"]
            assert p.configmap_entry("node-1", gated["metadata"]["name"])["status"] == "Failed"
            failed = await p.wait_state(missing, "Failed", timeout=45)
            ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
            assert "SourceNotFoundError" in ready["message"]

            # The platform team adds the token: a Secret, referenced by storageKey (a new generation).
            p.core.create_namespaced_secret(
                "ome", {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_good"}}
            )
            await p.patch(gated, {"spec": {"storage": {"key": "hf-token"}}})
            opened = await p.wait_state(gated, "Ready", timeout=60)
            assert opened["status"]["nodesReady"] == ["node-1"]
            model = p.node_roots["node-1"] / "raid/models/gated"
            assert (model / "weights.bin").read_bytes() == b"w" * 4096
