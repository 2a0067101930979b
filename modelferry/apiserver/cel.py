"""CEL validation rules (`x-kubernetes-validations`) of a CRD schema, evaluated as a real server
does, with cel-python (`celpy`, standard CEL with RE2 `matches`).

What is implemented, after the real apiextensions server:
- each rule is evaluated with `self` bound to the value at its schema node, for every value
  present (absent and null values are not checked), after pruning and defaulting;
- a rule that names `oldSelf` is a transition rule: evaluated on update only, with the old value;
- ratcheting: a value an update leaves unchanged is not checked again;
- a failed rule is one cause at the node's field (plus `fieldPath`), with `messageExpression`'s
  result, else `message`, else `failed rule: <rule>`, as `Invalid value: <value>: ...` (a string
  quoted; an object or list is left out, as a real server does)
  (`reason` FieldValueForbidden / FieldValueRequired give `Forbidden:` / `Required value:`);
- the rules are not evaluated when the object already has type or enum errors, and one cause
  says so, as on a real server.

What is not: Kubernetes' CEL extension libraries (strings such as `split` or `lowerAscii`, lists,
regex `find`, URLs, quantities, `format`), cost limits, the type check at CRD creation (a rule is
only parsed), and the `metadata` restrictions at the root (`self.metadata` is the whole object
metadata here). A rule that fails to evaluate is reported as a failed rule with the error.
"""

from __future__ import annotations

import functools
import json
from typing import Any

_MISSING: Any = object()
_RULES_KEY = "x-kubernetes-validations"
_NOT_CHECKED = (
    "<nil>",
    'Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation",
)


def has_rules(schema: Any) -> bool:
    """True when any node of `schema` carries CEL rules."""
    if not isinstance(schema, dict):
        return False
    if schema.get(_RULES_KEY):
        return True
    children = [
        *(schema.get("properties") or {}).values(),
        schema.get("items"),
        schema.get("additionalProperties"),
    ]
    return any(has_rules(c) for c in children)


def compile_problems(schema: Any, path: str = "") -> list[tuple[str, str]]:
    """(field, message) for each rule of `schema` that does not parse (the CRD is then refused)."""
    if not isinstance(schema, dict):
        return []
    found = []
    for i, rule in enumerate(schema.get(_RULES_KEY) or []):
        field = f"{path}.x-kubernetes-validations[{i}].rule"
        expression = rule.get("rule") if isinstance(rule, dict) else None
        if not isinstance(expression, str) or not expression:
            found.append((field, "Required value"))
            continue
        error = _compile_error(expression)
        if error:
            found.append((field, f'Invalid value: "{expression}": compilation failed: {error}'))
    for name, sub in (schema.get("properties") or {}).items():
        found += compile_problems(sub, f"{path}.properties[{name}]")
    for key in ("items", "additionalProperties"):
        found += compile_problems(schema.get(key), f"{path}.{key}")
    return found


def rule_problems(value: Any, schema: dict[str, Any], *, old: Any = _MISSING) -> list[tuple[str, str]]:
    """Every (field, message) of a failed rule under the object body `value` (no apiVersion,
    kind or metadata checks: the body as `modelferry.apiserver.schema.admit` validates it)."""
    return _walk(value, schema, "", old)


def not_checked() -> tuple[str, str]:
    """The cause a real server adds when type errors kept the rules from running."""
    return _NOT_CHECKED


def _walk(value: Any, schema: Any, path: str, old: Any) -> list[tuple[str, str]]:
    if not isinstance(schema, dict) or value is None or (old is not _MISSING and old == value):
        return []
    found = []
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = properties.get(key, additional if isinstance(additional, dict) else None)
            sub_path = (f"{path}.{key}" if path else key) if key in properties else f"{path}[{key}]"
            found += _walk(sub, sub_schema, sub_path, old_map.get(key, _MISSING))
    elif isinstance(value, list):
        # Items are correlated by index only when the list is unchanged in length (atomic lists
        # are not correlated at all on a real server; this only decides ratcheting here).
        old_items = old if isinstance(old, list) and len(old) == len(value) else None
        for i, item in enumerate(value):
            before = old_items[i] if old_items is not None else _MISSING
            found += _walk(item, schema.get("items"), f"{path}[{i}]", before)
    for rule in schema.get(_RULES_KEY) or []:
        problem = _failed(rule, value, old)
        if problem is not None:
            field = path + (rule.get("fieldPath") or "")
            found.append((field, _cause(rule, value, problem)))
    return found


def _failed(rule: dict[str, Any], value: Any, old: Any) -> str | None:
    """None when `rule` holds for `value`; else the default message."""
    expression = rule.get("rule", "")
    transition = "oldSelf" in expression
    if transition and old is _MISSING:
        return None
    activation = {"self": value, **({"oldSelf": old} if transition else {})}
    try:
        result = _evaluate(expression, activation)
    except Exception as e:  # any evaluation failure is a failed rule, as on a real server
        return f"failed rule: {expression}: {_error_text(e)}"
    if result is True:
        return None
    if result is not False:
        return f"failed rule: {expression}: the rule did not evaluate to a bool"
    message = rule.get("messageExpression")
    if message:
        try:
            text = _evaluate(message, activation)
        except Exception:  # falls back to message, as a real server does
            text = None
        if isinstance(text, str) and text.strip() and "\n" not in text:
            return text
    return rule.get("message") or f"failed rule: {expression}"


def _cause(rule: dict[str, Any], value: Any, message: str) -> str:
    reason = rule.get("reason")
    if reason == "FieldValueForbidden":
        return f"Forbidden: {message}"
    if reason == "FieldValueRequired":
        return f"Required value: {message}"
    if isinstance(value, dict | list):
        return f"Invalid value: {message}"  # a real server omits a composite value
    return f"Invalid value: {_shown(value)}: {message}"


def _shown(value: Any) -> str:
    # As Go's field.Invalid prints a scalar: strings quoted, numbers and booleans bare.
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _error_text(error: Exception) -> str:
    return str(error.args[0]) if error.args else type(error).__name__


@functools.lru_cache(maxsize=4096)
def _compile_error(expression: str) -> str | None:
    try:
        _program(expression)
    except Exception as e:  # celpy raises its own parse errors
        return _error_text(e)
    return None


@functools.lru_cache(maxsize=4096)
def _program(expression: str) -> Any:
    import celpy  # imported on the first rule: most servers never see one

    env = celpy.Environment()
    return env.program(env.compile(expression))


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    import celpy

    result = _program(expression).evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    if isinstance(result, Exception):
        raise result
    if isinstance(result, celpy.celtypes.BoolType):
        return bool(result)
    if isinstance(result, celpy.celtypes.StringType):
        return str(result)
    return result
