"""Config-only parameter estimates against published parameter counts.

`PUBLISHED` lists corpus configs whose true count is known with confidence: the count shown for
the model's safetensors weights on its model page or stated in its model card (quantization
scale tensors and DeepSeek-V3's multi-token-prediction layer not included). The estimate must be
within 2%, and today every one of them is reproduced exactly, which `test_..._exactly` pins so a
formula regression is caught at once. `RANGES` covers configs whose true count we do not know to
the parameter (edited fixtures, checkpoints whose published count includes parts the config does
not describe): only a plausible range is checked there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelferry.metadata import parse_config
from modelferry.metadata.config_view import load_json_file

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hf-configs"

PUBLISHED: list[tuple[str, int, str]] = [
    ("ome-testdata__llama3", 70_553_706_496, "Llama-3-70B"),
    ("ome-testdata__llama3_1", 70_553_706_496, "Llama-3.1-70B"),
    ("meta-llama__Meta-Llama-3.1-405B-Instruct-FP8", 405_853_388_800, "Llama-3.1-405B"),
    ("ome-testdata__llama3_2_1b", 1_235_814_400, "Llama-3.2-1B"),
    ("ome-testdata__llama3_2_3b", 3_212_749_824, "Llama-3.2-3B"),
    ("ome-testdata__llama3_2_11b_vision", 10_670_220_835, "Llama-3.2-11B-Vision"),
    ("ome-testdata__llama4_scout_17b_16e", 108_641_793_536, "Llama-4-Scout-17B-16E"),
    ("ome-testdata__llama4", 401_583_781_376, "Llama-4-Maverick-17B-128E"),
    ("HuggingFaceTB__SmolLM-1.7B", 1_711_376_384, "SmolLM-1.7B"),
    ("ome-testdata__qwen2.5_0.5b", 494_032_768, "Qwen2.5-0.5B"),
    ("ome-testdata__qwen2.5_1.5b", 1_543_714_304, "Qwen2.5-1.5B"),
    ("ome-testdata__qwen2.5_3b", 3_085_938_688, "Qwen2.5-3B"),
    ("ome-testdata__qwen2.5_7b", 7_615_616_512, "Qwen2.5-7B"),
    ("ome-testdata__qwen2_7b", 7_615_616_512, "Qwen2-7B"),
    ("ome-testdata__qwen2.5_14b", 14_770_033_664, "Qwen2.5-14B"),
    ("ome-testdata__qwen2.5_32b", 32_763_876_352, "Qwen2.5-32B"),
    ("ome-testdata__qwen2.5_72b", 72_706_203_648, "Qwen2.5-72B"),
    ("ome-testdata__qwen2_vl_2b", 2_208_985_600, "Qwen2-VL-2B"),
    ("ome-testdata__qwen2_vl_7b", 8_291_375_616, "Qwen2-VL-7B"),
    ("ome-testdata__qwen2.5_vl_7b", 8_292_166_656, "Qwen2.5-VL-7B"),
    ("ome-testdata__qwen3_4b", 4_022_468_096, "Qwen3-4B"),
    ("Qwen__Qwen3-8B-FP8", 8_190_735_360, "Qwen3-8B (FP8 weights counted as parameters)"),
    ("Qwen__Qwen3-Embedding-8B", 7_567_295_488, "Qwen3-Embedding-8B (no LM head)"),
    ("ome-testdata__qwen3_30b", 30_532_122_624, "Qwen3-30B-A3B"),
    ("Qwen__Qwen3-VL-2B-Instruct", 2_127_532_032, "Qwen3-VL-2B"),
    ("Qwen__Qwen3-VL-30B-A3B-Instruct", 31_070_754_032, "Qwen3-VL-30B-A3B"),
    ("ome-testdata__qwen_7b", 7_721_324_544, "Qwen-7B (v1)"),
    ("ome-testdata__mistral", 7_241_732_096, "Mistral-7B"),
    ("ome-testdata__mistral_7b_instruct", 7_241_732_096, "Mistral-7B-Instruct-v0.2"),
    ("intfloat__e5-mistral-7b-instruct", 7_110_660_096, "e5-mistral-7b (MistralModel, no LM head)"),
    ("ome-testdata__mixtral", 46_702_792_704, "Mixtral-8x7B"),
    ("google__gemma-7b", 8_537_680_896, "gemma-7b"),
    ("google__gemma-2-2b", 2_614_341_888, "gemma-2-2b"),
    ("google__gemma-2-2b-it", 2_614_341_888, "gemma-2-2b-it"),
    ("google__gemma-2-9b", 9_241_705_984, "gemma-2-9b"),
    ("ome-testdata__gemma3", 27_432_406_640, "gemma-3-27b"),
    ("ome-testdata__gemma3_text", 999_885_952, "gemma-3-1b"),
    ("microsoft__Phi-3-mini-128k-instruct", 3_821_079_552, "Phi-3-mini"),
    ("microsoft__Phi-3-small-8k-instruct", 7_392_272_384, "Phi-3-small"),
    ("microsoft__Phi-3-vision-128k-instruct", 4_146_621_440, "Phi-3-vision"),
    ("microsoft__Phi-3.5-MoE-instruct", 41_873_153_344, "Phi-3.5-MoE"),
    ("ome-testdata__deepseek_v3", 671_026_419_200, "DeepSeek-V3 (main model, MTP layer excluded)"),
    ("moonshotai__Kimi-K2-Instruct", 1_026_408_232_448, "Kimi-K2"),
    ("openai__gpt-oss-20b", 20_914_757_184, "gpt-oss-20b (model card: 20.91B)"),
    ("openai__gpt-oss-120b", 116_829_156_672, "gpt-oss-120b (model card: 116.83B)"),
    ("THUDM__chatglm3-6b", 6_243_584_000, "chatglm3-6b"),
    ("THUDM__glm-4-9b", 9_399_951_360, "glm-4-9b"),
    ("ome-testdata__baichuan2_7b", 7_505_973_248, "Baichuan2-7B"),
    ("ome-testdata__internlm2_7b", 7_737_708_544, "internlm2-7b"),
    ("ome-testdata__exaone_7.8b", 7_818_448_896, "EXAONE-3.5-7.8B"),
    ("ome-testdata__stablelm_3b", 2_795_443_200, "stablelm-3b-4e1t"),
    ("ome-testdata__command_r_35b", 34_980_831_232, "c4ai-command-r-v01"),
    ("llava-hf__llava-1.5-7b-hf", 7_063_427_072, "llava-1.5-7b-hf"),
    ("ome-testdata__bge_large", 335_141_888, "bge-large-en (BERT-large with pooler)"),
]

RANGES: list[tuple[str, int, int, str]] = [
    ("Alibaba-NLP__gte-Qwen2-7B-instruct", 7_000_000_000, 7_700_000_000, "LM head kept or not: unknown"),
    ("Skywork__Skywork-Reward-Llama-3.1-8B-v0.2", 7_400_000_000, 7_600_000_000, "published 7.5B"),
    ("ome-testdata__internlm2_reward", 7_200_000_000, 7_500_000_000, "7B-class reward model"),
    ("ome-testdata__xverse_7b", 7_000_000_000, 7_600_000_000, "XVERSE-7B"),
    ("openbmb__MiniCPM3-4B", 4_000_000_000, 4_150_000_000, "published 4.07B"),
    ("deepseek-ai__deepseek-vl2-tiny", 3_200_000_000, 3_500_000_000, "published 3.37B"),
    ("deepseek-ai__Janus-1.3B", 1_900_000_000, 2_200_000_000, "VQ tokenizer not in config"),
    ("liuhaotian__llava-v1.5-7b", 6_700_000_000, 7_100_000_000, "CLIP tower in another repo"),
    ("ome-testdata__llama3_2_90b_vision", 87_000_000_000, 90_000_000_000, "published 88.6B"),
    ("ome-testdata__qwen3_vl_235b", 230_000_000_000, 240_000_000_000, "Qwen3-VL-235B-A22B"),
    ("ome-testdata__clip_vision_model", 600_000_000, 660_000_000, "CLIP ViT-H/14 vision + projection"),
    ("ome-testdata__dbrx_132b", 120_000_000_000, 170_000_000_000, "edited fixture (48 layers)"),
    ("ome-testdata__qwen3_5_27b", 5_000_000_000, 40_000_000_000, "trimmed fixture, hybrid attention"),
    ("ome-testdata__qwen3_5_35b_a3b", 5_000_000_000, 45_000_000_000, "trimmed fixture, hybrid attention"),
]


def _estimate(directory: str) -> int:
    path = CORPUS / directory
    extra = {p.name: load_json_file(p) for p in path.glob("config_sentence_transformers.json")}
    result = parse_config(load_json_file(path / "config.json"), extra_files=extra, names=[directory])
    assert result.parameter_source == "estimate"
    assert result.metadata.parameter_count is not None
    return result.metadata.parameter_count


@pytest.mark.parametrize(("directory", "published", "model"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_estimate_is_within_two_percent_of_published_count(
    directory: str, published: int, model: str
) -> None:
    estimate = _estimate(directory)
    error = (estimate - published) / published
    assert abs(error) <= 0.02, f"{model}: estimate {estimate:,} vs published {published:,} ({error:+.3%})"


@pytest.mark.parametrize(("directory", "published", "model"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_estimate_reproduces_published_count_exactly(directory: str, published: int, model: str) -> None:
    assert _estimate(directory) == published, model


@pytest.mark.parametrize(("directory", "low", "high", "why"), RANGES, ids=[r[0] for r in RANGES])
def test_estimate_is_plausible_where_true_count_is_uncertain(
    directory: str, low: int, high: int, why: str
) -> None:
    estimate = _estimate(directory)
    assert low <= estimate <= high, f"{why}: {estimate:,} not in [{low:,}, {high:,}]"


def test_every_corpus_config_is_in_one_table() -> None:
    listed = (
        {p[0] for p in PUBLISHED} | {r[0] for r in RANGES} | {"hf-internal-testing__tiny-random-PhiModel"}
    )
    present = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert present == listed
