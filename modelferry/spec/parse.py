"""Turn an untrusted JSON/YAML object into a typed model resource, or say exactly what is wrong.

`check_resource` collects *every* problem (type errors first; the cross-field rules of
`modelferry.spec.rules` only once the types are right, since they need a typed resource), each
as a dotted field path plus a rule in plain words. `parse_resource` is the strict entry point the
rest of the code uses: it returns the resource or raises `InvalidSpecError` naming the source
(`file#doc`), the field and the rule.

A misspelt field gets a "did you mean" hint drawn from the field names of our own models.

The input may be hostile (the watcher checks whatever users put in a spec), so checking stays
bounded: a document nested deeper than `MAX_DEPTH` is refused before validation, and only the
first `MAX_PROBLEMS` problems are described (the rest are counted).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from modelferry.errors import InvalidSpecError
from modelferry.names import API_GROUP, API_GROUP_VERSION, ModelKind
from modelferry.spec.resources import RESOURCE_CLASSES, ModelResource
from modelferry.spec.rules import Problem, check_rules

_KINDS = ", ".join(k.value for k in ModelKind)
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Far deeper than any real resource (OME's catalogue nests under 10 levels; managedFields mirror
# the object a few levels deeper), and far from Python's recursion limit: later steps recurse
# over the spec (deep copies, JSON payloads), so a spec nested 1,000 levels would crash them.
MAX_DEPTH = 100
_KEY_MARKER = "[key]"  # pydantic's last `loc` part when a mapping's key, not its value, is wrong
# Problems described one by one; the rest are only counted. A spec with 100,000 unknown keys
# would otherwise cost a "did you mean" search each, seconds of CPU per watch event.
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class ResourceCheck:
    """The outcome of checking one object: the resource when valid, else the problems."""

    kind: str | None
    name: str | None
    resource: ModelResource | None
    problems: tuple[Problem, ...]  # at most MAX_PROBLEMS
    omitted: int = 0  # further problems found but not described

    @property
    def valid(self) -> bool:
        return not self.problems


def is_model_object(obj: Any) -> bool:
    """True when `obj` claims to be one of our kinds: a known kind in the ome.io group.

    An object with a known kind but no apiVersion counts as ours (and then fails on apiVersion);
    `BaseModel` in some other API group is someone else's.
    """
    if not isinstance(obj, Mapping) or obj.get("kind") not in ModelKind._value2member_map_:
        return False
    api_version = obj.get("apiVersion")
    return not isinstance(api_version, str) or api_version.split("/", 1)[0] == API_GROUP


def check_resource(obj: Any) -> ResourceCheck:
    """Check `obj` (a decoded JSON/YAML document) against our models and rules; never raises."""
    if not isinstance(obj, Mapping):
        return ResourceCheck(None, None, None, (Problem("", "the document is not a mapping"),))
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) else None
    kind_text = kind if isinstance(kind, str) else None
    if kind is None:
        return ResourceCheck(None, name, None, (Problem("kind", "required field is missing"),))
    if kind_text is None or kind_text not in ModelKind._value2member_map_:
        return ResourceCheck(kind_text, name, None, (Problem("kind", f"{kind!r} is not one of {_KINDS}"),))
    model_kind = ModelKind(kind_text)
    if "apiVersion" not in obj:
        return ResourceCheck(kind_text, name, None, (Problem("apiVersion", "required field is missing"),))
    too_deep = _too_deep(obj)
    if too_deep is not None:
        problem = Problem(
            format_field_path(too_deep), f"nests deeper than {MAX_DEPTH} levels from the document's root"
        )
        return ResourceCheck(kind_text, name, None, (problem,))
    try:
        resource = RESOURCE_CLASSES[model_kind].model_validate(dict(obj))
    except ValidationError as e:
        errors = e.errors(include_url=False)
        problems = tuple(_problem_from_error(err) for err in errors[:MAX_PROBLEMS])
        return ResourceCheck(kind_text, name, None, problems, omitted=len(errors) - len(problems))
    except RecursionError:
        # Only a validator that decodes a string can still get here (a JSON-string
        # modelConfiguration nested thousands deep); whichever field it was, it is inside spec.
        problem = Problem("spec", "holds a value nested too deeply to check")
        return ResourceCheck(kind_text, name, None, (problem,))
    return ResourceCheck(kind_text, name, resource, tuple(check_rules(resource)))


def parse_resource(obj: dict[str, Any], *, source: str | None = None) -> ModelResource:
    """The typed resource for `obj`, picked by `kind`.

    Raises InvalidSpecError whose message names `source` (e.g. `models.yaml#2`), the field path
    (e.g. `spec.storage.path`) and the broken rule; with several problems it reports the first
    and counts the rest.
    """
    check = check_resource(obj)
    if check.resource is not None and check.valid:
        return check.resource
    first, rest = check.problems[0], len(check.problems) - 1 + check.omitted
    more = f" (and {rest} more problem{'s' if rest > 1 else ''})" if rest else ""
    raise InvalidSpecError(first.rule + more, field=first.field or None, source=source)


# --- pydantic errors in our words ------------------------------------------------------------


def format_field_path(loc: tuple[int | str, ...]) -> str:
    """`('spec', 'modelCapabilities', 0)` -> `spec.modelCapabilities[0]`; odd map keys quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _too_deep(obj: Mapping[str, Any]) -> tuple[int | str, ...] | None:
    """The field (two levels down at most) under which `obj` nests deeper than MAX_DEPTH, or None.

    Iterative, so a hostile document cannot exhaust the stack here; a self-referencing YAML
    alias only nests ever deeper, so it is caught too.
    """
    stack: list[tuple[Any, int, tuple[int | str, ...]]] = [(obj, 0, ())]
    while stack:
        value, depth, loc = stack.pop()
        if depth > MAX_DEPTH:
            return loc
        children: Any
        if isinstance(value, Mapping):
            children = value.items()
        elif isinstance(value, list | tuple):
            children = enumerate(value)
        else:
            continue
        for key, child in children:
            if isinstance(child, Mapping | list | tuple):
                part = key if isinstance(key, int | str) else str(key)
                stack.append((child, depth + 1, loc if len(loc) >= 2 else (*loc, part)))
    return None


def _problem_from_error(err: Mapping[str, Any]) -> Problem:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    kind = err["type"]
    if loc and loc[-1] == _KEY_MARKER:
        # `{1: "a"}` where a string key is required: the field is the entry, the rule its key's.
        field = format_field_path(loc[:-1])
        return Problem(
            field, f"the key {loc[-2]!r} must be a string" if len(loc) > 1 else "keys must be strings"
        )
    field = format_field_path(loc)
    if kind == "missing":
        return Problem(field, "required field is missing")
    if kind == "extra_forbidden":
        rule = "unknown field"
        if loc and isinstance(loc[-1], str):
            known = _known_wire_names_by_lower()
            close = difflib.get_close_matches(loc[-1].lower(), list(known), n=1, cutoff=0.75)
            if close:
                rule += f" (did you mean '{known[close[0]]}'?)"
        return Problem(field, rule)
    if field == "apiVersion" and kind == "literal_error":
        return Problem(field, f"must be {API_GROUP_VERSION}")
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return Problem(field, message[:1].lower() + message[1:])


@functools.cache
def _known_wire_names() -> tuple[str, ...]:
    names: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for field_name, info in model.model_fields.items():
            names.add(info.alias or field_name)
            choices = getattr(info.validation_alias, "choices", None) or []
            names.update(c for c in choices if isinstance(c, str))
            for sub in _models_in(info.annotation):
                walk(sub)

    for cls in RESOURCE_CLASSES.values():
        walk(cls)
    return tuple(sorted(names))


@functools.cache
def _known_wire_names_by_lower() -> dict[str, str]:
    return {n.lower(): n for n in _known_wire_names()}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]
