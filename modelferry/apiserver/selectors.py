"""Label and field selectors, parsed once per request and matched against plain object dicts.

Label selectors follow the Kubernetes grammar: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
`k notin (a,b)`, `k` (exists), `!k` (does not exist), `k>n`, `k<n`; requirements are joined by
commas and all must hold. Field selectors are `path=v`, `path==v`, `path!=v` over the fields a
kind allows (`metadata.name` and `metadata.namespace` for every kind).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .meta import label_key_problem, label_value_problem


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        try:
            number = int(value) if value is not None else None
        except ValueError:
            return False
        if number is None:
            return False
        return number > int(self.values[0]) if self.op == "gt" else number < int(self.values[0])


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_BINARY_RE = re.compile(r"^\s*([^\s!=<>]+)\s*(==|=|!=|>|<)\s*(\S*)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _requirement(text: str) -> LabelRequirement:
    m = _SET_RE.match(text)
    if m:
        values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
        if not values:
            raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        return _checked(LabelRequirement(m.group(1), m.group(2), values))
    m = _BINARY_RE.match(text)
    if m:
        op = {"==": "=", ">": "gt", "<": "lt"}.get(m.group(2), m.group(2))
        if op in ("gt", "lt") and not m.group(3).lstrip("-").isdigit():
            raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer: {text!r}")
        return _checked(LabelRequirement(m.group(1), op, (m.group(3),)))
    stripped = text.strip()
    if stripped.startswith("!"):
        return _checked(LabelRequirement(stripped[1:].strip(), "!"))
    if stripped and not re.search(r"[\s=!<>()]", stripped):
        return _checked(LabelRequirement(stripped, "exists"))
    raise ValueError(f"unable to parse requirement: {text!r}")


def _checked(req: LabelRequirement) -> LabelRequirement:
    problem = label_key_problem(req.key)
    if problem is None and req.op not in ("gt", "lt"):
        problem = next((p for p in map(label_value_problem, req.values) if p), None)
    if problem:
        raise ValueError(problem)
    return req


def parse_label_selector(text: str | None) -> tuple[LabelRequirement, ...]:
    """Parse a label selector; an empty selector matches everything. Raises a 400 `ApiError`."""
    if not text or not text.strip():
        return ()
    try:
        return tuple(_requirement(part) for part in _split_top_level(text))
    except ValueError as e:
        raise bad_request(f"unable to parse requirement: {e}") from None


def labels_match(requirements: tuple[LabelRequirement, ...], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) != self.negate


def field_value(obj: dict[str, Any], path: str) -> str:
    """A field as a selector sees it: a string, "" when absent, booleans as true/false."""
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict) and path == "source":  # Event.source is {component, host}
        return str(cur.get("component", ""))
    return str(cur)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_field_selector(
    text: str | None, allowed: Collection[str], *, kind: str
) -> tuple[FieldRequirement, ...]:
    """Parse a field selector over `allowed` paths; unknown paths are a 400 as on a real server."""
    if not text or not text.strip():
        return ()
    reqs = []
    for part in _split_unescaped(text, ","):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.group(1), m.group(2), m.group(3).replace("\\", "")
        if path not in allowed:
            raise bad_request(
                f'"{path}" is not a known field selector for {kind}: only "{", ".join(sorted(allowed))}"'
            )
        reqs.append(FieldRequirement(path, value, negate=op == "!="))
    return tuple(reqs)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: dict[str, Any]) -> bool:
    return all(r.matches(obj) for r in requirements)


def make_matcher(
    *, namespace: str | None, labels: tuple[LabelRequirement, ...], fields: tuple[FieldRequirement, ...]
) -> Callable[[dict[str, Any]], bool]:
    """One predicate for "this object is in the list/watch": namespace, labels and fields."""

    def matches(obj: dict[str, Any]) -> bool:
        if namespace and (obj.get("metadata") or {}).get("namespace") != namespace:
            return False
        return labels_match(labels, obj) and fields_match(fields, obj)

    return matches
