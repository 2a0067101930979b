"""Node events: PlacementChanged for exactly the models whose eligibility on that node flips."""

from __future__ import annotations

import pytest
from watcher_builders import model_obj

from modelferry.names import ModelKind
from watcher.decide import (
    EventType,
    Ignore,
    Known,
    ModelEvent,
    NodeEvent,
    PlacementChanged,
    decide,
    remember,
)

BM = ModelKind.BASE_MODEL
AFFINITY_BIG_DISK = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Gt", "values": ["500Gi"]}]}]
    }
}


def _known_cluster() -> Known:
    """Nodes n1 (gpu=a100, disk=1Ti) and n2 (gpu=h100); models a100, h100, anywhere, bigdisk, off."""
    known = Known()
    for name, labels in {"n1": {"gpu": "a100", "disk": "1Ti"}, "n2": {"gpu": "h100"}}.items():
        event = NodeEvent(EventType.ADDED, name, labels)
        remember(known, event, decide(event, known))
    models = {
        "a100": model_obj("a100", uid="u-a100", node_selector={"gpu": "a100"}),
        "h100": model_obj("h100", uid="u-h100", node_selector={"gpu": "h100"}),
        "anywhere": model_obj("anywhere", uid="u-any"),
        "bigdisk": model_obj("bigdisk", uid="u-big", node_affinity=AFFINITY_BIG_DISK),
        "off": model_obj("off", uid="u-off", disabled=True),
    }
    for obj in models.values():
        event = ModelEvent(EventType.ADDED, BM, obj)
        remember(known, event, decide(event, known))
    return known


def test_apply_records_eligible_nodes() -> None:
    known = _known_cluster()
    eligible = {key[2]: set(model.eligible_nodes) for key, model in known.models.items()}
    assert eligible == {
        "a100": {"n1"},
        "h100": {"n2"},
        "anywhere": {"n1", "n2"},
        "bigdisk": {"n1"},
        "off": set(),
    }


CASES = [
    (
        "relabel gpu a100 -> h100",
        EventType.MODIFIED,
        "n1",
        {"gpu": "h100", "disk": "1Ti"},
        {"a100": False, "h100": True},
    ),
    ("irrelevant label change", EventType.MODIFIED, "n1", {"gpu": "a100", "disk": "1Ti", "zone": "b"}, {}),
    (
        "disk shrinks below the affinity bound",
        EventType.MODIFIED,
        "n1",
        {"gpu": "a100", "disk": "100Gi"},
        {"bigdisk": False},
    ),
    ("new node matching a100", EventType.ADDED, "n3", {"gpu": "a100"}, {"a100": True, "anywhere": True}),
    ("new node matching nothing specific", EventType.ADDED, "n3", {}, {"anywhere": True}),
    (
        "node removed",
        EventType.DELETED,
        "n1",
        {"gpu": "a100", "disk": "1Ti"},
        {"a100": False, "anywhere": False, "bigdisk": False},
    ),
    ("resync of an unchanged node", EventType.RESYNC, "n2", {"gpu": "h100"}, {}),
]


@pytest.mark.parametrize(
    ("event_type", "node", "labels", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_node_event(event_type: EventType, node: str, labels: dict[str, str], want: dict[str, bool]) -> None:
    known = _known_cluster()
    event = NodeEvent(event_type, node, labels)
    decisions = decide(event, known)
    if not want:
        assert [type(d) for d in decisions] == [Ignore]
    else:
        assert all(isinstance(d, PlacementChanged) for d in decisions)
        got = {d.ref.name: d.eligible for d in decisions if isinstance(d, PlacementChanged)}
        assert got == want
        assert all(node in d.reason for d in decisions if isinstance(d, PlacementChanged))
    remember(known, event, decisions)
    assert [type(d) for d in decide(event, known)] == [Ignore]  # remembered: the same event is quiet


def test_reason_says_why() -> None:
    known = _known_cluster()
    [decision] = [
        d
        for d in decide(NodeEvent(EventType.MODIFIED, "n1", {"gpu": "h100", "disk": "1Ti"}), known)
        if isinstance(d, PlacementChanged) and d.ref.name == "a100"
    ]
    assert (
        decision.reason
        == "node n1 changed labels: no longer eligible (nodeSelector gpu=a100: node has gpu=h100)"
    )


def test_models_being_deleted_get_no_placement_nudges() -> None:
    known = _known_cluster()
    event = ModelEvent(
        EventType.MODIFIED, BM, model_obj("anywhere", uid="u-any", deleting=True, finalizer=True)
    )
    remember(known, event, decide(event, known))
    decisions = decide(NodeEvent(EventType.ADDED, "n3", {}), known)
    assert [type(d) for d in decisions] == [Ignore]
