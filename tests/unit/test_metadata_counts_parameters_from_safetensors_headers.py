"""Exact parameter counts from safetensors headers, on models the tests write themselves.

Real files come from `safetensors.numpy.save_file`; dtypes numpy lacks (BF16, F8_E4M3) are written
byte-for-byte in the same layout by `write_raw`. Tiny Llama and Mixtral checkpoints with the real
tensor names check that the header count equals the config formula, tensor for tensor.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelferry.errors import MetadataParseError
from modelferry.metadata import PackingRules, count_safetensors_parameters, parse_config, parse_model_dir

BITS = {"BF16": 16, "F16": 16, "F32": 32, "F8_E4M3": 8, "U8": 8, "I32": 32, "I8": 8}


def write_raw(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file of zeros with the given {name: (dtype, shape)}."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = (int(np.prod(shape, dtype=np.int64)) * BITS[dtype] + 7) // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def llama_tensors(
    *, vocab: int, hidden: int, inter: int, layers: int, heads: int, kv: int, tied: bool, experts: int = 0
) -> dict[str, list[int]]:
    hd = hidden // heads
    t: dict[str, list[int]] = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden]}
    if not tied:
        t["lm_head.weight"] = [vocab, hidden]
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = [heads * hd, hidden]
        t[p + "self_attn.k_proj.weight"] = [kv * hd, hidden]
        t[p + "self_attn.v_proj.weight"] = [kv * hd, hidden]
        t[p + "self_attn.o_proj.weight"] = [hidden, heads * hd]
        t[p + "input_layernorm.weight"] = [hidden]
        t[p + "post_attention_layernorm.weight"] = [hidden]
        if experts:
            t[p + "block_sparse_moe.gate.weight"] = [experts, hidden]
            for e in range(experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                t[q + "w1.weight"], t[q + "w3.weight"], t[q + "w2.weight"] = (
                    [inter, hidden],
                    [inter, hidden],
                    [hidden, inter],
                )
        else:
            t[p + "mlp.gate_proj.weight"] = [inter, hidden]
            t[p + "mlp.up_proj.weight"] = [inter, hidden]
            t[p + "mlp.down_proj.weight"] = [hidden, inter]
    return t


def save_numpy(path: Path, shapes: dict[str, list[int]], dtype: type = np.float16) -> None:
    save_file({name: np.zeros(shape, dtype=dtype) for name, shape in shapes.items()}, str(path))


def numel(shapes: dict[str, list[int]]) -> int:
    return sum(int(np.prod(s)) for s in shapes.values())


LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 40,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "torch_dtype": "float16",
    "transformers_version": "4.46.0",
}


@pytest.mark.parametrize(
    ("config", "experts"),
    [
        ({**LLAMA, "tie_word_embeddings": False}, 0),
        ({**LLAMA, "tie_word_embeddings": True}, 0),
        (
            {
                **LLAMA,
                "model_type": "mixtral",
                "architectures": ["MixtralForCausalLM"],
                "num_local_experts": 4,
            },
            4,
        ),
    ],
    ids=["llama", "llama-tied", "mixtral"],
)
def test_single_file_count_is_exact_and_equals_config_estimate(
    tmp_path: Path, config: dict, experts: int
) -> None:
    shapes = llama_tensors(
        vocab=64,
        hidden=16,
        inter=40,
        layers=3,
        heads=4,
        kv=2,
        tied=config.get("tie_word_embeddings", False),
        experts=experts,
    )
    save_numpy(tmp_path / "model.safetensors", shapes)
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = parse_model_dir(tmp_path)
    assert result.parameter_source == "safetensors"
    assert result.metadata.parameter_count == numel(shapes)
    assert result.weight_dtypes == {"F16": numel(shapes)}
    assert parse_config(config).metadata.parameter_count == numel(shapes)  # the formula agrees
    assert not [w for w in result.warnings if "differs" in w]


def test_sharded_model_with_index_counts_every_shard(tmp_path: Path) -> None:
    shapes = llama_tensors(vocab=64, hidden=16, inter=40, layers=4, heads=4, kv=2, tied=False)
    names = sorted(shapes)
    shards = [names[0::3], names[1::3], names[2::3]]
    weight_map = {}
    for i, part in enumerate(shards, 1):
        file = f"model-{i:05d}-of-00003.safetensors"
        save_numpy(tmp_path / file, {n: shapes[n] for n in part}, np.float32)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": 4 * numel(shapes)}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, "num_hidden_layers": 4, "torch_dtype": None}))
    result = parse_model_dir(tmp_path)
    assert result.metadata.parameter_count == numel(shapes)
    assert result.metadata.dtype == "float32"  # from the weights: the config has none
    assert len(result.weight_files) == 3
    assert count_safetensors_parameters(tmp_path) == (numel(shapes), {"F32": numel(shapes)})
    assert count_safetensors_parameters(sorted(tmp_path.glob("*.safetensors")))[0] == numel(shapes)


def test_without_index_every_top_level_file_is_counted(tmp_path: Path) -> None:
    save_numpy(tmp_path / "a.safetensors", {"x": [3, 5]})
    save_numpy(tmp_path / "b.safetensors", {"y": [7]}, np.int8)
    assert count_safetensors_parameters(tmp_path) == (22, {"F16": 15, "I8": 7})
    assert count_safetensors_parameters(tmp_path / "b.safetensors") == (7, {"I8": 7})


def test_mixed_dtypes_bf16_and_fp8_with_scales(tmp_path: Path) -> None:
    write_raw(
        tmp_path / "model.safetensors",
        {
            "embed.weight": ("BF16", [10, 8]),
            "layer.weight": ("F8_E4M3", [8, 8]),
            "layer.weight_scale_inv": ("F32", [1, 1]),  # FP8 block scale: not a parameter
            "layer.input_scale": ("F32", []),
            "norm.weight": ("BF16", [8]),
        },
    )
    assert count_safetensors_parameters(tmp_path / "model.safetensors") == (152, {"BF16": 88, "F8_E4M3": 64})


@pytest.mark.parametrize(
    ("tensors", "rules", "expected"),
    [
        # GPTQ 4-bit: qweight [in/8, out] int32 -> in*out values; qzeros/scales/g_idx are metadata.
        (
            {
                "l.qweight": ("I32", [4, 16]),
                "l.qzeros": ("I32", [1, 2]),
                "l.scales": ("F16", [1, 16]),
                "l.g_idx": ("I32", [32]),
                "l.bias": ("F16", [16]),
            },
            PackingRules(),
            32 * 16 + 16,
        ),
        # GPTQ 8-bit: four values per int32.
        (
            {"l.qweight": ("I32", [8, 16]), "l.scales": ("F16", [1, 16])},
            PackingRules(int32_values=4),
            32 * 16,
        ),
        # MXFP4 (gpt-oss): *_blocks hold two values per byte; *_scales are metadata.
        (
            {"e.gate_up_proj_blocks": ("U8", [2, 6, 1, 16]), "e.gate_up_proj_scales": ("U8", [2, 6, 1])},
            PackingRules(),
            2 * 6 * 32,
        ),
        # bitsandbytes nf4: a uint8 weight of n/2 bytes; quant-state tensors are metadata.
        (
            {
                "l.weight": ("U8", [64, 1]),
                "l.weight.absmax": ("F32", [2]),
                "l.weight.quant_map": ("F32", [16]),
                "l.weight.quant_state.bitsandbytes__nf4": ("U8", [40]),
            },
            PackingRules(uint8_weights_are_fp4=True),
            128,
        ),
        # compressed-tensors pack-quantized int4.
        (
            {
                "l.weight_packed": ("I32", [16, 2]),
                "l.weight_scale": ("BF16", [16, 1]),
                "l.weight_shape": ("I32", [2]),
            },
            PackingRules(int32_values=8),
            16 * 16,
        ),
        # A plain uint8 tensor is not unpacked unless the rules say so.
        ({"l.weight": ("U8", [4, 4])}, PackingRules(), 16),
    ],
    ids=["gptq4", "gptq8", "mxfp4", "bnb-nf4", "ct-int4", "plain-u8"],
)
def test_packed_weights_count_unpacked_and_metadata_is_excluded(
    tmp_path: Path, tensors: dict, rules: PackingRules, expected: int
) -> None:
    write_raw(tmp_path / "m.safetensors", tensors)
    assert count_safetensors_parameters(tmp_path / "m.safetensors", rules=rules)[0] == expected


def test_quantization_config_sets_the_unpacking(tmp_path: Path) -> None:
    config = {**LLAMA, "quantization_config": {"quant_method": "gptq", "bits": 8}}
    write_raw(tmp_path / "model.safetensors", {"l.qweight": ("I32", [8, 16]), "l.scales": ("F16", [1, 16])})
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = parse_model_dir(tmp_path)
    assert (result.metadata.parameter_count, result.metadata.quantization) == (32 * 16, "int8")


def test_tensor_in_two_files_is_counted_once_and_reported(tmp_path: Path) -> None:
    save_numpy(tmp_path / "model-1-of-2.safetensors", {"w": [4, 4], "b": [4]})
    save_numpy(tmp_path / "model-2-of-2.safetensors", {"w": [4, 4], "c": [2]})
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    result = parse_model_dir(tmp_path)
    assert result.metadata.parameter_count == 22
    assert any("more than one file" in w for w in result.warnings)


def test_ome_tiny_phi_fixture_counts_its_duplicated_shards_once() -> None:
    corpus = (
        Path(__file__).resolve().parents[1]
        / "data"
        / "hf-configs"
        / "hf-internal-testing__tiny-random-PhiModel"
    )
    result = parse_model_dir(corpus)
    assert result.parameter_source == "safetensors"
    assert result.metadata.parameter_count == 46_282  # each shard is the whole model; OME counts ~94K
    assert (
        result.metadata.parameter_count
        == parse_config(json.loads((corpus / "config.json").read_text())).metadata.parameter_count
    )


def test_multi_token_prediction_layers_are_not_counted(tmp_path: Path) -> None:
    config = {"model_type": "deepseek_v3", "num_hidden_layers": 1, "num_nextn_predict_layers": 1}
    save_numpy(
        tmp_path / "model.safetensors",
        {
            "model.embed_tokens.weight": [8, 4],
            "model.layers.0.mlp.weight": [4, 4],
            "model.layers.1.eh_proj.weight": [4, 8],
        },
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = parse_model_dir(tmp_path)
    assert result.metadata.parameter_count == 48
    assert any("multi-token-prediction tensors" in w for w in result.warnings)


def test_consolidated_copy_beside_hf_shards_is_ignored(tmp_path: Path) -> None:
    save_numpy(tmp_path / "model.safetensors", {"w": [4, 4]})
    save_numpy(tmp_path / "consolidated.safetensors", {"layers.0.w": [4, 4]})
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    assert parse_model_dir(tmp_path).metadata.parameter_count == 16


def test_missing_shard_named_by_index_is_an_error(tmp_path: Path) -> None:
    save_numpy(tmp_path / "model-00001-of-00002.safetensors", {"a": [2]})
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    with pytest.raises(MetadataParseError, match="1 of 2 shards are missing"):
        parse_model_dir(tmp_path)


def test_index_without_any_shard_falls_back_to_the_estimate(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    result = parse_model_dir(tmp_path)
    assert result.parameter_source == "estimate"
    assert result.metadata.model_format.name == "safetensors"
    assert not any("assumed" in w for w in result.warnings)  # the index says safetensors


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["pytorch_model.bin"], ("pytorch", "1.0.0")),
        (["model-q4.gguf"], ("gguf", None)),
        ([], ("safetensors", "1.0.0")),
    ],
)
def test_model_format_without_safetensors(tmp_path: Path, files: list[str], expected: tuple) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"\0")
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    fmt = parse_model_dir(tmp_path).metadata.model_format
    assert (fmt.name, fmt.version) == expected
