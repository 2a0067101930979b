"""Edge cases next to test_metadata_rejects_hostile_input.py: a safetensors header that claims
exabytes, headers and data cut short, config.json files that are sparse giants or nested objects,
and the NaN / Infinity literals Python's json module accepts. Each gives a MetadataParseError that
names the file and the problem, without reading (or allocating) what the file only claims to hold.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelferry.errors import MetadataParseError
from modelferry.metadata import count_safetensors_parameters, parse_model_dir

GOOD = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
}
ONE_TENSOR = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
MEMORY_BOUND = 4 * 1024 * 1024  # bytes a refusal may allocate, whatever the file claims


def safetensors_bytes(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def config_with(text: str) -> bytes:
    """GOOD with `text` spliced in as extra members, written the way a JSON encoder might."""
    return (json.dumps(GOOD)[:-1] + ", " + text + "}").encode()


@pytest.fixture
def peak_memory() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


FULL = safetensors_bytes(ONE_TENSOR, bytes(8))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (safetensors_bytes(b"{}", length=8 * 2**60), "header length 9223372036854775808 is more than"),
        (safetensors_bytes(b"{}", length=2**64 - 1), "header length 18446744073709551615 is more than"),
        (safetensors_bytes(b"{}", length=100 * 1024 * 1024), "runs past the end of the 10-byte file"),
        (struct.pack("<Q", 100), "runs past the end of the 8-byte file"),
        (b"\x00" * 7, "7 bytes is too short"),
        (b"", "0 bytes is too short"),
        (FULL[:20], "runs past the end of the 20-byte file"),  # cut inside the header
        (FULL[:-3], "outside the 5-byte data area"),  # cut inside the data
        (safetensors_bytes(b"", length=0), "invalid JSON"),
        (safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]'), "invalid JSON"),
        (
            safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}', bytes(8)),
            "bad dimension nan",
        ),
        (
            safetensors_bytes(
                b'{"a": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 8]}}', bytes(8)
            ),
            "bad dimension inf",
        ),
        (
            safetensors_bytes(
                b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, Infinity]}}', bytes(8)
            ),
            "data_offsets must be two integers",
        ),
        (
            safetensors_bytes(
                b'{"__metadata__": {"x": NaN}, "a": ' + json.dumps(ONE_TENSOR["a"]).encode() + b"}", bytes(8)
            ),
            "__metadata__ must map strings to strings",
        ),
        (safetensors_bytes(b'{"a":' * 60_000 + b"{}" + b"}" * 60_000), "nested too deeply"),
    ],
    ids=[
        "8 EiB header",
        "u64 max header",
        "100 MiB header in a 10-byte file",
        "length only",
        "7 bytes",
        "empty",
        "cut in header",
        "cut in data",
        "empty header",
        "header JSON cut short",
        "NaN dimension",
        "Infinity dimension",
        "Infinity offset",
        "NaN metadata",
        "deep objects",
    ],
)
def test_bad_safetensors_is_refused_without_reading_what_it_claims(
    tmp_path: Path, peak_memory: Callable[[], int], content: bytes, message: str
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(MetadataParseError) as err:
        count_safetensors_parameters(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert peak_memory() < MEMORY_BOUND + 4 * len(content)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (config_with('"hidden_size": NaN'), "hidden_size: expected an integer, got nan"),
        (config_with('"hidden_size": Infinity'), "hidden_size: expected an integer, got inf"),
        (config_with('"num_hidden_layers": -Infinity'), "num_hidden_layers: expected an integer, got -inf"),
        (config_with('"max_position_embeddings": NaN'), "max_position_embeddings: expected an integer"),
        (
            config_with('"max_position_embeddings": 4096, "rope_scaling": {"type": "yarn", "factor": NaN}'),
            "rope_scaling.factor: nan is out of range",
        ),
        (
            config_with('"quantization_config": {"quant_method": "gptq", "bits": Infinity}'),
            "quantization_config.bits: expected an integer, got inf",
        ),
        (config_with('"torch_dtype": NaN'), "torch_dtype: expected a string"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (json.dumps({**GOOD, "model_type": "l" * 10_000_000}).encode(), "longer than 512"),
    ],
    ids=[
        "NaN size",
        "Infinity size",
        "-Infinity layers",
        "NaN context",
        "NaN rope factor",
        "Infinity bits",
        "NaN dtype",
        "deep objects",
        "10 MB model_type",
    ],
)
def test_bad_config_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(MetadataParseError) as err:
        parse_model_dir(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value) and message in str(err.value)


def test_sparse_giant_config_is_refused_before_reading(
    tmp_path: Path, peak_memory: Callable[[], int]
) -> None:
    path = tmp_path / "config.json"
    with open(path, "wb") as f:
        f.write(b"{")
    os.truncate(path, 8 * 2**30)  # 8 GiB claimed, nothing stored
    with pytest.raises(MetadataParseError, match="is 8589934592 bytes, more than the 16777216 allowed"):
        parse_model_dir(tmp_path)
    assert peak_memory() < MEMORY_BOUND


@pytest.mark.parametrize(
    "extra",
    [
        '"unused": NaN',  # a NaN nobody reads is no reason to refuse the model
        '"layer_types": [NaN]',
        '"deep": ' + "[" * 900 + "]" * 900,  # deep but within what the decoder handles
        '"text_config": ' + '{"a":' * 500 + "1" + "}" * 500,
    ],
    ids=["unused NaN", "NaN in a list", "900 deep", "500 deep text_config"],
)
def test_tolerable_oddities_give_a_result_or_a_metadata_error(tmp_path: Path, extra: str) -> None:
    (tmp_path / "config.json").write_bytes(config_with(extra))
    try:
        result = parse_model_dir(tmp_path)
    except MetadataParseError as e:
        assert str(tmp_path / "config.json") in str(e)
    else:
        assert result.metadata.model_type == "llama"
