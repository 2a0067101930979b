"""Admin annotations (`modelferry.io/redownload`, `retry`, `rollback: <version>`): each new value
runs its action once (decided on the "generation already applied" path too, since annotations do
not bump the generation); a refusal is one WARNING and is not sent again; Temporal unreachable is
retried like any other act."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from watcher_builders import model_obj
from watcher_fakes import RecordingGateway

from modelferry.errors import AdminRequestRefusedError, TemporaryError
from modelferry.messages import AdminAction, AdminRequest, ModelRef
from modelferry.names import (
    ADMIN_REASON_ANNOTATION,
    REDOWNLOAD_ANNOTATION,
    RETRY_ANNOTATION,
    ROLLBACK_ANNOTATION,
    ModelKind,
)
from watcher.act import Backoff, Outcome, carry_out_with_retry
from watcher.decide import (
    Apply,
    Decision,
    EventType,
    Ignore,
    Known,
    KnownModel,
    ModelEvent,
    RunAdminAction,
    decide,
    remember,
)

BM = ModelKind.BASE_MODEL
KEY = (BM, "team-a", "llama")
REF = ModelRef(kind=BM, name="llama", namespace="team-a", uid="uid-1")


def known(applied: int = 1, seen: dict[str, str] | None = None, uid: str = "uid-1") -> Known:
    k = Known()
    k.models[KEY] = KnownModel(
        ref=REF.model_copy(update={"uid": uid}), applied_generation=applied, admin_seen=dict(seen or {})
    )
    return k


def kinds(decisions: list[Decision]) -> list[str]:
    out = []
    for d in decisions:
        if isinstance(d, RunAdminAction):
            out.append(f"{d.action.value}:{d.value}")
        else:
            out.append(type(d).__name__)
    return out


@dataclass
class Row:
    id: str
    annotations: dict[str, str]
    known: Known = field(default_factory=known)
    generation: int = 1
    event: EventType = EventType.MODIFIED
    expected: list[str] = field(default_factory=list)


ROWS = [
    Row("no annotation: as before", {}, expected=["Ignore"]),
    Row("redownload, new value", {REDOWNLOAD_ANNOTATION: "1"}, expected=["redownload:1"]),
    Row("retry, new value on resync", {RETRY_ANNOTATION: "a"}, event=EventType.RESYNC, expected=["retry:a"]),
    Row(
        "value already acted on",
        {REDOWNLOAD_ANNOTATION: "1"},
        known=known(seen={REDOWNLOAD_ANNOTATION: "1"}),
        expected=["Ignore"],
    ),
    Row(
        "a changed value runs again",
        {REDOWNLOAD_ANNOTATION: "2"},
        known=known(seen={REDOWNLOAD_ANNOTATION: "1"}),
        expected=["redownload:2"],
    ),
    Row("rollback carries its version", {ROLLBACK_ANNOTATION: "v1"}, expected=["rollback:v1"]),
    Row(
        "all three, in a fixed order",
        {ROLLBACK_ANNOTATION: "v1", RETRY_ANNOTATION: "x", REDOWNLOAD_ANNOTATION: "y"},
        expected=["redownload:y", "retry:x", "rollback:v1"],
    ),
    Row(
        "first sight after a restart: Apply, then the action",
        {RETRY_ANNOTATION: "x"},
        known=Known(),
        event=EventType.ADDED,
        expected=["Apply", "retry:x"],
    ),
    Row(
        "a new generation and a new value",
        {RETRY_ANNOTATION: "x"},
        generation=2,
        expected=["Apply", "retry:x"],
    ),
    Row(
        "a new uid under the name forgets what the old one saw",
        {RETRY_ANNOTATION: "x"},
        known=known(seen={RETRY_ANNOTATION: "x"}, uid="uid-0"),
        expected=["Delete", "Apply", "retry:x"],
    ),
    Row(
        "other annotations are not actions",
        {"example.com/x": "1", ADMIN_REASON_ANNOTATION: "why"},
        expected=["Ignore"],
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decisions(row: Row) -> None:
    obj = model_obj(annotations=row.annotations, generation=row.generation)
    assert kinds(decide(ModelEvent(row.event, BM, obj), row.known)) == row.expected


def test_the_request_carries_token_requester_reason_and_version() -> None:
    obj = model_obj(annotations={ROLLBACK_ANNOTATION: "v1", ADMIN_REASON_ANNOTATION: "bad answers"})
    (decision,) = decide(ModelEvent(EventType.MODIFIED, BM, obj), known())
    assert isinstance(decision, RunAdminAction)
    assert decision.request == AdminRequest(
        reason="bad answers",
        requested_by=f"annotation:{ROLLBACK_ANNOTATION}",
        to_version="v1",
        token=f"{ROLLBACK_ANNOTATION}=v1",
    )
    assert decision.ref == REF


def test_remembered_values_are_not_sent_again() -> None:
    k = Known()
    obj = model_obj(annotations={REDOWNLOAD_ANNOTATION: "1"})
    event = ModelEvent(EventType.ADDED, BM, obj)
    decisions = decide(event, k)
    assert kinds(decisions) == ["Apply", "redownload:1"]
    remember(k, event, decisions)
    assert k.models[KEY].admin_seen == {REDOWNLOAD_ANNOTATION: "1"}
    assert decide(ModelEvent(EventType.RESYNC, BM, obj), k) == [Ignore("resync: generation already applied")]
    # an Apply carried out without its action (the act failed) leaves the value to decide again
    k2 = Known()
    remember(k2, event, [d for d in decisions if isinstance(d, Apply)])
    assert kinds(decide(ModelEvent(EventType.MODIFIED, BM, obj), k2)) == ["redownload:1"]


# --- acting --------------------------------------------------------------------------------------


class RefusingGateway(RecordingGateway):
    """Stands in for the model workflow's validator: refuses every admin action."""

    async def admin_action(self, *, ref: ModelRef, action: AdminAction, request: AdminRequest) -> Any:
        self.attempts += 1
        raise AdminRequestRefusedError("version v9 is not kept on n1 (kept: v1)")


def admin_decision() -> RunAdminAction:
    obj = model_obj(annotations={ROLLBACK_ANNOTATION: "v9"})
    (decision,) = decide(ModelEvent(EventType.MODIFIED, BM, obj), known())
    assert isinstance(decision, RunAdminAction)
    return decision


FAST = Backoff(initial=0.001, maximum=0.001, jitter=0)


def test_a_refusal_is_one_warning_without_traceback_and_done(caplog: pytest.LogCaptureFixture) -> None:
    gateway = RefusingGateway()
    with caplog.at_level(logging.INFO, logger="watcher.act"):
        outcome = asyncio.run(carry_out_with_retry(admin_decision(), gateway=gateway, backoff=FAST))
    assert outcome is Outcome.DONE and gateway.attempts == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING and warnings[0].exc_info is None
    assert "version v9 is not kept on n1" in warnings[0].getMessage()
    assert f"{ROLLBACK_ANNOTATION}=v9" in warnings[0].getMessage()


def test_temporal_unreachable_is_retried_then_sent() -> None:
    gateway = RecordingGateway(failures=[TemporaryError("temporal down"), ConnectionError("refused")])
    decision = admin_decision()
    outcome = asyncio.run(carry_out_with_retry(decision, gateway=gateway, backoff=FAST))
    assert outcome is Outcome.DONE and gateway.attempts == 3
    ((verb, ref, (action, request)),) = gateway.calls
    assert (verb, ref, action) == ("admin", REF, AdminAction.ROLLBACK)
    assert request.token == f"{ROLLBACK_ANNOTATION}=v9" and request.to_version == "v9"
