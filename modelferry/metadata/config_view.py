"""Bounded, typed reading of JSON files and of the objects inside them.

Model directories come from anywhere, so every value the parser uses is read through a
`ConfigView`: a present value of the wrong type, a boolean where a number belongs, a size that is
negative or absurdly large, or an infinite float raises `MetadataParseError` naming the file and
the key. JSON `null` counts as absent (real configs write `"architectures": null`). Files are read
with a size cap, and deep nesting or oversized integers in the JSON are reported, not crashed on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelferry.errors import MetadataParseError

# A config.json is a few KB (Phi-3's long rope lists make it ~10 KB); an index of a 1T-parameter
# model is ~10 MB. Anything far larger is not a model file.
CONFIG_MAX_BYTES = 16 * 1024 * 1024
INDEX_MAX_BYTES = 64 * 1024 * 1024

# Upper bounds for structural sizes: generous (10x today's largest models) yet small enough that
# arithmetic on them stays meaningful.
MAX_DIM = 10_000_000  # hidden / intermediate sizes, vocabulary, head dims
MAX_COUNT = 100_000  # layers, heads, experts
MAX_CONTEXT = 2**31 - 1  # OME stores maxTokens as int32


class MissingKeyError(MetadataParseError):
    """A key a formula needs is absent (not malformed): the caller may fall back, not fail."""


def load_json_file(path: Path, *, max_bytes: int = CONFIG_MAX_BYTES) -> Any:
    """Read and decode one JSON file, or raise `MetadataParseError` saying what is wrong."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise MetadataParseError(f"{path}: file is {size} bytes, more than the {max_bytes} allowed")
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise MetadataParseError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MetadataParseError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise MetadataParseError(f"{path}: cannot read: {e.strerror or e}") from None
    return decode_json(data, source=str(path))


def decode_json(data: bytes | str, *, source: str) -> Any:
    try:
        # JSON files are UTF-8 (a BOM is tolerated); json.loads would guess UTF-16/32 from bytes.
        return json.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data)
    except RecursionError:
        raise MetadataParseError(f"{source}: JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise MetadataParseError(f"{source}: not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise MetadataParseError(
            f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except ValueError as e:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise MetadataParseError(f"{source}: invalid JSON: {e}") from None


def show_number(value: int | float) -> str:
    """A number for an error message, without printing hundreds of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}<{value.bit_length()}-bit integer>"
    return repr(value)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


class ConfigView:
    """Read-only typed access to one JSON object; `source` and `path` make error messages exact."""

    __slots__ = ("data", "path", "source")

    def __init__(self, data: Mapping[str, Any], *, source: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            where = f"{path} " if path else ""
            raise MetadataParseError(f"{source}: {where}must be a JSON object, got {_type_name(data)}")
        self.data = data
        self.source = source
        self.path = path

    # --- plumbing -------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        return f"{self.source}: {self.path}{key}"

    def fail(self, key: str, message: str) -> MetadataParseError:
        return MetadataParseError(f"{self._where(key)}: {message}")

    def raw(self, key: str) -> Any:
        value = self.data.get(key)
        return value

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def first_key(self, keys: Iterable[str]) -> str | None:
        for key in keys:
            if self.data.get(key) is not None:
                return key
        return None

    def sub(self, key: str) -> ConfigView | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected an object, got {_type_name(value)}")
        return ConfigView(value, source=self.source, path=f"{self.path}{key}.")

    # --- scalars ----------------------------------------------------------------------------

    def int_(self, *keys: str, default: int | None = None, lo: int = 0, hi: int = MAX_DIM) -> int | None:
        """The first present key among `keys` as an int in [lo, hi]; `default` when none is."""
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(key, f"expected an integer, got {_type_name(value)}")
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise self.fail(key, f"expected an integer, got {value!r}")
            if value < lo or value > hi:
                raise self.fail(key, f"{show_number(value)} is out of range ({lo}..{hi})")
            return int(value)
        return default

    def req_int(self, *keys: str, default: int | None = None, lo: int = 1, hi: int = MAX_DIM) -> int:
        value = self.int_(*keys, default=default, lo=lo, hi=hi)
        if value is None:
            raise MissingKeyError(f"{self._where(keys[0])}: missing (needed to estimate the parameter count)")
        return value

    def count(self, *keys: str, default: int | None = None, lo: int = 0) -> int | None:
        return self.int_(*keys, default=default, lo=lo, hi=MAX_COUNT)

    def float_(
        self, key: str, *, default: float | None = None, lo: float = 0.0, hi: float = 1e6
    ) -> float | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {_type_name(value)}")
        if not math.isfinite(value) or value < lo or value > hi:
            raise self.fail(key, f"{value!r} is out of range ({lo}..{hi})")
        return float(value)

    def bool_(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value

    def str_(self, key: str, *, default: str | None = None, max_len: int = 512) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_type_name(value)}")
        if len(value) > max_len:
            raise self.fail(key, f"string of {len(value)} characters is longer than {max_len}")
        return value

    def str_list(self, key: str, *, max_items: int = 1000) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or len(value) > max_items:
            raise self.fail(key, f"expected a list of strings, got {_type_name(value)}")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or len(item) > 512:
                raise self.fail(key, f"expected a list of strings, found {_type_name(item)}")
            out.append(item)
        return out

    def int_list(self, key: str, *, max_items: int = MAX_COUNT, hi: int = MAX_DIM) -> list[int]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            raise self.fail(key, f"expected a list of integers, got {_type_name(value)}")
        out: list[int] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= hi:
                raise self.fail(key, f"expected a list of integers in 0..{hi}, found {item!r}")
            out.append(item)
        return out


class LayeredView(ConfigView):
    """`primary` with `fallback` filling the keys it lacks: a nested language-model config
    (`llm_config`, `text_config`, ...) over the root. Errors name the object the value came from."""

    __slots__ = ("fallback", "primary")

    def __init__(self, primary: ConfigView, fallback: ConfigView) -> None:
        present = {k: v for k, v in primary.data.items() if v is not None}
        super().__init__({**fallback.data, **present}, source=primary.source, path=primary.path)
        self.primary = primary
        self.fallback = fallback

    def _where(self, key: str) -> str:
        view = self.primary if self.primary.has(key) else self.fallback
        return f"{view.source}: {view.path}{key}"

    def sub(self, key: str) -> ConfigView | None:
        return self.primary.sub(key) if self.primary.has(key) else self.fallback.sub(key)
