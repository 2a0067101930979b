"""Carrying out decisions: a refused spec is signalled to the model's workflow (the one writer of
status) and the status it writes for it, and the retry rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from watcher_fakes import RecordingGateway

from modelferry.errors import KubeForbiddenError, KubeUnavailableError, TemporaryError
from modelferry.messages import ModelRef, ModelRevision
from modelferry.modelstatus import invalid_status, merge_transition_times
from modelferry.names import ModelKind
from watcher.act import Backoff, Outcome, carry_out, carry_out_with_retry, invalid_revision
from watcher.decide import Apply, Delete, MarkInvalid, Placement, PlacementChanged

REF = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama", uid="u1")
NOW = "2026-11-22T12:00:00Z"
FAST = Backoff(initial=0.001, maximum=0.005)
APPLY = Apply(REF, ModelRevision(generation=2, spec={}, uid="u1"), Placement())


def written_status(decision: MarkInvalid, current: dict[str, Any]) -> dict[str, Any]:
    """What reaches the resource for `decision`: the workflow builds the status from what it last
    wrote (`current`), the status activity stamps the transition times against the object's."""
    invalid = invalid_revision(decision)
    status = invalid_status(current, generation=invalid.generation, message=invalid.message)
    return merge_transition_times(current, status, now=NOW)


def test_invalid_status_replaces_ready_and_keeps_other_conditions() -> None:
    decision = MarkInvalid(REF, generation=4, field="spec.storage.path", rule="must be absolute")
    current = {
        "conditions": [
            {"type": "Downloaded", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "x"},
        ]
    }
    status = written_status(decision, current)
    assert status["state"] == "Failed"
    assert status["observedGeneration"] == 4
    assert status["conditions"] == [
        {"type": "Downloaded", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": "spec.storage.path: must be absolute",
            "lastTransitionTime": "2026-11-22T12:00:00Z",
            "observedGeneration": 4,
        },
    ]


def test_invalid_status_keeps_the_transition_time_while_still_false() -> None:
    earlier = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    decision = MarkInvalid(REF, generation=5, field="spec.x", rule="bad")
    [ready] = written_status(decision, {"conditions": [earlier]})["conditions"]
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready["observedGeneration"] == 5


def test_a_never_delivered_resource_gets_the_refusal_alone() -> None:
    decision = MarkInvalid(REF, generation=1, field="", rule="spec is not an object")
    assert invalid_status(None, generation=1, message=invalid_revision(decision).message) == {
        "state": "Failed",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": "spec is not an object",
                "observedGeneration": 1,
            }
        ],
    }


async def test_each_decision_goes_to_the_workflow_and_no_status_is_written_here() -> None:
    gateway = RecordingGateway()
    for decision in (
        APPLY,
        Delete(REF, why="gone"),
        PlacementChanged(REF, node="n1", eligible=True, reason="node n1 appeared"),
        MarkInvalid(REF, generation=3, field="spec.a", rule="b"),
    ):
        await carry_out(decision, gateway=gateway)
    assert [c[0] for c in gateway.calls] == ["apply", "delete", "placement", "invalid"]
    assert gateway.calls[2][2] == "node n1 appeared"
    invalid = gateway.calls[3][2]
    assert (invalid.generation, invalid.field, invalid.rule, invalid.uid) == (3, "spec.a", "b", "u1")
    assert invalid.message == "spec.a: b"


async def test_temporary_failures_are_retried_until_done() -> None:
    gateway = RecordingGateway(
        failures=[KubeUnavailableError("down"), RuntimeError("unknown: treated as temporary")]
    )
    assert await carry_out_with_retry(APPLY, gateway=gateway, backoff=FAST) is Outcome.DONE
    assert gateway.attempts == 3 and len(gateway.of("apply")) == 1


async def test_permanent_failure_gives_up() -> None:
    gateway = RecordingGateway(failures=[KubeForbiddenError("no RBAC", status=403)])
    decision = MarkInvalid(REF, generation=1, field="spec.a", rule="b")
    assert await carry_out_with_retry(decision, gateway=gateway, backoff=FAST) is Outcome.GAVE_UP
    assert gateway.of("invalid") == []


async def test_retry_after_is_honoured() -> None:
    gateway = RecordingGateway(failures=[TemporaryError("throttled", retry_after=0.05)])
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    await carry_out_with_retry(APPLY, gateway=gateway, backoff=FAST)
    assert loop_time() - started >= 0.05


@pytest.mark.parametrize(
    ("decision", "outcome"),
    [
        (APPLY, Outcome.SUPERSEDED),
        (MarkInvalid(REF, generation=1, field="spec.a", rule="b"), Outcome.SUPERSEDED),
        (Delete(REF, why="gone"), Outcome.DONE),
    ],
)
async def test_a_newer_event_supersedes_a_retrying_apply_but_never_a_delete(
    decision: Any, outcome: Outcome
) -> None:
    gateway = RecordingGateway(failures=[KubeUnavailableError("down")] * 3)
    result = await carry_out_with_retry(decision, gateway=gateway, backoff=FAST, superseded=lambda: True)
    assert result is outcome
