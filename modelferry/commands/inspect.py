"""`modelferry inspect DIR [--json]`: the metadata modelferry would put on the model's resource.

Reads DIR/config.json, side files (sentence-transformers, ModelOpt) and the safetensors headers
(never the tensors). Prints an aligned table: each metadata field, then how the values were found
(family, exact or estimated parameter count, warnings). `--json` prints exactly the metadata keys
(modelType, modelArchitecture, parameterCount, modelParameterSize, maxTokens, dtype, quantization,
modelCapabilities, modelFramework, modelFormat), nothing else, for scripts.

Exit status: 0 on success; 1 when the directory or a file in it cannot be parsed (the message on
standard error names the file and the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "inspect",
        help="show the metadata parsed from a model directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", help="model directory holding config.json")
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON (OME field names)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelferry.errors import MetadataParseError
    from modelferry.metadata import parse_model_dir

    try:
        result = parse_model_dir(Path(args.directory))
    except MetadataParseError as e:
        print(f"modelferry inspect: {e.message}", file=sys.stderr)
        return 1
    data = result.metadata.model_dump(mode="json", by_alias=True)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [(key, _show(value) + _unit(key, value)) for key, value in data.items()]
    source = {"safetensors": "exact (safetensors headers)", "estimate": "estimated from config.json"}
    rows += [
        ("", ""),
        ("family", result.family or "unknown"),
        ("parameters", source.get(result.parameter_source, "unknown")),
    ]
    if result.weight_files:
        rows.append(("weight files", str(len(result.weight_files))))
    if result.chat_tuned is not None:
        rows.append(
            ("chat-tuned", "yes (from the model name)" if result.chat_tuned else "no sign in the name")
        )
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}".rstrip())
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


# A count printed without its unit reads as bytes ("8B", "156K"): each says what it counts.
_UNITS = {"parameterCount": "parameters", "modelParameterSize": "parameters", "maxTokens": "tokens"}


def _unit(key: str, value: Any) -> str:
    return f" {_UNITS[key]}" if key in _UNITS and value is not None else ""


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values() if v is not None) or "-"
    return str(value)
