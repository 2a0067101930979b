"""`modelferry plan` end to end: the embedded API server with Nodes of different labels and
allocatable storage, a fake Hugging Face Hub serving a real safetensors checkpoint, and a private
repository whose token comes from a Secret in the agent namespace. Only the headers' bytes are
fetched, and nothing is written to the cluster."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from safetensors.numpy import save

from activities.storage.probe import HEAD_READ_BYTES
from modelferry.apiserver.seed import node_manifest
from modelferry.apiserver.testing import running_apiserver
from modelferry.cli import main
from modelferry.names import DEV_NODE_ROOT_ANNOTATION
from tests.servers.fake_hf import FakeHub

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 256,
    "max_position_embeddings": 4096,
    "torch_dtype": "float32",
}
TENSORS = {
    "model.embed_tokens.weight": np.zeros((256, 64), np.float32),
    "model.layers.0.mlp.up_proj.weight": np.zeros((128, 64), np.float32),
    "lm_head.weight": np.zeros((256, 64), np.float32),
    "big.weight": np.zeros((1024, 512), np.float32),  # 2 MiB of data the plan must not fetch
}
PARAMETERS = sum(int(t.size) for t in TENSORS.values())
WEIGHTS = save(TENSORS)


@pytest.fixture(autouse=True)
def no_public_hub(monkeypatch):
    resolve = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"test blocked a lookup of {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


def _node(
    name: str, labels: dict[str, str], *, storage: str | None, root: Path | None = None
) -> dict[str, Any]:
    node = node_manifest(name, labels)
    allocatable = node["status"].setdefault("allocatable", {})
    allocatable.pop("ephemeral-storage", None)
    if storage is not None:
        allocatable["ephemeral-storage"] = storage
    if root is not None:
        node["metadata"]["annotations"] = {DEV_NODE_ROOT_ANNOTATION: str(root)}
    return node


@pytest.fixture
def cluster(tmp_path):
    dev_root = tmp_path / "dev-node-root"
    (dev_root / "raid" / "models").mkdir(parents=True)
    nodes = [
        _node("gpu-big", {"gpu": "a100"}, storage="100Gi"),
        _node("gpu-small", {"gpu": "a100"}, storage="1Mi"),
        _node("gpu-silent", {"gpu": "a100"}, storage=None),
        _node("gpu-dev", {"gpu": "a100"}, storage="1Ki", root=dev_root),  # the local disk decides
        _node("cpu-only", {"gpu": "none"}, storage="100Gi"),
    ]
    with running_apiserver(nodes=nodes, kubeconfig=tmp_path / "kubeconfig") as server:
        yield server


@pytest.fixture
def hub():
    with FakeHub() as hub:
        files = {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": WEIGHTS}
        hub.add_repo("acme/tiny", files)
        hub.add_repo("acme/private", files, private=True, tokens={"hf_secret"})
        yield hub


def _model(name: str, uri: str, **storage: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": "acme",
            "version": "1",
            "storage": {"storageUri": uri, "path": f"/raid/models/{name}", **storage},
        },
    }


def _plan(tmp_path: Path, hub: FakeHub, docs: list[dict[str, Any]], capsys, *extra: str) -> tuple[int, str]:
    config = tmp_path / "settings.yaml"
    config.write_text(
        yaml.safe_dump(
            {"kube": {"kubeconfig": str(tmp_path / "kubeconfig")}, "node": {"hf_endpoint": hub.url}}
        )
    )
    manifest = tmp_path / "models.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    code = main(["plan", str(manifest), "--config", str(config), *extra])
    return code, capsys.readouterr().out


def test_plan_shows_nodes_size_parameters_and_fit_without_downloading(tmp_path, cluster, hub, capsys):
    model = _model("tiny", "hf://acme/tiny", nodeSelector={"gpu": "a100"})
    code, out = _plan(tmp_path, hub, [model], capsys, "--json")
    assert code == 0, out
    [plan] = json.loads(out)["models"]
    assert plan["problems"] == []
    assert plan["eligibleNodes"] == ["gpu-big", "gpu-dev", "gpu-silent", "gpu-small"]
    nodes = {n["name"]: n for n in plan["nodes"]}
    assert nodes["cpu-only"]["eligible"] is False
    assert nodes["cpu-only"]["reason"] == "nodeSelector gpu=a100: node has gpu=none"
    assert nodes["cpu-only"]["fit"] is None
    assert nodes["gpu-big"]["fit"]["result"] == "fits"
    assert nodes["gpu-small"]["fit"]["result"] == "does not fit"
    assert nodes["gpu-silent"]["fit"]["result"] == "unknown"
    assert "no allocatable ephemeral-storage" in nodes["gpu-silent"]["fit"]["reason"]
    assert nodes["gpu-dev"]["fit"]["result"] == "fits"  # the local disk, not the 1Ki allocatable
    assert "free under the models root" in nodes["gpu-dev"]["fit"]["reason"]
    assert plan["source"]["totalBytes"] == len(WEIGHTS) + len(json.dumps(CONFIG))
    assert plan["source"]["files"] == 2
    assert plan["model"]["architecture"] == "LlamaForCausalLM"
    assert plan["model"]["parameterCount"] == PARAMETERS
    assert plan["model"]["parameterSource"] == "safetensors"
    assert plan["model"]["maxTokens"] == 4096
    # one ranged read of the head: the header, never the 2 MiB of tensor data
    assert hub.served_for("model.safetensors") <= HEAD_READ_BYTES < len(WEIGHTS)
    # nothing was written: no ConfigMap, no status, no label
    assert not cluster.store.bucket("/configmaps") or all(
        key[0] != "ome" for key in cluster.store.bucket("/configmaps")
    )


def test_plan_text_names_why_a_node_is_skipped(tmp_path, cluster, hub, capsys):
    code, out = _plan(tmp_path, hub, [_model("tiny", "hf://acme/tiny", nodeSelector={"gpu": "none"})], capsys)
    assert code == 0, out
    assert "ClusterBaseModel/tiny" in out
    assert "1 of 5 would get it" in out
    assert "gpu-big     no   nodeSelector gpu=none: node has gpu=a100" in out
    assert f"({PARAMETERS:,} parameters, exact, from the safetensors headers)" in out
    assert "LlamaForCausalLM (llama)" in out


def test_private_source_reads_its_secret_from_the_agent_namespace(tmp_path, cluster, hub, capsys):
    model = _model("private", "hf://acme/private", storageKey="hf-token")
    code, out = _plan(tmp_path, hub, [model], capsys, "--json")
    assert code == 1
    [plan] = json.loads(out)["models"]
    assert plan["problems"] == ["spec.storage.storageKey: Secret ome/hf-token not found"]

    token = base64.b64encode(b"hf_secret").decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "ome"}}
    cluster.apply_manifest({**secret, "data": {"token": token}})
    code, out = _plan(tmp_path, hub, [model], capsys, "--json")
    assert code == 0, out
    assert json.loads(out)["models"][0]["model"]["parameterCount"] == PARAMETERS


def test_problems_name_the_field_and_value_and_other_models_are_still_planned(tmp_path, cluster, hub, capsys):
    docs = [
        _model("missing", "hf://acme/nothing-here"),
        _model("outside", "hf://acme/tiny") | {"spec": {**_model("x", "hf://acme/tiny")["spec"]}},
        _model("tiny", "hf://acme/tiny"),
    ]
    docs[1]["spec"]["storage"]["path"] = "/etc/models/x"
    docs.append({"apiVersion": "ome.io/v1beta1", "kind": "ClusterBaseModel", "metadata": {"name": "bad"}})
    code, out = _plan(tmp_path, hub, docs, capsys, "--json")
    assert code == 1
    plans = {p["name"]: p for p in json.loads(out)["models"]}
    assert plans["missing"]["problems"][0].startswith("spec.storage.storageUri 'hf://acme/nothing-here': ")
    assert plans["outside"]["problems"][0].startswith("spec.storage.path: ")
    assert plans["bad"]["problems"] == ["spec: required field is missing"]
    assert plans["tiny"]["problems"] == [] and plans["tiny"]["model"]["parameterCount"] == PARAMETERS
