"""What a real server does with a CRD version's `openAPIV3Schema` on every write: prune the
fields the schema does not know, fill in `default`s, then validate, answering 422 with one cause
per violated rule.

Validation ratchets as on current servers: a value an update leaves unchanged is not checked
again, so tightening a CRD does not make existing objects unwritable. Supported keywords: type,
nullable, enum, required, properties, additionalProperties, items, minimum/maximum (and their
exclusive forms), minLength/maxLength, pattern, minItems/maxItems, minProperties/maxProperties,
format (date-time, int32, int64), x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields
and x-kubernetes-embedded-resource, then the CEL rules (x-kubernetes-validations, see `.cel`).
anyOf/oneOf/allOf/not are not enforced.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from . import cel
from .meta import parse_rfc3339

_ROOT_KEPT = ("apiVersion", "kind", "metadata")
_MISSING: Any = object()
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def prune(
    value: Any, schema: dict[str, Any] | None, *, path: str = "", dropped: list[str] | None = None
) -> Any:
    """Drop object fields the schema does not declare (unless it preserves unknown fields),
    noting each dropped field's path in `dropped`."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return value
        return [prune(v, items, path=f"{path}[{i}]", dropped=dropped) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
    kept = _ROOT_KEPT if schema.get("x-kubernetes-embedded-resource") else ()
    out = {}
    for key, sub in value.items():
        sub_path = f"{path}.{key}" if path else key
        if key in properties:
            out[key] = prune(sub, properties[key], path=sub_path, dropped=dropped)
        elif isinstance(additional, dict):
            out[key] = prune(sub, additional, path=sub_path, dropped=dropped)
        elif keep_unknown or key in kept:
            out[key] = sub
        elif dropped is not None:
            dropped.append(sub_path)
    return out


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> Any:
    """Fill in `default` for absent fields (and for nulls where null is not allowed)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in (schema.get("properties") or {}).items():
        if "default" in sub and (key not in out or (out[key] is None and not sub.get("nullable"))):
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = apply_defaults(out[key], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        out = {
            k: apply_defaults(v, additional) if k not in (schema.get("properties") or {}) else v
            for k, v in out.items()
        }
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return _json_type(value) in ("integer", "string")
    wanted = schema.get("type")
    actual = _json_type(value)
    return not wanted or actual == wanted or (wanted == "number" and actual == "integer")


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _scalar_problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    found = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_shown(v) for v in schema["enum"])
        return [f"Unsupported value: {_shown(value)}: supported values: {supported}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"may not be more than {schema['maxLength']} bytes")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"should match '{schema['pattern']}'")
        if schema.get("format") == "date-time" and parse_rfc3339(value) is None:
            found.append("must be of type date-time")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        low, high = _INT_RANGES.get(schema.get("format", ""), (None, None))
        if "minimum" in schema:
            low = schema["minimum"] if low is None else max(low, schema["minimum"])
        if "maximum" in schema:
            high = schema["maximum"] if high is None else min(high, schema["maximum"])
        strict_low, strict_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if low is not None and (value < low or (strict_low and value == low)):
            found.append(f"should be greater than {'' if strict_low else 'or equal to '}{low}")
        if high is not None and (value > high or (strict_high and value == high)):
            found.append(f"should be less than {'' if strict_high else 'or equal to '}{high}")
    return [f"Invalid value: {_shown(value)}: {path} in body {m}" for m in found]


def problems(
    value: Any, schema: dict[str, Any] | None, path: str, *, old: Any = _MISSING
) -> list[tuple[str, str]]:
    """Every (field, message) the value breaks; subtrees equal to `old` are not checked again."""
    if not isinstance(schema, dict) or (old is not _MISSING and old == value):
        return []
    if value is None:
        if schema.get("nullable") or not (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
            return []
        wanted = schema.get("type", "string")
        return [(path, f'Invalid value: "null": {path} in body must be of type {wanted}: "null"')]
    if not _type_ok(value, schema):
        actual = _json_type(value)
        wanted = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        return [(path, f'Invalid value: "{actual}": {path} in body must be of type {wanted}: "{actual}"')]
    found = [(path, m) for m in _scalar_problems(value, schema, path)]
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(
                (
                    path,
                    f"Invalid value: {len(value)}: {path} in body should have at least "
                    f"{schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append((path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
        old_items = old if isinstance(old, list) else []
        for i, item in enumerate(value):
            before = old_items[i] if i < len(old_items) else _MISSING
            found += problems(item, schema.get("items"), f"{path}[{i}]", old=before)
    elif isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key in schema.get("required") or []:
            if key not in value:
                found.append((f"{path}.{key}" if path else key, "Required value"))
        if len(value) < schema.get("minProperties", 0):
            found.append(
                (
                    path,
                    f"Invalid value: {len(value)}: {path} in body should have at least "
                    f"{schema['minProperties']} properties",
                )
            )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            found.append((path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} items"))
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = properties.get(key, additional if isinstance(additional, dict) else None)
            sub_path = (f"{path}.{key}" if path else key) if key in properties else f"{path}[{key}]"
            found += problems(sub, sub_schema, sub_path, old=old_map.get(key, _MISSING))
    return found


def _blocks_rules(message: str) -> bool:
    return message.startswith("Unsupported value") or " must be of type " in message


@dataclass(frozen=True)
class Admission:
    obj: dict[str, Any]  # pruned and defaulted
    problems: list[tuple[str, str]]  # (field, message) for each violated rule
    unknown_fields: list[str]  # what pruning dropped


def admit(obj: dict[str, Any], schema: dict[str, Any], *, old: dict[str, Any] | None) -> Admission:
    """Prune and default a whole custom object, then validate it (apiVersion, kind and metadata
    are the server's business, not the schema's)."""
    dropped: list[str] = []
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEPT}
    body = apply_defaults(prune(body, schema, dropped=dropped), schema)
    before = {k: v for k, v in (old or {}).items() if k not in _ROOT_KEPT} if old is not None else _MISSING
    root = {
        **schema,
        "properties": {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_KEPT},
        "required": [k for k in schema.get("required") or [] if k not in _ROOT_KEPT],
    }
    found = problems(body, root, "", old=before)
    if cel.has_rules(root):
        # As on a real server, the rules run only on an object whose types and enums are right.
        if any(_blocks_rules(message) for _, message in found):
            found.append(cel.not_checked())
        else:
            found += cel.rule_problems(body, root, old=before)
    return Admission({**{k: obj[k] for k in _ROOT_KEPT if k in obj}, **body}, found, dropped)
