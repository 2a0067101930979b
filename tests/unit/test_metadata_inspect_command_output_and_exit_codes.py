"""`modelferry inspect DIR [--json]`: an aligned table, or JSON with exactly OME's keys; a clear
message and exit status 1 on anything it cannot parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelferry.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hf-configs"


def test_json_output_has_exactly_the_metadata_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(CORPUS / "ome-testdata__qwen2.5_7b"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "modelType": "qwen2",
        "modelArchitecture": "Qwen2ForCausalLM",
        "parameterCount": 7_615_616_512,
        "modelParameterSize": "7.62B",
        "maxTokens": 131072,
        "dtype": "bfloat16",
        "quantization": None,
        "modelCapabilities": ["TEXT_TO_TEXT"],
        "modelFramework": {"name": "transformers", "version": "4.40.1"},
        "modelFormat": {"name": "safetensors", "version": "1.0.0"},
    }


def test_table_is_aligned_and_says_how_values_were_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(CORPUS / "hf-internal-testing__tiny-random-PhiModel")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line and not line.startswith("warning:")]
    value_columns = {re.match(r"^(.*?\S)\s{2,}\S", line).end() - 1 for line in rows}  # type: ignore[union-attr]
    assert value_columns == {20}  # "modelParameterSize" + two spaces
    assert "parameterCount      46,282 parameters" in lines  # a count carries its unit
    assert any(re.fullmatch(r"modelParameterSize  \S+ parameters", line) for line in lines)
    assert any(re.fullmatch(r"maxTokens           [\d,]+ tokens", line) for line in lines)
    assert "parameters          exact (safetensors headers)" in lines
    assert any(line.startswith("warning: 31 tensor name(s) appear in more than one file") for line in lines)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "config.json: file not found"),
        (lambda p: (p / "config.json").write_text("{oops"), "config.json: invalid JSON at line 1"),
        (lambda p: (p / "config.json").write_text('{"hidden_size": -4}'), "hidden_size: -4 is out of range"),
    ],
)
def test_errors_exit_1_with_the_file_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, message: str
) -> None:
    setup(tmp_path)
    assert main(["inspect", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("modelferry inspect: ") and message in captured.err


def test_missing_directory_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "absent")]) == 1
    assert "not a directory" in capsys.readouterr().err
