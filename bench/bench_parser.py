"""Benchmark the metadata parser (prints figures; not a test).

1. Parse every config of the test corpus (tests/data/hf-configs) with `parse_model_dir`.
2. Count parameters from the headers of a 100-shard model and compare with a baseline that only
   opens each shard and reads its 8-byte length. Two realistic layouts, written as sparse files
   (the header is real, the multi-GB data area is a hole, so nothing is allocated):
   - "llama-405b": Llama-3.1-405B's 1,137 BF16 tensors with their HF names, ~11 per shard;
   - "deepseek-v3": DeepSeek-V3's FP8 layout (every expert weight with its weight_scale_inv),
     ~91k tensors, ~900 per shard, so each header is ~100 KB of JSON.
   The page cache is warm for both sides (the files were just written), so the ratio is the cost
   of the JSON and its validation relative to the bare open/read.

Usage: .venv/bin/python bench/bench_parser.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelferry.metadata import count_safetensors_parameters, parse_model_dir  # noqa: E402

BYTES = {"BF16": 2, "F8_E4M3": 1, "F32": 4}


def llama_405b() -> Iterator[tuple[str, str, list[int]]]:
    h, inter, kv, vocab = 16384, 53248, 1024, 128256
    yield "model.embed_tokens.weight", "BF16", [vocab, h]
    for i in range(126):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", "BF16", [h]
        yield p + "self_attn.q_proj.weight", "BF16", [h, h]
        yield p + "self_attn.k_proj.weight", "BF16", [kv, h]
        yield p + "self_attn.v_proj.weight", "BF16", [kv, h]
        yield p + "self_attn.o_proj.weight", "BF16", [h, h]
        yield p + "post_attention_layernorm.weight", "BF16", [h]
        yield p + "mlp.gate_proj.weight", "BF16", [inter, h]
        yield p + "mlp.up_proj.weight", "BF16", [inter, h]
        yield p + "mlp.down_proj.weight", "BF16", [h, inter]
    yield "model.norm.weight", "BF16", [h]
    yield "lm_head.weight", "BF16", [vocab, h]


def deepseek_v3() -> Iterator[tuple[str, str, list[int]]]:
    h, moe, dense, vocab = 7168, 2048, 18432, 129280

    def fp8(name: str, rows: int, cols: int) -> Iterator[tuple[str, str, list[int]]]:
        yield name + ".weight", "F8_E4M3", [rows, cols]
        yield name + ".weight_scale_inv", "F32", [-(-rows // 128), -(-cols // 128)]

    yield "model.embed_tokens.weight", "BF16", [vocab, h]
    for i in range(62):  # 61 layers + the multi-token-prediction layer
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", "BF16", [h]
        yield p + "post_attention_layernorm.weight", "BF16", [h]
        yield from fp8(p + "self_attn.q_a_proj", 1536, h)
        yield p + "self_attn.q_a_layernorm.weight", "BF16", [1536]
        yield from fp8(p + "self_attn.q_b_proj", 128 * 192, 1536)
        yield from fp8(p + "self_attn.kv_a_proj_with_mqa", 576, h)
        yield p + "self_attn.kv_a_layernorm.weight", "BF16", [512]
        yield from fp8(p + "self_attn.kv_b_proj", 128 * 256, 512)
        yield from fp8(p + "self_attn.o_proj", h, 128 * 128)
        if i < 3:
            for proj, shape in (
                ("gate_proj", (dense, h)),
                ("up_proj", (dense, h)),
                ("down_proj", (h, dense)),
            ):
                yield from fp8(f"{p}mlp.{proj}", *shape)
            continue
        yield p + "mlp.gate.weight", "BF16", [256, h]
        yield p + "mlp.gate.e_score_correction_bias", "F32", [256]
        for e in ["shared_experts", *(f"experts.{j}" for j in range(256))]:
            for proj, shape in (("gate_proj", (moe, h)), ("up_proj", (moe, h)), ("down_proj", (h, moe))):
                yield from fp8(f"{p}mlp.{e}.{proj}", *shape)
    yield "model.norm.weight", "BF16", [h]
    yield "lm_head.weight", "BF16", [vocab, h]


def write_sharded(directory: Path, tensors: list[tuple[str, str, list[int]]], *, shards: int) -> list[Path]:
    """Write `shards` sparse safetensors files (real headers, holes for data) and an index."""
    per = -(-len(tensors) // shards)
    paths, weight_map = [], {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor, dtype, shape in tensors[s * per : (s + 1) * per]:
            size = BYTES[dtype]
            for dim in shape:
                size *= dim
            header[tensor] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            weight_map[tensor] = name
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        path = directory / name
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            f.truncate(8 + len(blob) + offset)  # sparse: the data area is a hole
        paths.append(path)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return paths


def open_and_read_length(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            f.read(8)


def os_open_and_read_length(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.read(fd, 8)
        finally:
            os.close(fd)


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def bench_corpus(repeat: int) -> None:
    corpus = ROOT / "tests" / "data" / "hf-configs"
    dirs = sorted(p for p in corpus.iterdir() if p.is_dir())
    seconds = timed(lambda: [parse_model_dir(d) for d in dirs], repeat)
    print(
        f"corpus: {len(dirs)} model directories parsed in {seconds * 1000:.1f} ms "
        f"({seconds / len(dirs) * 1e6:.0f} us each, median of {repeat})"
    )


def bench_shards(label: str, tensors: list[tuple[str, str, list[int]]], repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-parser-") as tmp:
        directory = Path(tmp)
        paths = write_sharded(directory, tensors, shards=100)
        header_kb = sum(struct.unpack("<Q", p.open("rb").read(8))[0] for p in paths) / len(paths) / 1024
        count = count_safetensors_parameters(paths)[0]
        baseline = timed(lambda: open_and_read_length(paths), repeat)
        raw = timed(lambda: os_open_and_read_length(paths), repeat)
        headers = timed(lambda: count_safetensors_parameters(paths), repeat)
        whole = timed(lambda: count_safetensors_parameters(directory), repeat)
        print(
            f"{label}: 100 shards, {len(tensors):,} tensors, {header_kb:.1f} KB header/shard, "
            f"{count:,} parameters"
        )
        rows = [
            ("open + read 8 bytes (baseline)", baseline),
            ("os.open + os.read 8 bytes", raw),
            ("header count (list of shards)", headers),
            ("header count (dir, via index)", whole),
        ]
        for name, seconds in rows:
            print(
                f"  {name:32s} {seconds * 1000:8.2f} ms  {seconds / 100 * 1e6:7.1f} us/shard  "
                f"{seconds / baseline:6.1f}x baseline"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bench_corpus(args.repeat)
    bench_shards("llama-405b", list(llama_405b()), args.repeat)
    bench_shards("deepseek-v3", list(deepseek_v3()), args.repeat)


if __name__ == "__main__":
    main()
