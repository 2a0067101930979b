"""The documented rules for each metadata field: context length and RoPE scaling, quantization
labels, capabilities, modelParameterSize, dtype, chat-tuned hints, unknown families."""

from __future__ import annotations

from typing import Any

import pytest

from modelferry.metadata import format_parameter_size, parse_config

BASE = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
}


def parse(**overrides: Any) -> Any:
    return parse_config({**BASE, **overrides})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"max_position_embeddings": 4096}, 4096),
        ({}, 2048),  # llama's transformers default
        ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}}, 16384),
        (
            {
                "max_position_embeddings": 131072,
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "original_max_position_embeddings": 8192,
                },
            },
            131072,
        ),
        ({"max_position_embeddings": 32768, "rope_scaling": {"type": "yarn", "factor": 4.0}}, 131072),
        (
            {
                "max_position_embeddings": 40960,
                "rope_scaling": {
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 32768,
                },
            },
            131072,
        ),
        (
            {
                "max_position_embeddings": 163840,
                "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096},
            },
            163840,
        ),
        ({"max_position_embeddings": 4096, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, 8192),
        ({"max_position_embeddings": 131072, "rope_scaling": {"type": "longrope"}}, 131072),
        (
            {"max_position_embeddings": 8192, "rope_scaling": {"type": "yarn", "factor": 0.5}},
            8192,
        ),  # never shrinks
        ({"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, 8192),
        ({"model_type": "chatglm", "seq_length": 32768, "max_position_embeddings": 99}, 32768),
        ({"model_type": "qwen", "seq_length": 8192, "max_position_embeddings": 32768}, 8192),
        ({"model_type": "dbrx", "max_seq_len": 32768}, 32768),
        ({"model_type": "gpt2-like-unknown", "n_positions": 1024}, 1024),
        (
            {
                "model_type": "xlm-roberta",
                "architectures": ["XLMRobertaModel"],
                "max_position_embeddings": 8194,
            },
            8192,
        ),
        (
            {
                "model_type": "gemma3_text",
                "max_position_embeddings": 131072,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            },
            131072,
        ),  # already extended
        ({"text_config": {"max_position_embeddings": 65536}, "max_position_embeddings": 1024}, 65536),
    ],
)
def test_max_tokens(overrides: dict, expected: int) -> None:
    assert parse(**overrides).metadata.max_tokens == expected


@pytest.mark.parametrize(
    ("qc", "label", "method"),
    [
        (None, None, None),
        ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}, "fp8", "fp8"),
        ({"quant_method": "fbgemm_fp8"}, "fbgemm_fp8", "fbgemm_fp8"),
        ({"quant_method": "gptq", "bits": 4}, "int4", "gptq"),
        ({"quant_method": "awq", "w_bit": 4}, "int4", "awq"),
        ({"quant_method": "gptq", "bits": 3}, "int3", "gptq"),
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            "nf4",
            "bitsandbytes",
        ),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "int8", "bitsandbytes"),
        ({"quant_method": "mxfp4"}, "mxfp4", "mxfp4"),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}},
            },
            "int4",
            "compressed-tensors",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
            "compressed-tensors",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "nvfp4-pack-quantized",
                "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float"}}},
            },
            "nvfp4",
            "compressed-tensors",
        ),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", "modelopt"),
        ({"quant_method": "HQQ"}, "hqq", "hqq"),
    ],
)
def test_quantization_label(qc: dict | None, label: str | None, method: str | None) -> None:
    result = parse(quantization_config=qc)
    assert (result.metadata.quantization, result.quantization_method) == (label, method)


def test_unrecognised_quantization_is_reported_as_is_with_a_warning() -> None:
    assert any("not recognised" in w for w in parse(quantization_config={"quant_method": "hqq"}).warnings)


def test_modelopt_side_file_gives_the_quantization() -> None:
    extra = {"hf_quant_config.json": {"quantization": {"quant_algo": "FP8"}}}
    assert parse_config(BASE, extra_files=extra).metadata.quantization == "fp8"


@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        ({}, {}, ["TEXT_TO_TEXT"]),
        ({"architectures": ["LlamaForSequenceClassification"]}, {}, ["REWARD_SCORING"]),
        (
            {"model_type": "xlm-roberta", "architectures": ["XLMRobertaForSequenceClassification"]},
            {},
            ["RERANK"],
        ),
        ({"model_type": "bert", "architectures": ["BertModel"]}, {}, ["TEXT_TO_EMBEDDING"]),
        ({"architectures": ["LlamaModel"]}, {}, ["TEXT_TO_EMBEDDING"]),
        (
            {
                "model_type": "chatglm",
                "architectures": ["ChatGLMModel"],
                "auto_map": {"AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
            },
            {},
            ["TEXT_TO_TEXT"],
        ),
        ({}, {"config_sentence_transformers.json": {}}, ["TEXT_TO_EMBEDDING"]),
        ({}, {"modules.json": [{"type": "sentence_transformers.models.Transformer"}]}, ["TEXT_TO_EMBEDDING"]),
        ({"is_causal": False}, {}, ["TEXT_TO_EMBEDDING"]),
        ({"_name_or_path": "BAAI/bge-m3-like-decoder"}, {}, ["TEXT_TO_EMBEDDING"]),
        ({"model_type": "llava", "vision_config": {}}, {}, ["IMAGE_TEXT_TO_TEXT"]),
        (
            {"model_type": "qwen2_vl", "vision_config": {}, "video_token_id": 5},
            {},
            ["IMAGE_TEXT_TO_TEXT", "VIDEO_TEXT_TO_TEXT"],
        ),
        ({"model_type": "unknown_vlm", "vision_config": {"hidden_size": 8}}, {}, ["IMAGE_TEXT_TO_TEXT"]),
        ({"audio_config": {}}, {}, ["TEXT_TO_TEXT", "AUDIO_TEXT_TO_TEXT"]),
        (
            {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper"},
            {},
            ["AUDIO_TO_TEXT"],
        ),
        (
            {"model_type": "clip", "architectures": ["CLIPModel"]},
            {},
            ["TEXT_TO_EMBEDDING", "IMAGE_TEXT_TO_EMBEDDING"],
        ),
    ],
)
def test_capabilities(config: dict, extra: dict, expected: list[str]) -> None:
    assert parse_config({**BASE, **config}, extra_files=extra).metadata.model_capabilities == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["meta-llama/Llama-3.1-8B-Instruct"], True),
        (["google/gemma-2-2b-it"], True),
        (["Qwen/Qwen1.5-7B-Chat"], True),
        (["meta-llama/Llama-3.1-8B"], False),
        (["google/gemma-2-2b"], False),
        (["THUDM/chatglm3-6b"], False),  # "chatglm" is a family name, not a chat marker
        ([], None),
    ],
)
def test_chat_tuned_only_from_clear_name_markers(names: list[str], expected: bool | None) -> None:
    result = parse_config(BASE, names=names)
    assert result.chat_tuned is expected
    assert ("CHAT" in result.legacy_capabilities()) is bool(expected)


def test_legacy_capability_names_map_from_ours() -> None:
    result = parse_config({**BASE, "model_type": "llava", "vision_config": {}}, names=["x/llava-1.5-7b"])
    assert result.legacy_capabilities() == ["TEXT_GENERATION", "VISION"]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        # three significant figures, rounded half up, never truncated
        (10_670_220_835, "10.7B"),  # Llama-3.2-11B-Vision
        (46_702_792_704, "46.7B"),  # Mixtral-8x7B
        (401_583_781_376, "402B"),  # Llama 4 Maverick
        (116_829_156_672, "117B"),  # gpt-oss-120b
        (1_235_814_400, "1.24B"),  # Llama-3.2-1B
        (134_515_008, "135M"),  # SmolLM-135M
        (494_032_768, "494M"),  # Qwen2.5-0.5B: below a billion it is M, as in OME
        (500_000_000, "500M"),
        (1_000_000_000, "1B"),
        (999_600_000, "1B"),  # rounds up into the next unit
        (999_499_999, "999M"),
        (1_543_714_304, "1.54B"),
        (8_030_261_248, "8.03B"),
        (8_001_000_000, "8B"),  # trailing zeros dropped
        (8_190_735_360, "8.19B"),
        (9_960_000_000, "9.96B"),
        (9_995_000_000, "10B"),
        (14_770_033_664, "14.8B"),
        (70_553_706_496, "70.6B"),
        (405_853_388_800, "406B"),
        (671_026_419_200, "671B"),
        (1_026_408_232_448, "1.03T"),
        (1_512_300_000_000, "1.51T"),
        (1_500_000_000_000, "1.5T"),
        (151_500_000_000, "152B"),  # OME: "151.5B" (two decimals); we keep three figures
        (46_282, "46.3K"),
        (1_500, "1.5K"),
        (10_000, "10K"),
        (999, "999"),
        (0, "0"),
    ],
)
def test_parameter_size_format(count: int, expected: str) -> None:
    assert format_parameter_size(count) == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"torch_dtype": "bfloat16"}, "bfloat16"),
        ({"torch_dtype": "torch.float16"}, "float16"),
        ({"dtype": "bf16"}, "bfloat16"),
        ({"text_config": {"dtype": "float32"}}, "float32"),
        ({}, None),
    ],
)
def test_dtype_is_normalised(overrides: dict, expected: str | None) -> None:
    assert parse(**overrides).metadata.dtype == expected


def test_unknown_family_gets_a_best_effort_estimate_and_says_so() -> None:
    result = parse_config(
        {
            "model_type": "brand_new",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 100,
            "intermediate_size": 128,
        }
    )
    assert not result.family_known and result.family is None
    assert result.metadata.parameter_count == parse(model_type="llama").metadata.parameter_count
    assert any("unknown model family brand_new" in w for w in result.warnings)


def test_unknown_family_without_sizes_still_parses() -> None:
    result = parse_config({"model_type": "mystery", "torch_dtype": "float16"})
    assert result.metadata.parameter_count is None and result.parameter_source == "none"
    assert result.metadata.dtype == "float16"
    assert any("not estimated" in w for w in result.warnings)
