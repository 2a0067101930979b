"""Every rule of `watcher.decide`, one table row each: plain data in, plain data out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from watcher_builders import model_obj

from modelferry.lifecycle import wire_spec
from modelferry.messages import ModelRef
from modelferry.names import ModelKind
from watcher.decide import (
    Apply,
    Delete,
    EventType,
    Ignore,
    Known,
    KnownModel,
    MarkInvalid,
    ModelEvent,
    Placement,
    decide,
    model_key,
    remember,
)

BM = ModelKind.BASE_MODEL
REF = ModelRef(kind=BM, name="llama", namespace="team-a", uid="uid-1")


def _known(**entry: Any) -> Known:
    known = Known()
    model = KnownModel(ref=entry.pop("ref", REF), **entry)
    known.models[(BM, "team-a", "llama")] = model
    return known


# What the watcher itself writes for this spec, whatever the exact words of the rule are.
_MISSPELT = model_obj(spec_extra={"storageURI": "x"}, generation=3)
_MISSPELT_MESSAGE = decide(ModelEvent(EventType.ADDED, BM, _MISSPELT), Known())[0].message  # type: ignore[union-attr]
INVALID_STATUS = {
    "state": "Failed",
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": _MISSPELT_MESSAGE,
            "observedGeneration": 3,
        }
    ],
}


@dataclass
class Row:
    id: str
    type: EventType
    obj: dict[str, Any]
    known: Known = field(default_factory=Known)
    want: list[str] = field(default_factory=list)  # decision class names, in order
    why: str = ""  # substring of Ignore.why / Delete.why when given


ROWS = [
    Row("new object applies", EventType.ADDED, model_obj(), want=["Apply"]),
    Row(
        "status-only update is ignored",
        EventType.MODIFIED,
        model_obj(status={"state": "Ready"}, resource_version="9"),
        _known(applied_generation=1),
        ["Ignore"],
        "already applied",
    ),
    Row(
        "generation bump applies",
        EventType.MODIFIED,
        model_obj(generation=2),
        _known(applied_generation=1),
        ["Apply"],
    ),
    Row(
        "stale generation is ignored",
        EventType.MODIFIED,
        model_obj(generation=1),
        _known(applied_generation=2),
        ["Ignore"],
    ),
    Row(
        "resync of applied generation is cheap",
        EventType.RESYNC,
        model_obj(),
        _known(applied_generation=1),
        ["Ignore"],
        "resync",
    ),
    Row("resync of an unknown object applies", EventType.RESYNC, model_obj(), want=["Apply"]),
    Row(
        "new uid under a known name deletes the old one, then applies",
        EventType.ADDED,
        model_obj(uid="uid-2"),
        _known(applied_generation=4),
        ["Delete", "Apply"],
        "replaced",
    ),
    Row(
        "new uid after the old one was cleaned up just applies",
        EventType.ADDED,
        model_obj(uid="uid-2"),
        _known(deleting=True),
        ["Apply"],
    ),
    Row(
        "deleting with our finalizer deletes",
        EventType.MODIFIED,
        model_obj(deleting=True, finalizer=True),
        want=["Delete"],
        why="deletionTimestamp",
    ),
    Row(
        "deleting with our finalizer, already requested",
        EventType.MODIFIED,
        model_obj(deleting=True, finalizer=True),
        _known(deleting=True),
        ["Ignore"],
        "already requested",
    ),
    Row(
        "deleting without our finalizer: nothing to clean",
        EventType.MODIFIED,
        model_obj(deleting=True),
        _known(applied_generation=1),
        ["Ignore"],
        "without our finalizer",
    ),
    Row(
        "deleting a malformed object still cleans up",
        EventType.MODIFIED,
        model_obj(deleting=True, finalizer=True, uri="ftp://nope"),
        want=["Delete"],
    ),
    Row(
        "malformed spec is marked invalid", EventType.ADDED, model_obj(uri="ftp://nope"), want=["MarkInvalid"]
    ),
    Row(
        "malformed spec already marked for this generation",
        EventType.MODIFIED,
        model_obj(uri="ftp://nope", generation=3),
        _known(invalid_generation=3),
        ["Ignore"],
        "already reported",
    ),
    Row(
        "status already says invalid (e.g. after a watcher restart)",
        EventType.ADDED,
        {**_MISSPELT, "status": INVALID_STATUS},
        want=["Ignore"],
        why="status already",
    ),
    Row(
        "malformed new generation is marked again",
        EventType.MODIFIED,
        model_obj(uri="ftp://nope", generation=4),
        _known(invalid_generation=3, applied_generation=2),
        ["MarkInvalid"],
    ),
    Row(
        "a status we cannot read is not a spec problem",
        EventType.ADDED,
        model_obj(status={"weird": True}),
        want=["Apply"],
    ),
    Row(
        "gone while known deletes",
        EventType.DELETED,
        model_obj(),
        _known(applied_generation=1),
        ["Delete"],
        "gone",
    ),
    Row(
        "gone while marked invalid deletes too",
        EventType.DELETED,
        model_obj(),
        _known(invalid_generation=1),
        ["Delete"],
    ),
    Row("gone, never seen", EventType.DELETED, model_obj(), want=["Ignore"]),
    Row(
        "gone after cleanup was requested", EventType.DELETED, model_obj(), _known(deleting=True), ["Ignore"]
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_model_rule(row: Row) -> None:
    decisions = decide(ModelEvent(row.type, BM, row.obj), row.known)
    assert [type(d).__name__ for d in decisions] == row.want
    if row.why:
        assert any(row.why in getattr(d, "why", "") for d in decisions), decisions


def test_apply_carries_the_revision_and_placement() -> None:
    obj = model_obj(
        generation=7,
        annotations={"a": "b", "ome.io/skip-config-parsing": "true"},
        node_selector={"gpu": "a100"},
        disabled=True,
    )
    [decision] = decide(ModelEvent(EventType.ADDED, BM, obj), Known())
    assert isinstance(decision, Apply)
    assert decision.ref == REF
    assert decision.revision.generation == 7
    assert decision.revision.uid == "uid-1"
    assert decision.revision.annotations == {"ome.io/skip-config-parsing": "true"}
    assert wire_spec(decision.revision.spec) == obj["spec"]  # typed, and OME's JSON on the wire
    obj["spec"]["storage"]["path"] = "/raid/models/elsewhere"  # later edits of the event do not leak
    assert (
        decision.revision.spec is not None and decision.revision.spec.storage.path != "/raid/models/elsewhere"
    )
    assert decision.placement == Placement(disabled=True, node_selector={"gpu": "a100"})


def test_mark_invalid_names_field_and_rule() -> None:
    obj = model_obj(
        uri="ftp://nope",
        generation=5,
        status={"state": "Creating", "conditions": [{"type": "Other", "status": "True"}]},
    )
    [decision] = decide(ModelEvent(EventType.ADDED, BM, obj), Known())
    assert isinstance(decision, MarkInvalid)
    assert decision.field == "spec.storage.storageUri"
    assert "unsupported scheme 'ftp'" in decision.rule
    assert decision.message.startswith("spec.storage.storageUri: storage URI 'ftp://nope'")
    assert decision.generation == 5


def test_new_uid_deletes_the_old_ref() -> None:
    old = ModelRef(kind=BM, name="llama", namespace="team-a", uid="uid-old")
    decisions = decide(
        ModelEvent(EventType.ADDED, BM, model_obj(uid="uid-new")), _known(ref=old, applied_generation=1)
    )
    assert isinstance(decisions[0], Delete) and decisions[0].ref == old
    assert isinstance(decisions[1], Apply) and decisions[1].ref.uid == "uid-new"


@pytest.mark.parametrize("kind", [ModelKind.CLUSTER_BASE_MODEL, ModelKind.FINE_TUNED_WEIGHT])
def test_cluster_scoped_kinds_have_no_namespace(kind: ModelKind) -> None:
    obj = model_obj(kind=kind)
    [decision] = decide(ModelEvent(EventType.ADDED, kind, obj), Known())
    assert isinstance(decision, Apply)
    assert decision.ref.namespace is None and decision.ref.kind is kind
    assert model_key(kind, obj) == (kind, None, "llama")


def test_remember_then_decide_again_is_quiet() -> None:
    """The decide → act → remember loop: each outcome makes the same event a no-op."""
    known = Known()
    cases = [
        (EventType.ADDED, model_obj()),
        (EventType.MODIFIED, model_obj(generation=2, uri="ftp://nope")),
        (EventType.MODIFIED, model_obj(generation=2, deleting=True, finalizer=True)),
    ]
    for event_type, obj in cases:
        event = ModelEvent(event_type, BM, obj)
        decisions = decide(event, known)
        assert not isinstance(decisions[0], Ignore)
        remember(known, event, decisions)
        assert [type(d) for d in decide(event, known)] == [Ignore]
    gone = ModelEvent(EventType.DELETED, BM, model_obj())
    remember(known, gone, decide(gone, known))
    assert known.models == {}


def test_unremembered_decision_is_decided_again() -> None:
    """A failed act is not remembered, so the next event (even a status-only one) retries it."""
    known = Known()
    first = decide(ModelEvent(EventType.ADDED, BM, model_obj()), known)
    status_write = decide(ModelEvent(EventType.MODIFIED, BM, model_obj(status={"state": "Creating"})), known)
    assert [type(d) for d in first] == [type(d) for d in status_write] == [Apply]


def test_a_revision_carries_only_the_annotations_the_workflows_read():
    big = '{"apiVersion": "ome.io/v1beta1", "spec": {' + '"x": 1, ' * 2000 + "}}"
    obj = model_obj(
        annotations={
            "kubectl.kubernetes.io/last-applied-configuration": big,
            "ome.io/skip-config-parsing": "true",
            "team": "search",
        }
    )
    [apply] = decide(ModelEvent(EventType.ADDED, BM, obj), Known())
    assert isinstance(apply, Apply)
    assert apply.revision.annotations == {"ome.io/skip-config-parsing": "true"}
