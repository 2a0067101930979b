"""Classes of config that OME's own parser tests cover and that a family table alone misses:
a language model nested in `llm_config`/`text_config`/`language_config`/`thinker_config` (with its
experts there), a vision config on an architecture no family knows, keys an estimate can derive,
`transformers_version` stated only in a nested config, and sizes rounded to three figures."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from modelferry.metadata import parse_config, parse_model_dir

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hf-configs"

H, LAYERS, VOCAB, HEADS, INTER = 64, 2, 100, 4, 128

# A small Llama-style language model under a model_type no family knows.
LM: dict[str, Any] = {
    "hidden_size": H,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "head_dim": H // HEADS,
    "intermediate_size": INTER,
    "vocab_size": VOCAB,
    "max_position_embeddings": 8192,
}
TOP = {"model_type": "brand_new_vlm", "architectures": ["BrandNewForConditionalGeneration"]}


def dense_count(*, intermediate: int = INTER) -> int:
    """Embeddings + LM head, per layer q/k/v/o + gated MLP + two RMSNorms, final norm."""
    per_layer = 4 * H * H + 3 * H * intermediate + 2 * H
    return 2 * VOCAB * H + LAYERS * per_layer + H


def moe_count(experts: int, expert_width: int, *, shared: int = 0, dense_layers: int = 0) -> int:
    attention_and_norms = 4 * H * H + 2 * H
    sparse = experts * 3 * H * expert_width + H * experts + (3 * H * shared if shared else 0)
    mlps = dense_layers * 3 * H * INTER + (LAYERS - dense_layers) * sparse
    return 2 * VOCAB * H + LAYERS * attention_and_norms + mlps + H


def nest(path: str, inner: dict[str, Any], **top: Any) -> dict[str, Any]:
    """`inner` placed at a dotted path ("llm_config", "thinker_config.text_config")."""
    config: dict[str, Any] = {**TOP, **top}
    node = config
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = inner
    return config


NESTINGS = ["llm_config", "text_config", "language_config", "thinker_config.text_config"]
EXPERT_KEYS = ["num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts"]


# --- 1. nested language models and their experts ------------------------------------------------


@pytest.mark.parametrize("path", NESTINGS)
@pytest.mark.parametrize("expert_key", EXPERT_KEYS)
def test_experts_of_a_nested_language_model_are_counted(path: str, expert_key: str) -> None:
    inner = {**LM, expert_key: 8, "moe_intermediate_size": 32}
    result = parse_config(nest(path, inner))
    assert result.metadata.parameter_count == moe_count(8, 32)
    assert result.parameter_source == "estimate"
    assert result.metadata.max_tokens == 8192


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, dense_count()),
        ({"num_local_experts": 4}, moe_count(4, INTER)),  # experts as wide as intermediate_size
        ({"n_routed_experts": 8, "moe_intermediate_size": 32}, moe_count(8, 32)),
        (
            {"n_routed_experts": 8, "moe_intermediate_size": 32, "n_shared_experts": 2},
            moe_count(8, 32, shared=64),
        ),
        (
            {"num_experts": 8, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48},
            moe_count(8, 32, shared=48),
        ),
        (
            {"n_routed_experts": 8, "moe_intermediate_size": 32, "first_k_dense_replace": 1},
            moe_count(8, 32, dense_layers=1),
        ),
        (
            {"num_experts": 8, "moe_intermediate_size": 32, "mlp_only_layers": [0]},
            moe_count(8, 32, dense_layers=1),
        ),
        ({"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32}, moe_count(8, 32)),
    ],
)
def test_expert_layouts_nested_or_flat_count_the_same(extra: dict[str, Any], expected: int) -> None:
    nested = parse_config(nest("llm_config", {**LM, **extra}))
    flat = parse_config({**TOP, **LM, **extra})
    assert nested.metadata.parameter_count == flat.metadata.parameter_count == expected


@pytest.mark.parametrize(
    ("moved_to_top", "expected_tokens"),
    [
        ("vocab_size", 8192),
        ("hidden_size", 8192),
        ("num_hidden_layers", 8192),
        ("max_position_embeddings", 8192),
    ],
)
def test_keys_the_nested_config_lacks_are_read_from_the_top_level(
    moved_to_top: str, expected_tokens: int
) -> None:
    inner = {k: v for k, v in LM.items() if k != moved_to_top}
    result = parse_config(nest("llm_config", inner, **{moved_to_top: LM[moved_to_top]}))
    assert result.metadata.parameter_count == dense_count()
    assert result.metadata.max_tokens == expected_tokens


@pytest.mark.parametrize(
    ("top", "inner", "expected_tokens"),
    [
        ({"max_sequence_length": 131072}, {"max_position_embeddings": 262144}, 262144),  # nested wins
        ({"max_sequence_length": 131072}, {"max_position_embeddings": None}, 131072),
        ({"max_position_embeddings": 1024}, {"max_position_embeddings": 65536}, 65536),
    ],
)
def test_max_tokens_prefers_the_language_model(top: dict, inner: dict, expected_tokens: int) -> None:
    lm = {k: v for k, v in {**LM, **inner}.items() if v is not None}
    assert parse_config(nest("llm_config", lm, **top)).metadata.max_tokens == expected_tokens


def test_a_nested_model_type_we_know_counts_the_language_model_with_its_family() -> None:
    qwen2 = {**LM, "model_type": "qwen2"}
    wrapped = parse_config({**nest("llm_config", qwen2), "architectures": ["InternVLChatModel"]})
    alone = parse_config({**qwen2, "architectures": ["Qwen2ForCausalLM"]})
    assert wrapped.metadata.parameter_count == alone.metadata.parameter_count
    assert (
        wrapped.metadata.parameter_count != parse_config({**TOP, **LM}).metadata.parameter_count
    )  # q/k/v bias
    assert any("estimated as qwen2 (llm_config.model_type)" in w for w in wrapped.warnings)


# --- 2. vision on architectures no family knows ------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (nest("text_config", LM, vision_config={"hidden_size": 1024}), ["IMAGE_TEXT_TO_TEXT"]),
        (
            nest(
                "llm_config",
                LM,
                architectures=["SomeVisionModel"],
                vision_config={"architectures": ["RADIOModel"]},
            ),
            ["IMAGE_TEXT_TO_TEXT"],
        ),
        (
            nest("language_config", LM, architectures=["Reasoning_V3"], vision_config={}),
            ["IMAGE_TEXT_TO_TEXT"],
        ),
        ({**TOP, **LM, "vision_config": {"model_type": "unheard_of_vit"}}, ["IMAGE_TEXT_TO_TEXT"]),
        (
            nest("llm_config", LM, vision_config={}, sound_config={"model_type": "parakeet"}),
            ["IMAGE_TEXT_TO_TEXT", "AUDIO_TEXT_TO_TEXT"],
        ),
        (
            {
                **TOP,
                "architectures": ["BrandNewOmniModel"],
                "thinker_config": {
                    "text_config": LM,
                    "vision_config": {},
                    "audio_config": {},
                    "video_token_index": 7,
                },
            },
            ["IMAGE_TEXT_TO_TEXT", "VIDEO_TEXT_TO_TEXT", "AUDIO_TEXT_TO_TEXT"],
        ),
        # a dual encoder stays an embedding model, and now says it embeds images too
        (
            {
                "model_type": "siglip",
                "architectures": ["SiglipModel"],
                "text_config": LM,
                "vision_config": {},
            },
            ["TEXT_TO_EMBEDDING", "IMAGE_TEXT_TO_EMBEDDING"],
        ),
        (
            nest("text_config", LM, architectures=["BrandNewModel"], vision_config={}, projection_dim=64),
            ["TEXT_TO_EMBEDDING", "IMAGE_TEXT_TO_EMBEDDING"],
        ),
        ({**TOP, **LM, "architectures": ["BrandNewModel"]}, ["TEXT_TO_EMBEDDING"]),  # no vision: as before
    ],
)
def test_a_vision_config_gives_vision_whatever_the_architecture(config: dict, expected: list[str]) -> None:
    result = parse_config(config)
    assert not result.family_known
    assert result.metadata.model_capabilities == expected
    if "IMAGE_TEXT_TO_TEXT" in expected:
        assert "VISION" in result.legacy_capabilities()


def test_a_vision_wrapper_named_model_keeps_its_lm_head_and_says_the_tower_is_not_counted() -> None:
    headed = parse_config(nest("text_config", LM, vision_config={"hidden_size": 1024}))
    named_model = parse_config(nest("text_config", LM, architectures=["SomeVisionModel"], vision_config={}))
    assert headed.metadata.parameter_count == named_model.metadata.parameter_count == dense_count()
    assert any("vision tower not counted" in w for w in named_model.warnings)


# --- 3. keys an estimate can derive --------------------------------------------------------------


def without(*keys: str, **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**TOP, **LM, **changes}.items() if k not in keys}


@pytest.mark.parametrize(
    ("config", "derived", "expected"),
    [
        (without(), (), dense_count()),
        (without("num_attention_heads"), ("num_attention_heads",), dense_count()),  # from head_dim
        (without("head_dim"), ("head_dim",), dense_count()),  # hidden_size / heads
        (without("num_attention_heads", "head_dim"), ("num_attention_heads",), dense_count()),  # full MHA
        (
            without("num_attention_heads", "head_dim", num_key_value_heads=1),
            ("num_attention_heads",),
            dense_count(),  # the k/v width cannot be known: counted as full multi-head attention
        ),
        (without("intermediate_size"), ("intermediate_size",), dense_count(intermediate=4 * H)),
        (
            without("num_attention_heads", "head_dim", "intermediate_size"),
            ("num_attention_heads", "intermediate_size"),
            dense_count(intermediate=4 * H),
        ),
        # experts of moe_intermediate_size and no dense layer: intermediate_size is not needed
        (
            without("intermediate_size", num_experts=8, moe_intermediate_size=32),
            (),
            moe_count(8, 32),
        ),
    ],
)
def test_missing_keys_are_derived_and_named(config: dict, derived: tuple[str, ...], expected: int) -> None:
    for placed in (config, nest("llm_config", {k: v for k, v in config.items() if k not in TOP})):
        result = parse_config(placed)
        assert result.metadata.parameter_count == expected
        assert result.parameter_source == "estimate"
        assert result.derived == derived
        for key in derived:
            assert any(
                w.startswith(f"{key} not in the config, derived for the estimate") for w in result.warnings
            )


@pytest.mark.parametrize("key", ["vocab_size", "hidden_size", "num_hidden_layers"])
def test_keys_without_a_stand_in_still_stop_the_estimate(key: str) -> None:
    result = parse_config(without(key))
    assert result.metadata.parameter_count is None and result.parameter_source == "none"
    assert any("parameter count not estimated" in w and key in w for w in result.warnings)


def test_known_families_use_their_own_defaults_and_derive_nothing() -> None:
    llama = {k: v for k, v in LM.items() if k not in ("num_attention_heads", "head_dim")}
    result = parse_config({"model_type": "llama", "architectures": ["LlamaForCausalLM"], **llama})
    assert result.metadata.parameter_count == dense_count()  # transformers' 32 heads, full MHA
    assert result.derived == ()


# --- 4. transformers_version wherever it is stated ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({**TOP, **LM, "transformers_version": "4.30.0"}, "4.30.0"),
        (nest("llm_config", {**LM, "transformers_version": "4.55.4"}), "4.55.4"),
        (nest("text_config", {**LM, "transformers_version": "4.40.0"}), "4.40.0"),
        (nest("language_config", {**LM, "transformers_version": "4.38.0"}), "4.38.0"),
        (nest("thinker_config.text_config", {**LM, "transformers_version": "4.52.0"}), "4.52.0"),
        (
            {**TOP, "thinker_config": {"text_config": LM, "transformers_version": "4.51.0"}},
            "4.51.0",
        ),
        (  # a known family with the version only in its text_config
            {"model_type": "qwen2_vl", "text_config": {**LM, "transformers_version": "4.49.0"}},
            "4.49.0",
        ),
        (
            nest("llm_config", {**LM, "transformers_version": "4.55.4"}, transformers_version="4.56.0"),
            "4.56.0",
        ),
        ({**TOP, **LM}, None),
    ],
)
def test_transformers_version_is_found_in_nested_configs(config: dict, expected: str | None) -> None:
    assert parse_config(copy.deepcopy(config)).metadata.model_framework.version == expected


# --- 5. modelParameterSize on real configs -------------------------------------------------------


@pytest.mark.parametrize(
    ("directory", "count", "size"),
    [
        ("ome-testdata__llama3_2_11b_vision", 10_670_220_835, "10.7B"),
        ("ome-testdata__mixtral", 46_702_792_704, "46.7B"),
        ("ome-testdata__llama4", 401_583_781_376, "402B"),
        ("openai__gpt-oss-120b", 116_829_156_672, "117B"),
        ("ome-testdata__llama3_2_1b", 1_235_814_400, "1.24B"),
        ("ome-testdata__qwen2.5_0.5b", 494_032_768, "494M"),
        ("ome-testdata__llama3_1", 70_553_706_496, "70.6B"),
        ("moonshotai__Kimi-K2-Instruct", 1_026_408_232_448, "1.03T"),
    ],
)
def test_parameter_size_of_corpus_models_is_rounded_not_truncated(
    directory: str, count: int, size: str
) -> None:
    meta = parse_model_dir(CORPUS / directory).metadata
    assert (meta.parameter_count, meta.model_parameter_size) == (count, size)
