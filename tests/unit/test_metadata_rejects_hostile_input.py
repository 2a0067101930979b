"""Malformed or hostile model files raise MetadataParseError naming the file and the problem;
nothing else ever escapes the parser (table of known attacks, then seeded fuzzing)."""

from __future__ import annotations

import copy
import json
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelferry.errors import MetadataParseError
from modelferry.metadata import count_safetensors_parameters, parse_config, parse_model_dir

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hf-configs"
GOOD = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
}


def safetensors_bytes(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def entry(dtype: str = "F32", shape: Any = (2,), offsets: Any = (0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"[1, 2, 3]", "must be a JSON object, got array"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"hidden_size": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (json.dumps({**GOOD, "hidden_size": -1}).encode(), "hidden_size: -1 is out of range"),
        (json.dumps({**GOOD, "hidden_size": True}).encode(), "hidden_size: expected an integer, got boolean"),
        (
            json.dumps({**GOOD, "hidden_size": "4096"}).encode(),
            "hidden_size: expected an integer, got string",
        ),
        (
            json.dumps({**GOOD, "hidden_size": 1e300}).encode(),
            "hidden_size: 1e+300 is out of range (1..10000000)",
        ),
        (
            json.dumps({**GOOD, "num_hidden_layers": 10**12}).encode(),
            "num_hidden_layers: 1000000000000 is out of range",
        ),
        (json.dumps({**GOOD, "max_position_embeddings": 2**40}).encode(), "max_position_embeddings"),
        (
            b'{"model_type": "llama", "max_position_embeddings": 4096,'
            b' "rope_scaling": {"type": "yarn", "factor": 1e999}}',
            "rope_scaling.factor: inf is out of range",
        ),
        (
            json.dumps(
                {**GOOD, "max_position_embeddings": 2**30, "rope_scaling": {"type": "yarn", "factor": 8}}
            ).encode(),
            "beyond 2147483647",
        ),
        (json.dumps({**GOOD, "architectures": 5}).encode(), "architectures: expected a list of strings"),
        (json.dumps({**GOOD, "text_config": []}).encode(), "text_config: expected an object, got array"),
        (
            json.dumps({**GOOD, "vision_config": {"depth": -3}, "model_type": "qwen2_vl"}).encode(),
            "vision_config.depth",
        ),
        (
            json.dumps({**GOOD, "quantization_config": "fp8"}).encode(),
            "quantization_config: expected an object",
        ),
        (json.dumps({**GOOD, "model_type": ["llama"]}).encode(), "model_type: expected a string, got array"),
    ],
)
def test_bad_config_json_is_reported(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(MetadataParseError) as err:
        parse_model_dir(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: None, "config.json: file not found"),
        (lambda p: (p / "config.json").mkdir(), "is a directory"),
        (
            lambda p: (p / "config.json").write_bytes(b" " * (16 * 1024 * 1024 + 1)),
            "more than the 16777216 allowed",
        ),
    ],
)
def test_unreadable_config_is_reported(tmp_path: Path, build: Callable[[Path], Any], message: str) -> None:
    build(tmp_path)
    with pytest.raises(MetadataParseError, match=message):
        parse_model_dir(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MetadataParseError, match="not a directory"):
        parse_model_dir(tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02", "too short for a safetensors file"),
        (safetensors_bytes({"a": entry()}, bytes(8), length=10**6), "runs past the end"),
        (safetensors_bytes(b"{}", length=2**40), "more than the 104857600 allowed"),
        (safetensors_bytes(b"\x00\x01garbage"), "invalid JSON"),
        (safetensors_bytes(b"[1]"), "header must be a JSON object"),
        (safetensors_bytes(b"[" * 50_000 + b"]" * 50_000), "nested too deeply"),
        (safetensors_bytes({"a": [1]}, bytes(8)), "entry must be an object"),
        (safetensors_bytes({"a": entry(shape=(-2,))}, bytes(8)), "bad dimension -2"),
        (safetensors_bytes({"a": entry(shape=(2.0,))}, bytes(8)), "bad dimension 2.0"),
        (safetensors_bytes({"a": entry(shape=(True,))}, bytes(8)), "bad dimension True"),
        (
            safetensors_bytes({"a": {"dtype": "F32", "shape": "22", "data_offsets": [0, 8]}}, bytes(8)),
            "shape must be a list",
        ),
        (safetensors_bytes({"a": entry(dtype=7)}, bytes(8)), "dtype must be a string"),
        (safetensors_bytes({"a": entry(offsets=(0,))}, bytes(8)), "data_offsets must be two integers"),
        (safetensors_bytes({"a": entry(offsets=(0, 80))}, bytes(8)), "outside the 8-byte data area"),
        (safetensors_bytes({"a": entry(offsets=(-8, 0))}, bytes(8)), "outside"),
        (safetensors_bytes({"a": entry(shape=(3,))}, bytes(8)), "do not match shape"),
        (safetensors_bytes({"a": entry(shape=(10**30,), offsets=(0, 8))}, bytes(8)), "do not match shape"),
        (safetensors_bytes({"a": entry(), "b": entry(offsets=(4, 12))}, bytes(16)), "overlap at byte 4"),
        (safetensors_bytes({"a": entry(), "b": entry(offsets=(0, 8))}, bytes(16)), "overlap"),
        (safetensors_bytes({"a": entry(), "b": entry(offsets=(12, 20))}, bytes(20)), "leave a gap"),
        (safetensors_bytes({"a": entry()}, bytes(12)), "cover 8 bytes but the data area is 12"),
        (safetensors_bytes({"__metadata__": {"format": 1}, "a": entry()}, bytes(8)), "__metadata__ must map"),
        (safetensors_bytes({"a": entry(dtype="Q9", shape=(10**6,))}, bytes(8)), "larger than its data"),
    ],
)
def test_bad_safetensors_header_is_reported(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(MetadataParseError) as err:
        count_safetensors_parameters(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([], "must be a JSON object"),
        ({"weight_map": []}, "weight_map must be a non-empty object"),
        ({"weight_map": {"a": "../../etc/passwd.safetensors"}}, "is not a plain file name"),
        ({"weight_map": {"a": "/abs/model.safetensors"}}, "is not a plain file name"),
        ({"weight_map": {"a": "model.bin"}}, "must name a .safetensors file"),
        ({"weight_map": {"a": 3}}, "must name a .safetensors file"),
    ],
)
def test_bad_index_is_reported(tmp_path: Path, index: Any, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(GOOD))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(MetadataParseError, match=message):
        parse_model_dir(tmp_path)


# --- fuzzing: only MetadataParseError or a result may come out ---------------------------------

HOSTILE_VALUES: list[Any] = [
    None,
    -1,
    0,
    1,
    2**63,
    10**40,
    -(10**40),
    1.5,
    1e308,
    -1e308,
    float("inf"),
    float("nan"),
    True,
    False,
    "",
    "x" * 600,
    "4096",
    [],
    [1, -1],
    [[[]]],
    {},
    {"a": {}},
    {"type": "yarn", "factor": 1e6},
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list) and len(node) <= 8:
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _mutate(config: dict, rng: random.Random) -> Any:
    config = copy.deepcopy(config)
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(_paths(config)[1:] or [("model_type",)])
        target = config
        for step in path[:-1]:
            target = target[step]
        value = rng.choice(HOSTILE_VALUES)
        if isinstance(target, dict) and rng.random() < 0.15:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = copy.deepcopy(value)
    return config if rng.random() > 0.02 else rng.choice(HOSTILE_VALUES)


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except MetadataParseError:
        return "error"
    return "ok"


def test_mutated_corpus_configs_give_a_result_or_a_metadata_error() -> None:
    rng = random.Random(20261122)
    configs = [json.loads((p / "config.json").read_text()) for p in sorted(CORPUS.iterdir()) if p.is_dir()]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        mutated = _mutate(rng.choice(configs), rng)
        outcomes[_outcome(lambda m=mutated: parse_config(m))] += 1  # type: ignore[misc]
    assert outcomes["ok"] > 100 and outcomes["error"] > 100  # both paths were exercised


def test_random_and_mutated_headers_give_a_result_or_a_metadata_error(tmp_path: Path) -> None:
    rng = random.Random(7)
    valid = safetensors_bytes(
        {
            "__metadata__": {"format": "pt"},
            "w": entry("F16", (2, 3), (0, 12)),
            "b": entry("F32", (3,), (12, 24)),
        },
        bytes(24),
    )
    path = tmp_path / "model.safetensors"
    outcomes = {"ok": 0, "error": 0}
    for i in range(600):
        if i % 3 == 0:
            data = rng.randbytes(rng.randint(0, 64))
        elif i % 3 == 1:
            data = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = valid[: rng.randrange(len(valid) + 1)]
        path.write_bytes(data)
        outcomes[_outcome(lambda: count_safetensors_parameters(path))] += 1
    assert outcomes["error"] > 300 and outcomes["ok"] > 0
