"""What a model's source says about it before any download: config.json and the safetensors
headers, read with the backend's own ranged reads (`StorageBackend.read_range`).

A safetensors file starts with an 8-byte little-endian header length N and N bytes of JSON, so one
ranged read of the first `HEAD_READ_BYTES` covers a dense model's header and a second read fetches
the rest of a larger one; the tensor bytes are never touched. The headers are validated and counted
by the same code that counts a downloaded model (`modelferry.metadata.safetensors_header`), and
config.json goes through the same parser (`modelferry.metadata.parser.parse_config`), so `plan`
shows what a delivery would later write into the spec. Only top-level files are read, as the
parser reads a model directory's top level. Used by `modelferry plan`; writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activities.storage.base import ModelListing, RemoteFile, StorageBackend
from modelferry.errors import MetadataParseError
from modelferry.metadata.config_view import INDEX_MAX_BYTES, decode_json
from modelferry.metadata.parser import SIDE_FILES, parse_config
from modelferry.metadata.safetensors_header import (
    INDEX_FILE,
    PackingRules,
    WeightScan,
    choose_weight_files,
    header_length,
    tensors_from_header,
)
from modelferry.metadata.sizes import format_parameter_size
from modelferry.plan.report import ModelFacts

HEAD_READ_BYTES = 64 * 1024  # one ranged read covers the length and most models' header
CONFIG_MAX_BYTES = 1024 * 1024  # "if small": a config.json is a few KB; a larger one is not read
CONFIG_FILE = "config.json"


def read_bytes(backend: StorageBackend, file: RemoteFile, start: int, end: int) -> bytes:
    """The bytes [start, end) of `file`, joined (a backend's chunks may be views of a reused buffer)."""
    if end <= start:
        return b""
    out = bytearray()
    for chunk in backend.read_range(file, start, end):
        out += chunk
    if len(out) != end - start:
        raise MetadataParseError(
            f"{backend.describe()}/{file.name}: asked for bytes [{start}, {end}), got {len(out)}"
        )
    return bytes(out)


def read_tensors(backend: StorageBackend, file: RemoteFile) -> list[tuple[str, str, int]]:
    """(name, dtype, stored elements) of every tensor of a remote safetensors file, from its header."""
    source = f"{backend.describe()}/{file.name}"
    head = read_bytes(backend, file, 0, min(file.size, HEAD_READ_BYTES)) if file.size >= 8 else b""
    n = header_length(head, source=source, file_size=file.size)
    raw = head[8 : 8 + n]
    if len(raw) < n:
        raw += read_bytes(backend, file, 8 + len(raw), 8 + n)
    return tensors_from_header(raw, source=source, file_size=file.size)


def probe_model(backend: StorageBackend, listing: ModelListing) -> ModelFacts:
    """Architecture, parameters and the rest from config.json and the weights' headers."""
    top = {f.name: f for f in listing.files if "/" not in f.name}
    notes: list[str] = []
    index = _read_json(backend, top.get(INDEX_FILE), max_bytes=INDEX_MAX_BYTES, notes=notes)
    names, file_notes = choose_weight_files(
        set(top), index=index, index_source=f"{backend.describe()}/{INDEX_FILE}"
    )
    notes.extend(file_notes)
    scan: WeightScan | None = None
    if names:
        scan = WeightScan()
        for name in names:
            scan.add_file(name, read_tensors(backend, top[name]))
    config = _read_json(backend, top.get(CONFIG_FILE), max_bytes=CONFIG_MAX_BYTES, notes=notes)
    if isinstance(config, Mapping):
        extra = {
            name: value
            for name in (*SIDE_FILES, INDEX_FILE)
            if (value := _side_file(backend, top, name, index=index, notes=notes)) is not None
        }
        result = parse_config(
            config,
            extra_files=extra,
            source=f"{backend.describe()}/{CONFIG_FILE}",
            scan=scan,
            file_notes=notes,
        )
        meta = result.metadata
        return ModelFacts(
            architecture=meta.model_architecture,
            model_type=meta.model_type,
            parameters=meta.parameter_count,
            parameter_size=meta.model_parameter_size,
            parameter_source=result.parameter_source,
            max_tokens=meta.max_tokens,
            dtype=meta.dtype,
            quantization=meta.quantization,
            weight_files=result.weight_files,
            notes=result.warnings,
        )
    if config is not None:
        notes.append(f"{CONFIG_FILE} is not a JSON object; architecture unknown")
    elif CONFIG_FILE not in top:
        notes.append(f"no {CONFIG_FILE} at the source; architecture unknown")
    if scan is None:
        return ModelFacts(notes=(*notes, "no safetensors weights at the source; parameters unknown"))
    count, _ = scan.parameters(PackingRules())
    return ModelFacts(
        parameters=count,
        parameter_size=format_parameter_size(count) if count else None,
        parameter_source="safetensors",
        weight_files=tuple(scan.files),
        notes=tuple(notes),
    )


def _side_file(
    backend: StorageBackend, top: Mapping[str, RemoteFile], name: str, *, index: Any, notes: list[str]
) -> Any:
    if name == INDEX_FILE:
        return index
    return _read_json(backend, top.get(name), max_bytes=CONFIG_MAX_BYTES, notes=notes)


def _read_json(backend: StorageBackend, file: RemoteFile | None, *, max_bytes: int, notes: list[str]) -> Any:
    """The parsed JSON of a small remote file; None (with a note) when absent or too large."""
    if file is None:
        return None
    if file.size > max_bytes:
        notes.append(f"{file.name} is {file.size} bytes, more than the {max_bytes} read before a download")
        return None
    return decode_json(read_bytes(backend, file, 0, file.size), source=f"{backend.describe()}/{file.name}")
