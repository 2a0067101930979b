"""Validate YAML/JSON manifest text the way `modelferry validate` reports it; pure, no file I/O.

Like kubeconform, but for our kinds only:
- A YAML stream may hold many documents; empty ones (only comments, a stray `---`) are ignored.
  Documents are numbered from 0 in stream order, empty ones included, so `file#2` is the third
  document; the `#n` is shown only when the file holds more than one document.
- A document of another kind (a Deployment, a ConfigMap, a `BaseModel` in another API group) is
  *skipped*: counted, never invalid. A `kind: List` (as `kubectl get -o yaml` prints) is opened and
  each item checked as `file#n.items[i]`.
- A YAML or JSON syntax error makes the rest of that file one invalid document, reported with its
  line. So do duplicate mapping keys, which kubectl also refuses.
- YAML timestamps stay strings, as they do when kubectl turns YAML into JSON for the API server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from modelferry.spec.parse import check_resource, is_model_object
from modelferry.spec.resources import ModelResource
from modelferry.spec.rules import Problem


class Outcome(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class DocumentReport:
    """The verdict on one document (or one item of a List)."""

    source: str
    outcome: Outcome
    kind: str | None = None
    name: str | None = None
    problems: tuple[Problem, ...] = ()
    resource: ModelResource | None = None  # the typed resource, for a valid one (`modelferry plan`)

    def lines(self) -> list[str]:
        """`<source> <kind>/<name>: <field>: <rule>` per problem; one line for valid/skipped."""
        if self.kind is None and self.name is None and self.outcome is Outcome.INVALID:
            subject = self.source  # not even a kind: a syntax error or a non-mapping document
        else:
            subject = f"{self.source} {self.kind or '?'}/{self.name or '?'}"
        if self.outcome is Outcome.SKIPPED:
            return [f"{subject}: skipped (not an ome.io model resource)"]
        if self.outcome is Outcome.VALID:
            return [f"{subject}: valid"]
        return [
            f"{subject}: {p.field}: {p.rule}" if p.field else f"{subject}: {p.rule}" for p in self.problems
        ]


@dataclass(frozen=True)
class Summary:
    valid: int
    invalid: int
    skipped: int

    @classmethod
    def of(cls, reports: Iterable[DocumentReport]) -> Summary:
        counts = dict.fromkeys(Outcome, 0)
        for report in reports:
            counts[report.outcome] += 1
        return cls(counts[Outcome.VALID], counts[Outcome.INVALID], counts[Outcome.SKIPPED])

    def line(self) -> str:
        text = f"{self.valid} valid, {self.invalid} invalid"
        return text + (f", {self.skipped} skipped" if self.skipped else "")

    @property
    def exit_code(self) -> int:
        """0: at least one resource and all valid; 1: something invalid; 2: nothing to validate."""
        if self.invalid:
            return 1
        return 0 if self.valid else 2


def validate_text(text: str, *, source: str, is_json: bool = False) -> list[DocumentReport]:
    """Reports for every non-empty document of `text`, which was read from `source`."""
    docs, error = _decode_json(text) if is_json else _decode_yaml(text)
    count = len(docs) + (1 if error else 0)
    reports: list[DocumentReport] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        label = f"{source}#{index}" if count > 1 else source
        reports.extend(_check_document(doc, source=label))
    if error:
        label = f"{source}#{len(docs)}" if count > 1 else source
        reports.append(DocumentReport(label, Outcome.INVALID, problems=(Problem("", error),)))
    return reports


def unreadable(source: str, reason: str) -> DocumentReport:
    """A file that could not be read at all counts as one invalid document."""
    return DocumentReport(source, Outcome.INVALID, problems=(Problem("", reason),))


def _check_document(doc: Any, *, source: str) -> Iterator[DocumentReport]:
    if isinstance(doc, dict) and _is_list(doc):
        for i, item in enumerate(doc["items"]):
            yield from _check_document(item, source=f"{source}.items[{i}]")
        return
    if isinstance(doc, dict) and not is_model_object(doc) and isinstance(doc.get("kind"), str):
        yield DocumentReport(source, Outcome.SKIPPED, kind=doc["kind"], name=_name_of(doc))
        return
    check = check_resource(doc)
    if check.valid:
        yield DocumentReport(source, Outcome.VALID, kind=check.kind, name=check.name, resource=check.resource)
    else:
        yield DocumentReport(source, Outcome.INVALID, check.kind, check.name, check.problems)


def _is_list(doc: dict[str, Any]) -> bool:
    kind = doc.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)


def _name_of(doc: dict[str, Any]) -> str | None:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


# --- decoding ---------------------------------------------------------------------------------


class _KubeYamlLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings and refuses duplicate keys, as kubectl does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _decode_yaml(text: str) -> tuple[list[Any], str | None]:
    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text, Loader=_KubeYamlLoader):
            docs.append(doc)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        return docs, f"{where}invalid YAML: {problem}"
    return docs, None


def _decode_json(text: str) -> tuple[list[Any], str | None]:
    if not text.strip():
        return [], None
    try:
        return [json.loads(text)], None
    except json.JSONDecodeError as e:
        return [], f"line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}"
