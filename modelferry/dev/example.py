"""A small but real model for `modelferry dev --example`: a tiny Llama-architecture checkpoint
(config.json + a safetensors file with correctly shaped tensors), and the resource that points at
it through a PVC mapped to a local directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

EXAMPLE_CLAIM = "example-models"
EXAMPLE_NAME = "tiny-llama"

_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": "4.46.0",
}


def _tensors(config: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = h // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    out = {
        "model.embed_tokens.weight": w(vocab, h),
        "model.norm.weight": np.ones(h, np.float32),
        "lm_head.weight": w(vocab, h),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "self_attn.q_proj.weight": w(h, h),
            p + "self_attn.k_proj.weight": w(kv, h),
            p + "self_attn.v_proj.weight": w(kv, h),
            p + "self_attn.o_proj.weight": w(h, h),
            p + "mlp.gate_proj.weight": w(inter, h),
            p + "mlp.up_proj.weight": w(inter, h),
            p + "mlp.down_proj.weight": w(h, inter),
            p + "input_layernorm.weight": np.ones(h, np.float32),
            p + "post_attention_layernorm.weight": np.ones(h, np.float32),
        }
    return out


def write_example_model(directory: Path) -> int:
    """Write the model into `directory`; return its exact parameter count."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(_CONFIG)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(_CONFIG, indent=2) + "\n")
    (directory / "generation_config.json").write_text(json.dumps({"max_new_tokens": 64}) + "\n")
    return sum(int(t.size) for t in tensors.values())


def example_resource(
    *, name: str = EXAMPLE_NAME, claim: str = EXAMPLE_CLAIM, namespace: str = "default"
) -> dict:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": "modelferry",
            "version": "1.0.0",
            "disabled": False,
            "displayName": "modelferry.tiny-llama",
            "storage": {
                "storageUri": f"pvc://{namespace}:{claim}/{name}",
                "path": f"/raid/models/modelferry/{name}",
            },
        },
    }
