"""Model metadata from a model directory: what an OME model spec needs, read without loading weights.

    result = parse_model_dir(Path("/models/Qwen/Qwen3-8B"))
    result.metadata.model_dump(by_alias=True)   # modelType, parameterCount, maxTokens, ...
    result.parameter_source, result.warnings     # "safetensors" (exact) or "estimate"

- `parse_model_dir(path)`: config.json + safetensors headers -> exact parameter count.
- `parse_config(config, extra_files=...)`: pure, config only -> per-family estimate.
- `count_safetensors_parameters(paths_or_dir)`: (count, {dtype: count}) from headers only.

Hostile or malformed input (bad JSON, wrong types, absurd sizes, lying headers) raises
`modelferry.errors.MetadataParseError` with the file and the problem; nothing else escapes.
The rules for each field are documented in the module that decides it: `context` (maxTokens),
`quantization` (labels), `capabilities` (names), `sizes` (modelParameterSize),
`safetensors_header` (what is counted), `families` (per-family formulas).
"""

from modelferry.metadata.parser import parse_config, parse_model_dir
from modelferry.metadata.safetensors_header import PackingRules, count_safetensors_parameters
from modelferry.metadata.schema import ModelFormat, ModelFramework, ModelMetadata, ParseResult
from modelferry.metadata.sizes import format_parameter_size

__all__ = [
    "ModelFormat",
    "ModelFramework",
    "ModelMetadata",
    "PackingRules",
    "ParseResult",
    "count_safetensors_parameters",
    "format_parameter_size",
    "parse_config",
    "parse_model_dir",
]
