"""Carrying out decisions: the status patch for an invalid spec, and the retry rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from watcher_fakes import RecordingGateway

from modelferry.errors import KubeForbiddenError, KubeUnavailableError, TemporaryError
from modelferry.messages import ModelRef, ModelRevision
from modelferry.names import ModelKind
from watcher.act import Backoff, Outcome, carry_out, carry_out_with_retry, invalid_status_patch
from watcher.decide import Apply, Delete, MarkInvalid, Placement, PlacementChanged

REF = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama", uid="u1")
NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FAST = Backoff(initial=0.001, maximum=0.005)
APPLY = Apply(REF, ModelRevision(generation=2, spec={}, uid="u1"), Placement())


class Statuses:
    def __init__(self, error: Exception | None = None) -> None:
        self.patches: list[tuple[ModelKind, str | None, str, dict[str, Any]]] = []
        self.error = error

    def patch_model_status(
        self, *, kind: ModelKind, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        if self.error:
            raise self.error
        self.patches.append((kind, namespace, name, body))
        return {}


def test_invalid_status_patch_replaces_ready_and_keeps_other_conditions() -> None:
    decision = MarkInvalid(
        REF,
        generation=4,
        field="spec.storage.path",
        rule="must be absolute",
        conditions=(
            {"type": "Downloaded", "status": "True"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "x"},
        ),
    )
    status = invalid_status_patch(decision, now=NOW)["status"]
    assert status["state"] == "Failed"
    assert status["observedGeneration"] == 4
    assert status["conditions"] == [
        {"type": "Downloaded", "status": "True"},
        {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": "spec.storage.path: must be absolute",
            "lastTransitionTime": "2026-11-22T12:00:00Z",
            "observedGeneration": 4,
        },
    ]


def test_invalid_status_patch_keeps_the_transition_time_while_still_false() -> None:
    earlier = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    decision = MarkInvalid(REF, generation=5, field="spec.x", rule="bad", conditions=(earlier,))
    [ready] = invalid_status_patch(decision, now=NOW)["status"]["conditions"]
    assert ready["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert ready["observedGeneration"] == 5


async def test_each_decision_goes_to_its_call() -> None:
    gateway, statuses = RecordingGateway(), Statuses()
    for decision in (
        APPLY,
        Delete(REF, why="gone"),
        PlacementChanged(REF, node="n1", eligible=True, reason="node n1 appeared"),
        MarkInvalid(REF, generation=1, field="spec.a", rule="b"),
    ):
        await carry_out(decision, gateway=gateway, status_writer=statuses, now=lambda: NOW)
    assert [c[0] for c in gateway.calls] == ["apply", "delete", "placement"]
    assert gateway.calls[2][2] == "node n1 appeared"
    assert [(p[0], p[1], p[2]) for p in statuses.patches] == [(ModelKind.CLUSTER_BASE_MODEL, None, "llama")]


async def test_temporary_failures_are_retried_until_done() -> None:
    gateway = RecordingGateway(
        failures=[KubeUnavailableError("down"), RuntimeError("unknown: treated as temporary")]
    )
    assert (
        await carry_out_with_retry(APPLY, gateway=gateway, status_writer=Statuses(), backoff=FAST)
        is Outcome.DONE
    )
    assert gateway.attempts == 3 and len(gateway.of("apply")) == 1


async def test_permanent_failure_gives_up() -> None:
    statuses = Statuses(error=KubeForbiddenError("no RBAC for status", status=403))
    decision = MarkInvalid(REF, generation=1, field="spec.a", rule="b")
    assert (
        await carry_out_with_retry(decision, gateway=RecordingGateway(), status_writer=statuses, backoff=FAST)
        is Outcome.GAVE_UP
    )


async def test_retry_after_is_honoured() -> None:
    gateway = RecordingGateway(failures=[TemporaryError("throttled", retry_after=0.05)])
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    await carry_out_with_retry(APPLY, gateway=gateway, status_writer=Statuses(), backoff=FAST)
    assert loop_time() - started >= 0.05


@pytest.mark.parametrize(
    ("decision", "outcome"), [(APPLY, Outcome.SUPERSEDED), (Delete(REF, why="gone"), Outcome.DONE)]
)
async def test_a_newer_event_supersedes_a_retrying_apply_but_never_a_delete(
    decision: Any, outcome: Outcome
) -> None:
    gateway = RecordingGateway(failures=[KubeUnavailableError("down")] * 3)
    result = await carry_out_with_retry(
        decision, gateway=gateway, status_writer=Statuses(), backoff=FAST, superseded=lambda: True
    )
    assert result is outcome
