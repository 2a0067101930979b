"""Exact parameter counts from safetensors headers, without loading a single tensor.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(`{name: {dtype, shape, data_offsets: [begin, end]}}` plus an optional `__metadata__` map of
strings), then the tensor bytes; `8 + N + last end == file size`. We read the length and the
header only, in one or two `read` calls, and check everything a hostile file could get wrong: a
header longer than the cap (100 MB) or than the file, JSON that is not an object, unknown keys,
negative or non-integer dims, offsets that overlap, leave gaps, run past the data or do not
match `numel x itemsize`. Any of these raises `MetadataParseError` naming the file.

What is counted (`classify_tensor`):
- every tensor's element count from its shape, once per tensor *name* (a name that appears in two
  files is counted once and reported; OME's tiny-random-PhiModel fixture is two copies of one
  model);
- packed quantized weights are counted *unpacked*, as the model's parameters: GPTQ/AWQ `qweight`
  and compressed-tensors `weight_packed` (int32 holding 32/bits values), MXFP4 `*_blocks` and
  4-bit bitsandbytes / NVFP4 `uint8` weights (two values per byte);
- quantization metadata is *not* counted: scales, zero points, group indices, bitsandbytes
  quant-state tensors, FP8 `weight_scale_inv`, MXFP4 `*_scales`. These are storage detail, not
  parameters, and leaving them out makes an FP8 checkpoint count the same as its BF16 original.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelferry.errors import MetadataParseError
from modelferry.metadata.config_view import INDEX_MAX_BYTES, decode_json, load_json_file, show_number

HEADER_MAX_BYTES = 100 * 1024 * 1024
_FIRST_READ = 16 * 1024  # one read covers the length and a dense model's header (1-25 KB)
INDEX_FILE = "model.safetensors.index.json"

# dtype -> bits per element (safetensors 0.6+ names, including the sub-byte float formats).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

# safetensors dtype -> the torch name configs use, for reporting a dtype when config.json has none.
TORCH_DTYPE_NAMES: dict[str, str] = {
    "BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I8": "int8", "U8": "uint8",
    "I16": "int16", "I32": "int32", "I64": "int64", "BOOL": "bool",
}  # fmt: skip

# Last name component of a quantization-metadata tensor (never a model parameter).
_AUX_SUFFIXES = frozenset({
    "weight_scale", "weight_scale_inv", "weight_scale_2", "weight_global_scale", "input_scale",
    "input_global_scale", "output_scale", "k_scale", "v_scale", "q_scale", "weight_zero_point",
    "input_zero_point", "weight_g_idx", "weight_shape", "qzeros", "g_idx", "absmax", "quant_map",
    "nested_absmax", "nested_quant_map", "SCB", "weight_format",
})  # fmt: skip


@dataclass(frozen=True)
class PackingRules:
    """How packed weights unpack; derived from the config's quantization_config when known."""

    int32_values: int = 8  # values per int32 in qweight / weight_packed (32 // bits; 4-bit default)
    uint8_weights_are_fp4: bool = False  # bitsandbytes 4-bit, NVFP4: a uint8 `weight` holds 2 values


# One tensor as the headers describe it: (safetensors dtype, stored element count).
TensorInfo = tuple[str, int]


@dataclass
class WeightScan:
    """Everything learned from the headers of one model's safetensors files."""

    files: list[str] = field(default_factory=list)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    unknown_dtypes: set[str] = field(default_factory=set)

    def add_file(self, name: str, found: Iterable[tuple[str, str, int]]) -> None:
        """Add one file's (name, dtype, stored elements) tensors; a name seen before is a duplicate."""
        tensors = self.tensors
        self.files.append(name)
        for tensor, dtype, numel in found:
            if tensor in tensors:
                self.duplicates.append(tensor)
                continue
            if dtype not in DTYPE_BITS:
                self.unknown_dtypes.add(dtype)
            tensors[tensor] = (dtype, numel)

    def parameters(
        self, rules: PackingRules | None = None, *, exclude: Iterable[str] = ()
    ) -> tuple[int, dict[str, int]]:
        """(parameters, {stored dtype: parameters}) over all tensors except `exclude` and aux ones."""
        rules = rules or PackingRules()
        skip = set(exclude)
        names = self.tensors
        by_dtype: dict[str, int] = {}
        for name, (dtype, numel) in self.tensors.items():
            if name in skip:
                continue
            n = classify_tensor(name, dtype, numel, names=names, rules=rules)
            if n:
                by_dtype[dtype] = by_dtype.get(dtype, 0) + n
        return sum(by_dtype.values()), by_dtype


def classify_tensor(name: str, dtype: str, numel: int, *, names: Container[str], rules: PackingRules) -> int:
    """Parameters this tensor stands for: 0 for quantization metadata, unpacked count otherwise."""
    stem, _, last = name.rpartition(".")
    if last == "weight" or last == "bias":  # the common case, decided without lookups
        if dtype == "U8" and last == "weight" and rules.uint8_weights_are_fp4:
            return numel * 2
        return numel
    if last in _AUX_SUFFIXES or "quant_state" in name:
        return 0
    if last == "scales" and f"{stem}.qweight" in names:  # GPTQ / AWQ group scales
        return 0
    if last.endswith("_scales") and f"{stem}.{last[:-7]}_blocks" in names:  # MXFP4 scales
        return 0
    if last.endswith("_blocks") and dtype == "U8":  # MXFP4: two 4-bit values per byte
        return numel * 2
    if last in ("qweight", "weight_packed") and dtype == "I32":
        return numel * rules.int32_values
    if last == "weight_packed" and dtype == "U8" and rules.uint8_weights_are_fp4:
        return numel * 2
    return numel


def _read_raw_header(path: Path) -> tuple[bytes, int]:
    """(header bytes, data area length), with the length checks; one open, one fstat, 1-2 reads."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise MetadataParseError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MetadataParseError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise MetadataParseError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, _FIRST_READ)
        if len(head) < 8:
            raise MetadataParseError(f"{path}: {size} bytes is too short for a safetensors file")
        (n,) = struct.unpack_from("<Q", head)
        if n > HEADER_MAX_BYTES:
            raise MetadataParseError(f"{path}: header length {n} is more than the {HEADER_MAX_BYTES} allowed")
        if 8 + n > size:
            raise MetadataParseError(f"{path}: header length {n} runs past the end of the {size}-byte file")
        parts = [head[8 : 8 + n]]
        got = len(parts[0])
        while got < n:
            chunk = os.read(fd, n - got)
            if not chunk:
                raise MetadataParseError(f"{path}: file ended inside the header")
            parts.append(chunk)
            got += len(chunk)
        return (parts[0] if len(parts) == 1 else b"".join(parts)), size - 8 - n
    except IsADirectoryError:
        raise MetadataParseError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise MetadataParseError(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)


def read_header(path: Path) -> dict[str, Any]:
    """The validated JSON header of one safetensors file."""
    header, _ = _read_validated(path)
    return header


def read_tensors(path: Path) -> list[tuple[str, str, int]]:
    """(name, dtype, stored elements) of every tensor in one file, validated."""
    return _read_validated(path)[1]


def _read_validated(path: Path) -> tuple[dict[str, Any], list[tuple[str, str, int]]]:
    raw, data_len = _read_raw_header(path)
    header = decode_json(raw, source=f"{path} (safetensors header)")
    if not isinstance(header, dict):
        raise MetadataParseError(f"{path}: safetensors header must be a JSON object")
    return header, _validate_header(header, path=path, data_len=data_len)


def header_length(first: bytes, *, source: str, file_size: int) -> int:
    """The header length N from a file's first 8 bytes, checked against the cap and `file_size`.

    For headers read by other means than `read_header` (ranged reads of a remote file)."""
    if len(first) < 8 or file_size < 8:
        raise MetadataParseError(f"{source}: {file_size} bytes is too short for a safetensors file")
    (n,) = struct.unpack_from("<Q", first)
    if n > HEADER_MAX_BYTES:
        raise MetadataParseError(f"{source}: header length {n} is more than the {HEADER_MAX_BYTES} allowed")
    if 8 + n > file_size:
        raise MetadataParseError(
            f"{source}: header length {n} runs past the end of the {file_size}-byte file"
        )
    return int(n)


def tensors_from_header(raw: bytes, *, source: str, file_size: int) -> list[tuple[str, str, int]]:
    """(name, dtype, stored elements) of every tensor in the header bytes `raw` (the N bytes after
    the length) of a `file_size`-byte file; validated like a local file's."""
    header = decode_json(raw, source=f"{source} (safetensors header)")
    if not isinstance(header, dict):
        raise MetadataParseError(f"{source}: safetensors header must be a JSON object")
    return _validate_header(header, path=source, data_len=file_size - 8 - len(raw))


def _validate_header(
    header: dict[str, Any], *, path: Path | str, data_len: int
) -> list[tuple[str, str, int]]:
    """Check every entry and the offsets; return (name, dtype, numel) per tensor."""
    tensors: list[tuple[str, str, int]] = []
    spans: list[tuple[int, int]] = []
    bits_of = DTYPE_BITS.get
    for name, entry in header.items():
        if name == "__metadata__":
            if type(entry) is not dict or not all(type(v) is str for v in entry.values()):
                raise MetadataParseError(f"{path}: __metadata__ must map strings to strings")
            continue
        if type(entry) is not dict:
            raise MetadataParseError(f"{path}: tensor {name[:120]!r}: entry must be an object")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if type(dtype) is not str or len(dtype) > 32:
            raise MetadataParseError(f"{path}: tensor {name[:120]!r}: dtype must be a string")
        if type(shape) is not list or len(shape) > 64:
            raise MetadataParseError(
                f"{path}: tensor {name[:120]!r}: shape must be a list of at most 64 dims"
            )
        numel = 1
        for dim in shape:
            if type(dim) is not int or dim < 0:
                shown = show_number(dim) if isinstance(dim, int | float) else repr(dim)[:40]
                raise MetadataParseError(f"{path}: tensor {name[:120]!r}: bad dimension {shown} in shape")
            numel *= dim
        if type(offsets) is not list or len(offsets) != 2:
            raise MetadataParseError(f"{path}: tensor {name[:120]!r}: data_offsets must be two integers")
        begin, end = offsets
        if type(begin) is not int or type(end) is not int:
            raise MetadataParseError(f"{path}: tensor {name[:120]!r}: data_offsets must be two integers")
        if not 0 <= begin <= end <= data_len:
            raise MetadataParseError(
                f"{path}: tensor {name[:120]!r}: offsets [{show_number(begin)}, {show_number(end)}] outside "
                f"the {data_len}-byte data area"
            )
        bits = bits_of(dtype)
        if bits is not None:
            if end - begin != (numel * bits + 7) // 8:
                raise MetadataParseError(
                    f"{path}: tensor {name[:120]!r}: {end - begin} bytes do not match shape {shape} of "
                    f"{dtype}"
                )
        elif numel > (end - begin) * 8:  # unknown dtype: at least one bit per element
            raise MetadataParseError(f"{path}: tensor {name[:120]!r}: shape {shape} is larger than its data")
        spans.append((begin, end))
        tensors.append((name, dtype, numel))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            what = "overlap" if begin < pos else "leave a gap"
            raise MetadataParseError(f"{path}: tensor data_offsets {what} at byte {min(begin, pos)}")
        pos = end
    if pos != data_len:
        raise MetadataParseError(f"{path}: tensors cover {pos} bytes but the data area is {data_len} bytes")
    return tensors


def scan_files(paths: Iterable[Path]) -> WeightScan:
    """Read the headers of `paths` and collect every tensor (once per name)."""
    scan = WeightScan()
    for path in paths:
        scan.add_file(path.name, read_tensors(path))
    return scan


def find_weight_files(model_dir: Path) -> tuple[list[Path], list[str]]:
    """The safetensors files of a model directory, and notes on how they were chosen
    (`choose_weight_files`)."""
    index_path = model_dir / INDEX_FILE
    try:  # one directory listing instead of a stat per shard
        here = {entry.name for entry in os.scandir(model_dir) if entry.is_file()}
    except OSError as e:
        raise MetadataParseError(f"{model_dir}: cannot list: {e.strerror or e}") from None
    index = load_json_file(index_path, max_bytes=INDEX_MAX_BYTES) if INDEX_FILE in here else None
    names, notes = choose_weight_files(here, index=index, index_source=str(index_path))
    return [model_dir / name for name in names], notes


def choose_weight_files(
    names: Collection[str], *, index: Any | None, index_source: str = INDEX_FILE
) -> tuple[list[str], list[str]]:
    """Which of the top-level file `names` hold the weights, and notes on how they were chosen.

    `index` (the parsed `model.safetensors.index.json`, None when there is none) decides when
    present: its shards are counted, and a shard it names that is missing is an error (a partial
    download would give a wrong count). Without an index, every `*.safetensors` file is used,
    except Mistral's `consolidated*` copies when HF-format shards sit beside them.
    """
    notes: list[str] = []
    if index is not None:
        shards = shards_from_index(index, source=index_source)
        missing = [s for s in shards if s not in names]
        if len(missing) == len(shards):
            notes.append(
                f"{INDEX_FILE} names {len(shards)} shard(s) but none is present; parameters estimated"
            )
            return [], notes
        if missing:
            raise MetadataParseError(
                f"{index_source}: {len(missing)} of {len(shards)} shards are missing (first: {missing[0]})"
            )
        return shards, notes
    files = sorted(name for name in names if name.endswith(".safetensors"))
    hf_files = [name for name in files if not name.startswith("consolidated")]
    if hf_files and len(hf_files) != len(files):
        notes.append("ignored consolidated*.safetensors (a second copy of the weights in Mistral's layout)")
        files = hf_files
    return files, notes


def shards_from_index(index: Any, *, source: str) -> list[str]:
    """Shard file names from a parsed `model.safetensors.index.json`, in first-seen order."""
    if not isinstance(index, Mapping):
        raise MetadataParseError(f"{source}: must be a JSON object")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise MetadataParseError(f"{source}: weight_map must be a non-empty object")
    seen: dict[str, None] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard.endswith(".safetensors"):
            raise MetadataParseError(f"{source}: weight_map[{tensor!r}] must name a .safetensors file")
        if "/" in shard or "\\" in shard or shard.startswith("."):
            raise MetadataParseError(f"{source}: weight_map[{tensor!r}] = {shard!r} is not a plain file name")
        seen.setdefault(shard, None)
    return list(seen)


def count_safetensors_parameters(
    paths_or_dir: Path | str | Iterable[Path | str], *, rules: PackingRules | None = None
) -> tuple[int, dict[str, int]]:
    """Exact parameter count of safetensors files (or of a model directory's weights).

    Returns (parameters, {safetensors dtype: parameters}). Reads headers only.
    """
    if isinstance(paths_or_dir, str | os.PathLike):
        target = Path(paths_or_dir)
        paths = find_weight_files(target)[0] if target.is_dir() else [target]
    else:
        paths = [Path(p) for p in paths_or_dir]
    return scan_files(paths).parameters(rules)
