"""Every config of OME's fixture corpus parses, with the family, context length, capabilities,
dtype and quantization we expect; and the JSON has exactly OME's field names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelferry.metadata import parse_model_dir

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hf-configs"
DIRS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())

T2T = ["TEXT_TO_TEXT"]
VLM = ["IMAGE_TEXT_TO_TEXT"]
VIDEO = ["IMAGE_TEXT_TO_TEXT", "VIDEO_TEXT_TO_TEXT"]
EMB = ["TEXT_TO_EMBEDDING"]
REWARD = ["REWARD_SCORING"]

# directory: (family, maxTokens, capabilities)
EXPECTED: dict[str, tuple[str, int | None, list[str]]] = {
    "Alibaba-NLP__gte-Qwen2-7B-instruct": ("qwen2", 131072, EMB),  # is_causal: false
    "HuggingFaceTB__SmolLM-1.7B": ("llama", 2048, T2T),
    "Qwen__Qwen3-8B-FP8": ("qwen3", 40960, T2T),
    "Qwen__Qwen3-Embedding-8B": ("qwen3", 40960, EMB),  # config_sentence_transformers.json
    "Qwen__Qwen3-VL-2B-Instruct": ("qwen3_vl", 262144, VIDEO),
    "Qwen__Qwen3-VL-30B-A3B-Instruct": ("qwen3_vl_moe", 262144, VIDEO),
    "Skywork__Skywork-Reward-Llama-3.1-8B-v0.2": ("llama", 131072, REWARD),  # llama3 rope: no stretch
    "THUDM__chatglm3-6b": ("chatglm", 8192, T2T),  # seq_length
    "THUDM__glm-4-9b": ("chatglm", 8192, T2T),
    "deepseek-ai__Janus-1.3B": ("multi_modality", 16384, ["IMAGE_TEXT_TO_TEXT", "TEXT_TO_IMAGE"]),
    "deepseek-ai__deepseek-vl2-tiny": ("deepseek_vl_v2", 4096, VLM),
    "google__gemma-2-2b": ("gemma2", 8192, T2T),
    "google__gemma-2-2b-it": ("gemma2", 8192, T2T),
    "google__gemma-2-9b": ("gemma2", 8192, T2T),
    "google__gemma-7b": ("gemma", 8192, T2T),
    "hf-internal-testing__tiny-random-PhiModel": ("phi", 512, EMB),  # PhiModel: no LM head
    "intfloat__e5-mistral-7b-instruct": ("mistral", 32768, EMB),  # MistralModel
    "liuhaotian__llava-v1.5-7b": ("llava", 4096, VLM),
    "llava-hf__llava-1.5-7b-hf": ("llava", 4096, VLM),
    "meta-llama__Meta-Llama-3.1-405B-Instruct-FP8": ("llama", 131072, T2T),
    "microsoft__Phi-3-mini-128k-instruct": ("phi3", 131072, T2T),  # longrope: already extended
    "microsoft__Phi-3-small-8k-instruct": ("phi3small", 8192, T2T),
    "microsoft__Phi-3-vision-128k-instruct": ("phi3_v", 131072, VLM),
    "microsoft__Phi-3.5-MoE-instruct": ("phimoe", 131072, T2T),
    "moonshotai__Kimi-K2-Instruct": ("kimi_k2", 131072, T2T),  # yarn 32 x 4096
    "ome-testdata__baichuan2_7b": ("baichuan", 4096, T2T),
    "ome-testdata__bge_large": ("bert", 512, EMB),
    "ome-testdata__clip_vision_model": ("clip_vision_model", None, ["IMAGE_TEXT_TO_EMBEDDING"]),
    "ome-testdata__command_r_35b": ("cohere", 131072, T2T),
    "ome-testdata__dbrx_132b": ("dbrx", 32768, T2T),  # max_seq_len
    "ome-testdata__deepseek_v3": ("deepseek_v3", 163840, T2T),  # yarn 40 x 4096
    "ome-testdata__exaone_7.8b": ("exaone", 32768, T2T),  # llama3 rope: no stretch
    "ome-testdata__gemma3": ("gemma3", 131072, VLM),  # family default; linear x8 not applied
    "ome-testdata__gemma3_text": ("gemma3_text", 32768, T2T),
    "ome-testdata__internlm2_7b": ("internlm2", 32768, T2T),
    "ome-testdata__internlm2_reward": ("internlm2", 32768, REWARD),
    "ome-testdata__llama3": ("llama", 8192, T2T),
    "ome-testdata__llama3_1": ("llama", 131072, T2T),
    "ome-testdata__llama3_2_11b_vision": ("mllama", 131072, VLM),
    "ome-testdata__llama3_2_1b": ("llama", 131072, T2T),
    "ome-testdata__llama3_2_3b": ("llama", 131072, T2T),
    "ome-testdata__llama3_2_90b_vision": ("mllama", 131072, VLM),
    "ome-testdata__llama4": ("llama4", 1048576, VLM),
    "ome-testdata__llama4_scout_17b_16e": ("llama4", 10485760, VLM),
    "ome-testdata__mistral": ("mistral", 32768, T2T),
    "ome-testdata__mistral_7b_instruct": ("mistral", 32768, T2T),
    "ome-testdata__mixtral": ("mixtral", 32768, T2T),
    "ome-testdata__qwen2.5_0.5b": ("qwen2", 32768, T2T),
    "ome-testdata__qwen2.5_1.5b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2.5_14b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2.5_32b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2.5_3b": ("qwen2", 32768, T2T),
    "ome-testdata__qwen2.5_72b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2.5_7b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2.5_vl_7b": ("qwen2_5_vl", 128000, VIDEO),  # mrope: no change
    "ome-testdata__qwen2_7b": ("qwen2", 131072, T2T),
    "ome-testdata__qwen2_vl_2b": ("qwen2_vl", 32768, VIDEO),
    "ome-testdata__qwen2_vl_7b": ("qwen2_vl", 32768, VIDEO),
    "ome-testdata__qwen3_30b": ("qwen3_moe", 40960, T2T),
    "ome-testdata__qwen3_4b": ("qwen3", 40960, T2T),
    "ome-testdata__qwen3_5_27b": ("qwen3_5", 262144, VIDEO),
    "ome-testdata__qwen3_5_35b_a3b": ("qwen3_5_moe", 262144, VIDEO),
    "ome-testdata__qwen3_vl_235b": ("qwen3_vl_moe", 262144, VIDEO),
    "ome-testdata__qwen_7b": ("qwen", 8192, T2T),  # seq_length, not the 32768 rotary cache
    "ome-testdata__stablelm_3b": ("stablelm", 4096, T2T),
    "ome-testdata__xverse_7b": ("xverse", 8192, T2T),
    "openai__gpt-oss-120b": ("gpt_oss", 131072, T2T),
    "openai__gpt-oss-20b": ("gpt_oss", 131072, T2T),
    "openbmb__MiniCPM3-4B": ("minicpm3", 32768, T2T),
}

# directory: (dtype, quantization)
PRECISION = {
    "Qwen__Qwen3-8B-FP8": ("bfloat16", "fp8"),
    "meta-llama__Meta-Llama-3.1-405B-Instruct-FP8": ("bfloat16", "fbgemm_fp8"),
    "moonshotai__Kimi-K2-Instruct": ("bfloat16", "fp8"),
    "ome-testdata__llama4": ("bfloat16", "fp8"),  # compressed-tensors, float 8-bit weights
    "openai__gpt-oss-20b": ("bfloat16", "mxfp4"),
    "Qwen__Qwen3-VL-2B-Instruct": ("bfloat16", None),  # text_config.dtype
    "ome-testdata__gemma3_text": ("bfloat16", None),
    "google__gemma-2-2b": ("float32", None),
    "THUDM__chatglm3-6b": ("float16", None),
    "ome-testdata__qwen_7b": (None, None),
}

OME_KEYS = {
    "modelType",
    "modelArchitecture",
    "parameterCount",
    "modelParameterSize",
    "maxTokens",
    "dtype",
    "quantization",
    "modelCapabilities",
    "modelFramework",
    "modelFormat",
}


def test_expectations_cover_the_whole_corpus() -> None:
    assert set(EXPECTED) == set(DIRS)


@pytest.mark.parametrize("directory", DIRS)
def test_corpus_config_parses_as_expected(directory: str) -> None:
    result = parse_model_dir(CORPUS / directory)
    family, max_tokens, capabilities = EXPECTED[directory]
    meta = result.metadata
    assert (result.family, meta.max_tokens, meta.model_capabilities) == (family, max_tokens, capabilities)
    assert result.family_known
    assert meta.parameter_count and meta.parameter_count > 0
    assert meta.model_parameter_size
    assert meta.model_framework.name == "transformers"
    assert meta.model_format.name == "safetensors"
    assert set(meta.model_dump(by_alias=True)) == OME_KEYS


@pytest.mark.parametrize(("directory", "expected"), sorted(PRECISION.items()))
def test_dtype_and_quantization(directory: str, expected: tuple[str | None, str | None]) -> None:
    meta = parse_model_dir(CORPUS / directory).metadata
    assert (meta.dtype, meta.quantization) == expected


def test_json_keys_exclude_parse_details() -> None:
    result = parse_model_dir(CORPUS / "ome-testdata__deepseek_v3")
    data = result.metadata.model_dump(mode="json", by_alias=True)
    assert set(data) == OME_KEYS
    assert data["modelFormat"] == {"name": "safetensors", "version": "1.0.0"}
    assert data["modelFramework"] == {"name": "transformers", "version": "4.46.3"}
    assert result.parameter_source == "estimate"
    assert any("assumed" in w for w in result.warnings)  # config only: format assumed, and said so
    assert any("multi-token-prediction" in w for w in result.warnings)


def test_whole_corpus_parses_well_under_a_second() -> None:
    start = time.perf_counter()
    for directory in DIRS:
        parse_model_dir(CORPUS / directory)
    assert time.perf_counter() - start < 1.0
