"""Placement follows the Kubernetes scheduler's nodeSelector/nodeAffinity rules and says why."""

from __future__ import annotations

import pytest

from modelferry.errors import InvalidSpecError
from modelferry.placement import PlacementDecision, eligible_nodes, evaluate_placement
from modelferry.spec.affinity import NodeAffinity


def expr(key, operator, *values):
    requirement = {"key": key, "operator": operator}
    if values:
        requirement["values"] = list(values)
    return requirement


def required(*terms):
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}


def one(*expressions):
    """An affinity with a single term of matchExpressions."""
    return required({"matchExpressions": list(expressions)})


MATCHED = "nodeSelectorTerm 0 matched"
LABELS = {"gpu": "a100", "zone": "z1", "mem": "1Ti", "count": "8", "name": "plain"}

# (case, node_selector, node_affinity, labels, eligible, reason)
CASES = [
    ("no constraints", None, None, LABELS, True, "no placement constraints"),
    ("empty selector", {}, None, {}, True, "no placement constraints"),
    ("preferred only", None, {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [expr("gpu", "In", "h100")]}}]},
     LABELS, True, "no placement constraints"),
    ("selector equal", {"gpu": "a100", "zone": "z1"}, None, LABELS, True, "nodeSelector matched"),
    ("selector differs", {"gpu": "a100"}, None, {"gpu": "h100"}, False,
     "nodeSelector gpu=a100: node has gpu=h100"),
    ("selector label missing", {"gpu": "a100"}, None, {}, False, "nodeSelector gpu=a100: label missing"),
    ("selector fails before affinity", {"gpu": "h100"}, one(expr("zone", "Exists")), LABELS, False,
     "nodeSelector gpu=h100: node has gpu=a100"),
    ("selector and affinity", {"gpu": "a100"}, one(expr("zone", "Exists")), LABELS, True,
     "nodeSelector matched; nodeSelectorTerm 0 matched"),
    # In
    ("In match", None, one(expr("gpu", "In", "h100", "a100")), LABELS, True, MATCHED),
    ("In other value", None, one(expr("gpu", "In", "h100")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' In [h100]: node has gpu=a100"),
    ("In label missing", None, one(expr("x", "In", "a")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'x' In [a]: label missing"),
    ("In without values", None, one(expr("gpu", "In")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' In []: In needs at least one value"),
    # NotIn
    ("NotIn other value", None, one(expr("gpu", "NotIn", "h100")), LABELS, True, MATCHED),
    ("NotIn listed value", None, one(expr("gpu", "NotIn", "a100")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' NotIn [a100]: node has gpu=a100"),
    ("NotIn label missing", None, one(expr("x", "NotIn", "a")), LABELS, True, MATCHED),
    # Exists / DoesNotExist
    ("Exists present", None, one(expr("zone", "Exists")), LABELS, True, MATCHED),
    ("Exists missing", None, one(expr("x", "Exists")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'x' Exists: label missing"),
    ("Exists with values", None, one(expr("zone", "Exists", "z1")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'zone' Exists [z1]: Exists takes no values"),
    ("DoesNotExist missing", None, one(expr("x", "DoesNotExist")), LABELS, True, MATCHED),
    ("DoesNotExist present", None, one(expr("zone", "DoesNotExist")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'zone' DoesNotExist: node has zone=z1"),
    # Gt / Lt on integers and quantities
    ("Gt integer", None, one(expr("count", "Gt", "4")), LABELS, True, MATCHED),
    ("Gt integer equal", None, one(expr("count", "Gt", "8")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Gt 8: node has count=8, not greater than 8"),
    ("Lt integer", None, one(expr("count", "Lt", "16")), LABELS, True, MATCHED),
    ("Lt integer equal", None, one(expr("count", "Lt", "8")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Lt 8: node has count=8, not less than 8"),
    ("Gt quantity", None, one(expr("mem", "Gt", "500Gi")), LABELS, True, MATCHED),
    ("Gt quantity smaller label", None, one(expr("mem", "Gt", "500Gi")), {"mem": "100Gi"}, False,
     "no nodeSelectorTerm matched: term 0: key 'mem' Gt 500Gi: node has mem=100Gi, not greater than 500Gi"),
    ("Lt quantity across suffixes", None, one(expr("mem", "Lt", "1100G")), LABELS, True,
     MATCHED),
    ("Lt quantity 1Ti vs 1T", None, one(expr("mem", "Lt", "1T")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'mem' Lt 1T: node has mem=1Ti, not less than 1T"),
    ("Gt not string order", None, one(expr("count", "Gt", "10")), {"count": "9"}, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Gt 10: node has count=9, not greater than 10"),
    ("Gt label missing", None, one(expr("x", "Gt", "1")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'x' Gt 1: label missing"),
    ("Lt label missing", None, one(expr("x", "Lt", "1")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'x' Lt 1: label missing"),
    ("Gt non-numeric label", None, one(expr("name", "Gt", "1")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'name' Gt 1: node has name=plain, not an integer or quantity"),
    ("Lt non-numeric value", None, one(expr("count", "Lt", "many")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Lt many: value 'many' is not an integer or quantity"),
    ("Gt two values", None, one(expr("count", "Gt", "1", "2")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Gt [1, 2]: Gt needs exactly one value"),
    ("Lt no values", None, one(expr("count", "Lt")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'count' Lt []: Lt needs exactly one value"),
    # unknown operator
    ("unknown operator", None, one(expr("gpu", "Equals", "a100")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' Equals [a100]: unknown operator 'Equals'"),
    ("operator is case-sensitive", None, one(expr("gpu", "in", "a100")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' in [a100]: unknown operator 'in'"),
    # AND within a term, OR across terms
    ("term ANDs expressions", None, one(expr("gpu", "In", "a100"), expr("zone", "In", "z2")), LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'zone' In [z2]: node has zone=z1"),
    ("term all hold", None, one(expr("gpu", "In", "a100"), expr("zone", "NotIn", "z2")), LABELS, True,
     MATCHED),
    ("second term matches", None,
     required({"matchExpressions": [expr("gpu", "In", "h100")]},
              {"matchExpressions": [expr("zone", "Exists")]}),
     LABELS, True, "nodeSelectorTerm 1 matched"),
    ("no term matches", None,
     required({"matchExpressions": [expr("gpu", "In", "h100")]}, {"matchExpressions": [expr("x", "Exists")]}),
     LABELS, False,
     "no nodeSelectorTerm matched: term 0: key 'gpu' In [h100]: node has gpu=a100; "
     "term 1: key 'x' Exists: label missing"),
    ("empty term list", None, required(), LABELS, False, "nodeSelectorTerms is empty: matches no node"),
    ("empty term", None, required({}), LABELS, False,
     "no nodeSelectorTerm matched: term 0: no matchExpressions or matchFields: matches no node"),
    ("term with empty lists", None, required({"matchExpressions": [], "matchFields": []}), LABELS, False,
     "no nodeSelectorTerm matched: term 0: no matchExpressions or matchFields: matches no node"),
    ("empty term does not block another", None, required({}, {"matchExpressions": [expr("zone", "Exists")]}),
     LABELS, True, "nodeSelectorTerm 1 matched"),
    # matchFields
    ("field name In", None, required({"matchFields": [expr("metadata.name", "In", "node-1")]}), LABELS, True,
     MATCHED),
    ("field name In other", None, required({"matchFields": [expr("metadata.name", "In", "node-2")]}), LABELS,
     False, "no nodeSelectorTerm matched: term 0: field 'metadata.name' In [node-2]: node name is node-1"),
    ("field name NotIn", None, required({"matchFields": [expr("metadata.name", "NotIn", "node-2")]}), LABELS,
     True, MATCHED),
    ("field name NotIn self", None, required({"matchFields": [expr("metadata.name", "NotIn", "node-1")]}),
     LABELS, False,
     "no nodeSelectorTerm matched: term 0: field 'metadata.name' NotIn [node-1]: node name is node-1"),
    ("field other than name", None, required({"matchFields": [expr("spec.unschedulable", "In", "false")]}),
     LABELS, False, "no nodeSelectorTerm matched: term 0: field 'spec.unschedulable' In [false]: "
     "unsupported field (only metadata.name is supported)"),
    ("field Exists", None, required({"matchFields": [expr("metadata.name", "Exists")]}), LABELS, False,
     "no nodeSelectorTerm matched: term 0: field 'metadata.name' Exists: "
     "operator 'Exists' is not supported for matchFields (only In, NotIn)"),
    ("field two names", None, required({"matchFields": [expr("metadata.name", "In", "node-1", "node-2")]}),
     LABELS, False, "no nodeSelectorTerm matched: term 0: field 'metadata.name' In [node-1, node-2]: "
     "In on metadata.name needs exactly one value"),
    ("fields and expressions AND", None,
     required({"matchExpressions": [expr("zone", "Exists")],
               "matchFields": [expr("metadata.name", "In", "x")]}),
     LABELS, False, "no nodeSelectorTerm matched: term 0: field 'metadata.name' In [x]: node name is node-1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("node_selector", "node_affinity", "labels", "eligible", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_placement_decision_and_reason(node_selector, node_affinity, labels, eligible, reason):
    decision = evaluate_placement(
        disabled=False,
        node_selector=node_selector,
        node_affinity=node_affinity,
        node_name="node-1",
        node_labels=labels,
    )
    assert decision == PlacementDecision(eligible=eligible, reason=reason)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_model_and_dict_affinity_decide_alike(case):
    _, node_selector, node_affinity, labels, _, _ = case
    model = NodeAffinity.model_validate(node_affinity) if node_affinity is not None else None
    common = {"disabled": False, "node_selector": node_selector, "node_name": "node-1", "node_labels": labels}
    assert evaluate_placement(node_affinity=model, **common) == evaluate_placement(
        node_affinity=node_affinity, **common
    )


@pytest.mark.parametrize(
    ("node_selector", "node_affinity"),
    [(None, None), ({"gpu": "a100"}, None), (None, one(expr("gpu", "In", "a100")))],
)
def test_disabled_model_is_eligible_nowhere(node_selector, node_affinity):
    decision = evaluate_placement(
        disabled=True,
        node_selector=node_selector,
        node_affinity=node_affinity,
        node_name="node-1",
        node_labels=LABELS,
    )
    assert decision == PlacementDecision(eligible=False, reason="model is disabled")


@pytest.mark.parametrize(
    "bad",
    [
        {"requiredDuringSchedulingIgnoredDuringExecution": {}},
        one({"operator": "In", "values": ["a"]}),
        one({"key": "", "operator": "In", "values": ["a"]}),
        one({"key": "k", "operator": "In", "values": "a"}),
    ],
)
def test_malformed_affinity_dict_is_a_spec_error(bad):
    with pytest.raises(InvalidSpecError, match="nodeAffinity: not a valid node affinity"):
        evaluate_placement(
            disabled=False, node_selector=None, node_affinity=bad, node_name="n", node_labels={}
        )


def test_eligible_nodes_keeps_order_and_filters():
    nodes = [
        ("h100-a", {"gpu": "h100", "mem": "2Ti"}),
        ("a100-a", {"gpu": "a100", "mem": "1Ti"}),
        ("h100-b", {"gpu": "h100", "mem": "256Gi"}),
        ("cpu-a", {}),
    ]
    affinity = one(expr("gpu", "In", "h100", "a100"), expr("mem", "Gt", "512Gi"))
    common = {"node_selector": None, "node_affinity": affinity, "nodes": nodes}
    assert eligible_nodes(disabled=False, **common) == ["h100-a", "a100-a"]
    assert eligible_nodes(disabled=True, **common) == []
