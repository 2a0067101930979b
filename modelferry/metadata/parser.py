"""Parse a model directory (or a bare config) into `ModelMetadata`.

`parse_config` is pure: a config mapping (+ optional side files) in, a `ParseResult` out, with the
parameter count estimated from the family formula. `parse_model_dir` reads config.json, the
sentence-transformers and ModelOpt side files, and the safetensors headers, and then reports the
*exact* count from the weights (the estimate is still computed, as a cross-check warning when the
two disagree by more than 5%).

`modelFormat` is safetensors 1.0.0 when safetensors weights or an index are present, pytorch when
only `pytorch_model*.bin` files are, gguf for `*.gguf`; with no weights at all (a bare config) it
is assumed to be safetensors, as OME's agent does, and a warning says it was assumed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelferry.errors import MetadataParseError
from modelferry.metadata.capabilities import detect_capabilities, detect_chat_tuned
from modelferry.metadata.config_view import ConfigView, MissingKeyError, load_json_file
from modelferry.metadata.context import resolve_max_tokens
from modelferry.metadata.families import Family, ModelView, find_family
from modelferry.metadata.quantization import read_quantization
from modelferry.metadata.safetensors_header import (
    INDEX_FILE,
    TORCH_DTYPE_NAMES,
    WeightScan,
    find_weight_files,
    scan_files,
)
from modelferry.metadata.schema import (
    IMAGE_TEXT_TO_TEXT,
    TEXT_TO_TEXT,
    ModelFormat,
    ModelFramework,
    ModelMetadata,
    ParameterSource,
    ParseResult,
)
from modelferry.metadata.sizes import format_parameter_size

SIDE_FILES = ("config_sentence_transformers.json", "modules.json", "hf_quant_config.json")
_SIDE_MAX_BYTES = 1024 * 1024
_ST_FILES = frozenset({"config_sentence_transformers.json", "modules.json", "sentence_bert_config.json"})
_NESTED_TEXT = ("text_config", "llm_config", "language_config")
_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float": "float32",
    "fp32": "float32",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
_SAFETENSORS = ModelFormat(name="safetensors", version="1.0.0")


def parse_config(
    config: Mapping[str, Any],
    *,
    extra_files: Mapping[str, Any] | None = None,
    source: str = "config.json",
    names: list[str] | None = None,
    scan: WeightScan | None = None,
    file_notes: list[str] | None = None,
) -> ParseResult:
    """Metadata from a parsed config.json: the parameter count is estimated, or exact when `scan`
    holds the weights' headers read by other means (`modelferry plan` reads them remotely).

    `extra_files` maps side-file names to their parsed JSON (config_sentence_transformers.json,
    modules.json, hf_quant_config.json, model.safetensors.index.json). `names` are model names to
    read hints from (repository id, directory name); `_name_or_path` is always used.
    """
    return _parse(
        config,
        extra_files=extra_files or {},
        source=source,
        names=names or [],
        scan=scan,
        file_notes=file_notes,
    )


def parse_model_dir(path: Path | str) -> ParseResult:
    """Metadata for a model directory: config.json plus the safetensors headers (exact count)."""
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise MetadataParseError(f"{model_dir}: not a directory")
    config = load_json_file(model_dir / "config.json")
    extra: dict[str, Any] = {}
    for name in SIDE_FILES:
        if (model_dir / name).is_file():
            extra[name] = load_json_file(model_dir / name, max_bytes=_SIDE_MAX_BYTES)
    files, notes = find_weight_files(model_dir)
    scan = scan_files(files) if files else None
    if scan is None and (model_dir / INDEX_FILE).is_file():
        extra[INDEX_FILE] = {}
    result = _parse(
        config,
        extra_files=extra,
        source=str(model_dir / "config.json"),
        names=_dir_names(model_dir),
        scan=scan,
        file_notes=notes,
    )
    if scan is None:
        fmt = _other_format(model_dir)
        if fmt is not None:
            meta = result.metadata.model_copy(update={"model_format": fmt})
            warnings = tuple(w for w in result.warnings if not w.startswith("no weight files"))
            result = result.model_copy(update={"metadata": meta, "warnings": warnings})
    return result


def _dir_names(model_dir: Path) -> list[str]:
    resolved = model_dir.resolve()
    if resolved.parent.name == "snapshots":  # Hugging Face cache: models--org--name/snapshots/<sha>
        return [resolved.parent.parent.name.removeprefix("models--").replace("--", "/")]
    return [resolved.name.replace("__", "/")]


def _other_format(model_dir: Path) -> ModelFormat | None:
    if any(model_dir.glob("pytorch_model*.bin")):
        return ModelFormat(name="pytorch", version="1.0.0")
    if any(model_dir.glob("*.gguf")):
        return ModelFormat(name="gguf", version=None)
    return None


def _text_view(root: ConfigView) -> ConfigView:
    for key in _NESTED_TEXT:
        sub = root.sub(key)
        if sub is not None:
            return sub
    thinker = root.sub("thinker_config")
    nested = thinker.sub("text_config") if thinker else None
    return nested or root


def _parse(
    config: Mapping[str, Any],
    *,
    extra_files: Mapping[str, Any],
    source: str,
    names: list[str],
    scan: WeightScan | None,
    file_notes: list[str] | None = None,
) -> ParseResult:
    root = ConfigView(config, source=source)
    text = _text_view(root)
    model_type = root.str_("model_type")
    architectures = root.str_list("architectures")
    architecture = architectures[0] if architectures else None
    family, known = find_family(model_type, architecture)
    warnings = list(file_notes or [])
    if not known:
        warnings.append(
            f"unknown model family {model_type or '(no model_type)'}: best-effort values from common keys"
        )
    flags = frozenset({"sentence_transformers"} if _ST_FILES & set(extra_files) else set())
    view = ModelView(
        root=root, text=text, model_type=model_type or "", architecture=architecture, flags=flags
    )
    name_or_path = root.str_("_name_or_path", max_len=4096)
    all_names = [*names, name_or_path] if name_or_path else list(names)

    quant = read_quantization(root, text, extra_files=extra_files)
    warnings.extend(quant.notes)
    estimate = _estimate(view, family, warnings)

    weight_dtypes: dict[str, int] = {}
    if scan is not None:
        exclude = _mtp_tensors(scan, text, warnings)
        count, weight_dtypes = scan.parameters(quant.rules, exclude=exclude)
        source_kind: ParameterSource = "safetensors"
        _note_scan(scan, warnings)
        if estimate and count and abs(estimate - count) > 0.05 * count:
            warnings.append(
                f"config-based estimate {estimate:,} differs from the exact count {count:,} by "
                f"{abs(estimate - count) / count:.1%}"
            )
        parameter_count: int | None = count
    else:
        parameter_count = estimate
        source_kind = "estimate" if estimate is not None else "none"

    fmt = _SAFETENSORS
    if scan is None and INDEX_FILE not in extra_files:
        warnings.append("no weight files seen; modelFormat assumed to be safetensors")

    max_tokens = resolve_max_tokens(view, family)
    capabilities = detect_capabilities(view, family, names=all_names)
    try:
        metadata = ModelMetadata(
            model_type=model_type,
            model_architecture=architecture,
            parameter_count=parameter_count,
            model_parameter_size=format_parameter_size(parameter_count) if parameter_count else None,
            max_tokens=max_tokens,
            dtype=_dtype(root, text) or _dominant_dtype(weight_dtypes),
            quantization=quant.label,
            model_capabilities=capabilities,
            model_framework=ModelFramework(name="transformers", version=_transformers_version(root, text)),
            model_format=fmt,
        )
    except ValidationError as e:  # a guard: the readers above already bound every value
        raise MetadataParseError(f"{source}: {e.errors()[0]['msg']}") from None
    return ParseResult(
        metadata=metadata,
        family=family.name if known else None,
        family_known=known,
        parameter_source=source_kind,
        warnings=tuple(warnings + view.notes),
        derived=tuple(view.derived),
        chat_tuned=detect_chat_tuned(all_names) if _generates_text(metadata.model_capabilities) else None,
        quantization_method=quant.method,
        weight_dtypes=weight_dtypes,
        weight_files=tuple(scan.files) if scan else (),
    )


def _generates_text(capabilities: list[str]) -> bool:
    return TEXT_TO_TEXT in capabilities or IMAGE_TEXT_TO_TEXT in capabilities


def _estimate(view: ModelView, family: Family, warnings: list[str]) -> int | None:
    try:
        return family.estimate(view)
    except MissingKeyError as e:
        warnings.append(f"parameter count not estimated: {e.message}")
        return None


def _mtp_tensors(scan: WeightScan, text: ConfigView, warnings: list[str]) -> list[str]:
    """Names of multi-token-prediction layers stored after the last decoder layer (DeepSeek-V3)."""
    if not text.count("num_nextn_predict_layers", default=0):
        return []
    layers = text.count("num_hidden_layers", default=0) or 0
    names = [n for n in scan.tensors if (m := _LAYER.match(n)) and int(m.group(1)) >= layers]
    if names:
        warnings.append(f"{len(names)} multi-token-prediction tensors (layers >= {layers}) not counted")
    return names


def _note_scan(scan: WeightScan, warnings: list[str]) -> None:
    if scan.duplicates:
        warnings.append(
            f"{len(scan.duplicates)} tensor name(s) appear in more than one file and were counted "
            f"once (first: {scan.duplicates[0]})"
        )
    if scan.unknown_dtypes:
        warnings.append(f"unknown safetensors dtype(s) {sorted(scan.unknown_dtypes)}: counted by shape only")


def _transformers_version(root: ConfigView, text: ConfigView) -> str | None:
    """The root's `transformers_version`, else the language model's, else any nested config's
    (composite configs saved by some exporters carry it only inside `llm_config` and the like)."""
    views = [root, text]
    for key in (*_NESTED_TEXT, "thinker_config"):
        sub = root.sub(key)
        if sub is not None:
            views.append(sub)
            views.extend(v for v in (sub.sub(k) for k in _NESTED_TEXT) if v is not None)
    for v in views:
        version = v.str_("transformers_version")
        if version:
            return version
    return None


def _dtype(root: ConfigView, text: ConfigView) -> str | None:
    for v in (root, text):
        for key in ("torch_dtype", "dtype"):
            value = v.str_(key, max_len=64)
            if value:
                value = value.removeprefix("torch.").lower()
                return _DTYPE_ALIASES.get(value, value)
    return None


def _dominant_dtype(weight_dtypes: Mapping[str, int]) -> str | None:
    if not weight_dtypes:
        return None
    top = max(weight_dtypes, key=lambda k: weight_dtypes[k])
    return TORCH_DTYPE_NAMES.get(top, top.lower())
