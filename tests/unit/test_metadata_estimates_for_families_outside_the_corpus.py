"""Families OME's fixture corpus lacks (Qwen2-MoE, OLMoE, OLMo-2, StarCoder2, Granite, GraniteMoE,
DeepSeek-V2 MLA), checked against published parameter counts.

The configs are the size-relevant keys of the models' config.json files, written inline; the
expected counts are the models' published totals. Within 2% is required (as for the corpus); the
error printed on failure shows how far off a formula is.
"""

from __future__ import annotations

import pytest

from modelferry.metadata import parse_config

_DEEPSEEK_V2 = {
    "model_type": "deepseek_v2",
    "architectures": ["DeepseekV2ForCausalLM"],
    "vocab_size": 102400,
    "num_key_value_heads": 128,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "n_shared_experts": 2,
    "max_position_embeddings": 163840,
}

CASES: list[tuple[str, dict, int]] = [
    (
        "Qwen1.5-MoE-A2.7B",
        {
            "model_type": "qwen2_moe",
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "num_experts": 60,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "tie_word_embeddings": False,
        },
        14_315_784_192,
    ),
    (
        "OLMoE-1B-7B-0924",
        {
            "model_type": "olmoe",
            "vocab_size": 50304,
            "hidden_size": 2048,
            "intermediate_size": 1024,
            "num_experts": 64,
            "num_hidden_layers": 16,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "tie_word_embeddings": False,
        },
        6_920_000_000,
    ),
    (
        "OLMo-2-1124-7B",
        {
            "model_type": "olmo2",
            "vocab_size": 100352,
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "tie_word_embeddings": False,
        },
        7_298_617_344,
    ),
    (
        "starcoder2-3b",
        {
            "model_type": "starcoder2",
            "vocab_size": 49152,
            "hidden_size": 3072,
            "intermediate_size": 12288,
            "num_hidden_layers": 30,
            "num_attention_heads": 24,
            "num_key_value_heads": 2,
            "use_bias": True,
        },
        3_030_371_328,
    ),
    (
        "starcoder2-15b",
        {
            "model_type": "starcoder2",
            "vocab_size": 49152,
            "hidden_size": 6144,
            "intermediate_size": 24576,
            "num_hidden_layers": 40,
            "num_attention_heads": 48,
            "num_key_value_heads": 4,
            "use_bias": True,
            "tie_word_embeddings": False,
        },
        15_957_889_024,
    ),
    (
        "granite-3.0-8b-instruct",
        {
            "model_type": "granite",
            "vocab_size": 49155,
            "hidden_size": 4096,
            "intermediate_size": 12800,
            "num_hidden_layers": 40,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "tie_word_embeddings": True,
        },
        8_170_000_000,
    ),
    (
        "granite-3.0-3b-a800m",
        {
            "model_type": "granitemoe",
            "vocab_size": 49155,
            "hidden_size": 1536,
            "intermediate_size": 512,
            "num_local_experts": 40,
            "num_hidden_layers": 32,
            "num_attention_heads": 24,
            "num_key_value_heads": 8,
            "tie_word_embeddings": True,
        },
        3_300_000_000,
    ),
    (
        "DeepSeek-V2-Lite",
        {
            **_DEEPSEEK_V2,
            "hidden_size": 2048,
            "intermediate_size": 10944,
            "moe_intermediate_size": 1408,
            "n_routed_experts": 64,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "q_lora_rank": None,
        },
        15_706_484_224,
    ),
    (
        "DeepSeek-V2",
        {
            **_DEEPSEEK_V2,
            "hidden_size": 5120,
            "intermediate_size": 12288,
            "moe_intermediate_size": 1536,
            "n_routed_experts": 160,
            "num_hidden_layers": 60,
            "num_attention_heads": 128,
            "q_lora_rank": 1536,
        },
        236_000_000_000,
    ),
]


@pytest.mark.parametrize(("model", "config", "published"), CASES, ids=[c[0] for c in CASES])
def test_estimate_is_within_two_percent(model: str, config: dict, published: int) -> None:
    result = parse_config(config)
    assert result.family_known
    estimate = result.metadata.parameter_count
    assert estimate is not None
    error = (estimate - published) / published
    assert abs(error) <= 0.02, f"{model}: {estimate:,} vs {published:,} ({error:+.3%})"


def test_deepseek_v2_lite_uses_plain_q_projection_and_mla_kv() -> None:
    """Without q_lora_rank, q is one projection; removing MLA's kv compression must change the count."""
    lite = dict(CASES[7][1])
    with_mla = parse_config(lite).metadata.parameter_count
    assert with_mla == 15_706_484_224
    lite["kv_lora_rank"] = 256
    assert parse_config(lite).metadata.parameter_count != with_mla
