"""`modelferry plan`'s pure parts, table-driven: the fit decision, the parameter count from
safetensors header bytes (as ranged reads return them), the choice of weight files from a listing,
and the text and JSON renderings."""

from __future__ import annotations

import json
import re
import struct

import pytest

from modelferry.errors import MetadataParseError
from modelferry.metadata.safetensors_header import (
    WeightScan,
    choose_weight_files,
    header_length,
    tensors_from_header,
)
from modelferry.plan.fit import RESERVE_BYTES, Fit, decide_fit, format_bytes
from modelferry.plan.report import (
    ModelFacts,
    ModelPlan,
    NodePlan,
    SourcePlan,
    exit_code,
    plan_json,
    render_text,
)

GI = 1024**3


@pytest.mark.parametrize(
    ("needed", "allocatable", "local_free", "fit", "reason_has"),
    [
        (10 * GI, "100Gi", None, Fit.FITS, "100.0 GiB allocatable ephemeral-storage"),
        (10 * GI, "10Gi", None, Fit.FITS, "needs 10.0 GiB"),
        (10 * GI + 1, "10Gi", None, Fit.DOES_NOT_FIT, "10.0 GiB allocatable"),
        (10 * GI, "1T", None, Fit.FITS, "931.3 GiB allocatable"),
        (10 * GI, None, None, Fit.UNKNOWN, "the node reports no allocatable ephemeral-storage"),
        (10 * GI, "lots", None, Fit.UNKNOWN, "allocatable ephemeral-storage 'lots' is not a quantity"),
        # the local disk (modelferry dev) decides, with the engine's reserve
        (10 * GI, "1Ki", 20 * GI, Fit.FITS, "20.0 GiB free under the models root"),
        (10 * GI, "100Gi", 10 * GI, Fit.DOES_NOT_FIT, "10.0 GiB free under the models root"),
        (10 * GI, None, 10 * GI + RESERVE_BYTES, Fit.FITS, "free under the models root"),
    ],
)
def test_fit_decision(needed, allocatable, local_free, fit, reason_has) -> None:
    decision = decide_fit(needed_bytes=needed, allocatable=allocatable, local_free=local_free)
    assert decision.fit is fit
    assert reason_has in decision.reason


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * GI, "5.0 GiB")]
)
def test_format_bytes(n, text) -> None:
    assert format_bytes(n) == text


def _file(header: dict, data_len: int) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(data_len)


TWO_TENSORS = {
    "__metadata__": {"format": "pt"},
    "a.weight": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
    "b.bias": {"dtype": "F32", "shape": [3], "data_offsets": [64, 76]},
}


@pytest.mark.parametrize(
    ("header", "data_len", "expected"),
    [
        (TWO_TENSORS, 76, [("a.weight", "BF16", 32), ("b.bias", "F32", 3)]),
        ({"x.weight": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}, 2, [("x.weight", "F16", 1)]),
        (
            {"x.weight": {"dtype": "F16", "shape": [0, 5], "data_offsets": [0, 0]}},
            0,
            [("x.weight", "F16", 0)],
        ),
    ],
)
def test_tensors_from_remote_header_bytes(header, data_len, expected) -> None:
    blob = _file(header, data_len)
    n = header_length(blob[:8], source="hf://a/b/m.safetensors", file_size=len(blob))
    assert (
        tensors_from_header(blob[8 : 8 + n], source="hf://a/b/m.safetensors", file_size=len(blob)) == expected
    )


@pytest.mark.parametrize(
    ("first", "file_size", "message"),
    [
        (b"\x01\x00", 2, "2 bytes is too short for a safetensors file"),
        (struct.pack("<Q", 200 * 1024 * 1024), 10**9, "is more than the"),
        (struct.pack("<Q", 100), 50, "header length 100 runs past the end of the 50-byte file"),
    ],
)
def test_header_length_refuses_what_cannot_be_a_header(first, file_size, message) -> None:
    with pytest.raises(MetadataParseError, match="s3://b/m.safetensors: .*" + message.replace("(", r"\(")):
        header_length(first, source="s3://b/m.safetensors", file_size=file_size)


def test_a_header_whose_offsets_disagree_with_the_file_size_names_the_file() -> None:
    blob = _file(TWO_TENSORS, 76)
    n = header_length(blob[:8], source="src/m.safetensors", file_size=len(blob))
    with pytest.raises(MetadataParseError, match=re.escape("src/m.safetensors: tensors cover 76 bytes")):
        tensors_from_header(blob[8 : 8 + n], source="src/m.safetensors", file_size=len(blob) + 4)


def test_scan_counts_each_tensor_name_once_over_files() -> None:
    scan = WeightScan()
    scan.add_file("one.safetensors", [("a.weight", "BF16", 32), ("b.bias", "F32", 3)])
    scan.add_file("two.safetensors", [("a.weight", "BF16", 32), ("c.weight", "BF16", 10)])
    assert scan.parameters()[0] == 45 and scan.duplicates == ["a.weight"]


INDEX = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}


@pytest.mark.parametrize(
    ("names", "index", "files", "note"),
    [
        ({"config.json", "model.safetensors"}, None, ["model.safetensors"], None),
        (
            {"consolidated.safetensors", "model.safetensors"},
            None,
            ["model.safetensors"],
            "ignored consolidated",
        ),
        (
            {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "x.safetensors"},
            INDEX,
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
            None,
        ),
        ({"config.json"}, INDEX, [], "none is present"),
        ({"config.json", "pytorch_model.bin"}, None, [], None),
    ],
)
def test_weight_files_chosen_from_a_listing(names, index, files, note) -> None:
    chosen, notes = choose_weight_files(names, index=index)
    assert chosen == files
    assert (note is None and notes == []) or any(note in n for n in notes)


def test_an_index_naming_a_missing_shard_is_an_error() -> None:
    with pytest.raises(MetadataParseError, match="1 of 2 shards are missing"):
        choose_weight_files({"model-00001-of-00002.safetensors"}, index=INDEX, index_source="hf://a/b/idx")


PLAN = ModelPlan(
    kind="ClusterBaseModel",
    name="tiny",
    document="models.yaml#1",
    nodes=(
        NodePlan(
            "a",
            True,
            "nodeSelector matched",
            decide_fit(needed_bytes=GI, allocatable="10Gi", local_free=None),
        ),
        NodePlan("bb", False, "nodeSelector gpu=a100: node has gpu=h100"),
    ),
    source=SourcePlan(uri="hf://acme/tiny@abc", revision="abc", files=2, total_bytes=GI),
    facts=ModelFacts(
        architecture="LlamaForCausalLM",
        model_type="llama",
        parameters=8_030_261_248,
        parameter_size="8B",
        parameter_source="safetensors",
        max_tokens=131072,
        dtype="bfloat16",
    ),
)


def test_text_rendering() -> None:
    assert render_text([PLAN]) == (
        "ClusterBaseModel/tiny   (models.yaml#1)\n"
        "  source    hf://acme/tiny@abc\n"
        "            revision abc: 2 file(s), 1.0 GiB\n"
        "  model     LlamaForCausalLM (llama), 8B (8,030,261,248 parameters, exact, from the safetensors "
        "headers), maxTokens 131072, bfloat16\n"
        "  nodes     1 of 2 would get it\n"
        "    a   yes  nodeSelector matched; fits (needs 1.0 GiB, 10.0 GiB allocatable ephemeral-storage)\n"
        "    bb  no   nodeSelector gpu=a100: node has gpu=h100\n"
    )


def test_problems_render_and_set_the_exit_code() -> None:
    bad = ModelPlan(
        kind="BaseModel", name="x", namespace="team", problems=("spec.storage.path: must be absolute",)
    )
    assert "  error     spec.storage.path: must be absolute" in render_text([bad])
    assert "BaseModel/team/x" in render_text([bad])
    assert exit_code([PLAN]) == 0 and exit_code([PLAN, bad]) == 1 and exit_code([]) == 1


def test_json_rendering() -> None:
    [model] = plan_json([PLAN])["models"]
    assert model["eligibleNodes"] == ["a"]
    assert model["nodes"][0]["fit"]["result"] == "fits" and model["nodes"][1]["fit"] is None
    assert model["source"] == {"uri": "hf://acme/tiny@abc", "revision": "abc", "files": 2, "totalBytes": GI}
    assert model["model"]["parameterCount"] == 8_030_261_248 and model["model"]["parameterSize"] == "8B"
    json.dumps(model)
