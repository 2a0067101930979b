"""Which nodes should hold a model: nodeSelector and required nodeAffinity, as Kubernetes reads them.

A model resource may carry `nodeSelector` and `nodeAffinity` like a pod does; the watcher asks this
module, per node, whether the node should download the model, and writes the returned reason into
status so an operator can see *why* a node was skipped ("nodeSelector gpu=a100: node has
gpu=h100"). The rules follow the Kubernetes scheduler so a model lands where its serving pods can:

- `disabled` means eligible nowhere.
- every nodeSelector label must be present and equal, AND
- `requiredDuringSchedulingIgnoredDuringExecution`: terms are OR'd, requirements in a term AND'd;
  an empty term list, or a term without requirements, matches no node. Preferred terms do not
  decide where a model is stored and are ignored.
- operators: In, NotIn, Exists, DoesNotExist, Gt, Lt. NotIn and DoesNotExist hold when the label is
  missing; In, Exists, Gt and Lt do not. Gt/Lt take exactly one value and compare numbers: integers
  as in Kubernetes and, beyond it, quantities ("500Gi" against a label "1Ti"); a side that is not a
  number is no match, never a string comparison.
- matchFields supports only `metadata.name` with In/NotIn and exactly one value (as the scheduler
  does); anything else is no match, with a reason.
- a malformed requirement (unknown operator, wrong number of values) is no match, with a reason,
  because the scheduler treats it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from modelferry.errors import InvalidSpecError
from modelferry.quantity import InvalidQuantityError, parse_quantity
from modelferry.spec.affinity import NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm

NODE_NAME_FIELD = "metadata.name"  # the only node field the scheduler can select on


@dataclass(frozen=True)
class PlacementDecision:
    eligible: bool
    reason: str  # human-readable; goes into status as-is


def evaluate_placement(
    *,
    disabled: bool,
    node_selector: Mapping[str, str] | None,
    node_affinity: NodeAffinity | Mapping[str, Any] | None,
    node_name: str,
    node_labels: Mapping[str, str],
) -> PlacementDecision:
    """Decide whether the node `node_name` with `node_labels` should hold the model.

    `node_affinity` may be the model or a plain camelCase dict; a dict that is not a valid node
    affinity raises InvalidSpecError (a spec problem, not a property of the node).
    """
    affinity = as_node_affinity(node_affinity)
    return _evaluate(
        disabled=disabled,
        node_selector=node_selector,
        affinity=affinity,
        node_name=node_name,
        node_labels=node_labels,
    )


def eligible_nodes(
    *,
    disabled: bool,
    node_selector: Mapping[str, str] | None,
    node_affinity: NodeAffinity | Mapping[str, Any] | None,
    nodes: Iterable[tuple[str, Mapping[str, str]]],
) -> list[str]:
    """Names of the eligible nodes among `(name, labels)` pairs, in the order given."""
    affinity = as_node_affinity(node_affinity)
    return [
        name
        for name, labels in nodes
        if _evaluate(
            disabled=disabled,
            node_selector=node_selector,
            affinity=affinity,
            node_name=name,
            node_labels=labels,
        ).eligible
    ]


def as_node_affinity(value: NodeAffinity | Mapping[str, Any] | None) -> NodeAffinity | None:
    """Accept the wire model or a camelCase dict; raise InvalidSpecError for a malformed dict."""
    if value is None or isinstance(value, NodeAffinity):
        return value
    try:
        return NodeAffinity.model_validate(dict(value))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidSpecError(
            f"not a valid node affinity: {where}: {first['msg']}", field="nodeAffinity"
        ) from None


def _evaluate(
    *,
    disabled: bool,
    node_selector: Mapping[str, str] | None,
    affinity: NodeAffinity | None,
    node_name: str,
    node_labels: Mapping[str, str],
) -> PlacementDecision:
    if disabled:
        return PlacementDecision(False, "model is disabled")
    matched: list[str] = []
    if node_selector:
        for key, wanted in node_selector.items():
            if key not in node_labels:
                return PlacementDecision(False, f"nodeSelector {key}={wanted}: label missing")
            if node_labels[key] != wanted:
                return PlacementDecision(
                    False, f"nodeSelector {key}={wanted}: node has {key}={node_labels[key]}"
                )
        matched.append("nodeSelector matched")
    required = affinity.required if affinity is not None else None
    if required is not None:
        terms = required.node_selector_terms
        if not terms:
            return PlacementDecision(False, "nodeSelectorTerms is empty: matches no node")
        failures: list[str] = []
        for index, term in enumerate(terms):
            failure = _term_failure(term, node_name=node_name, node_labels=node_labels)
            if failure is None:
                matched.append(f"nodeSelectorTerm {index} matched")
                break
            failures.append(f"term {index}: {failure}")
        else:
            return PlacementDecision(False, "no nodeSelectorTerm matched: " + "; ".join(failures))
    return PlacementDecision(True, "; ".join(matched) or "no placement constraints")


def _term_failure(term: NodeSelectorTerm, *, node_name: str, node_labels: Mapping[str, str]) -> str | None:
    """None when every requirement of the term holds, else why the first one does not."""
    expressions = term.match_expressions or []
    fields = term.match_fields or []
    if not expressions and not fields:
        return "no matchExpressions or matchFields: matches no node"
    for requirement in expressions:
        failure = _label_failure(requirement, node_labels)
        if failure is not None:
            return f"{_describe('key', requirement)}: {failure}"
    for requirement in fields:
        failure = _field_failure(requirement, node_name)
        if failure is not None:
            return f"{_describe('field', requirement)}: {failure}"
    return None


def _label_failure(req: NodeSelectorRequirement, labels: Mapping[str, str]) -> str | None:
    values = req.values or []
    present = req.key in labels
    actual = labels.get(req.key)
    has = f"node has {req.key}={actual}"
    match req.operator:
        case "In" | "NotIn" if not values:
            return f"{req.operator} needs at least one value"
        case "Exists" | "DoesNotExist" if values:
            return f"{req.operator} takes no values"
        case "Gt" | "Lt" if len(values) != 1:
            return f"{req.operator} needs exactly one value"
        case "In":
            if not present:
                return "label missing"
            return None if actual in values else has
        case "NotIn":
            return has if present and actual in values else None
        case "Exists":
            return None if present else "label missing"
        case "DoesNotExist":
            return has if present else None
        case "Gt" | "Lt":
            if actual is None:
                return "label missing"
            return _compare_failure(req.operator, label=actual, bound=values[0], has=has)
        case _:
            return f"unknown operator '{req.operator}'"


def _compare_failure(operator: str, *, label: str, bound: str, has: str) -> str | None:
    limit = _number(bound)
    if limit is None:
        return f"value '{bound}' is not an integer or quantity"
    value = _number(label)
    if value is None:
        return f"{has}, not an integer or quantity"
    if operator == "Gt":
        return None if value > limit else f"{has}, not greater than {bound}"
    return None if value < limit else f"{has}, not less than {bound}"


def _number(text: str) -> Decimal | None:
    try:
        return parse_quantity(text)
    except InvalidQuantityError:
        return None


def _field_failure(req: NodeSelectorRequirement, node_name: str) -> str | None:
    if req.key != NODE_NAME_FIELD:
        return f"unsupported field (only {NODE_NAME_FIELD} is supported)"
    values = req.values or []
    if req.operator not in ("In", "NotIn"):
        return f"operator '{req.operator}' is not supported for matchFields (only In, NotIn)"
    if len(values) != 1:
        return f"{req.operator} on {NODE_NAME_FIELD} needs exactly one value"
    if (node_name == values[0]) == (req.operator == "In"):
        return None
    return f"node name is {node_name}"


def _describe(kind: str, req: NodeSelectorRequirement) -> str:
    values = req.values or []
    if req.operator in ("Gt", "Lt") and len(values) == 1:
        return f"{kind} '{req.key}' {req.operator} {values[0]}"
    if req.operator in ("Exists", "DoesNotExist") and not values:
        return f"{kind} '{req.key}' {req.operator}"
    return f"{kind} '{req.key}' {req.operator} [{', '.join(values)}]"
