"""Carry out one decision of `watcher.decide`, and retry it with backoff while retrying can help.

Every decision goes to the `WorkflowGateway` (Temporal). MarkInvalid too: the watcher writes no
status, since a status with two writers goes back in time (the watcher reporting generation N+1
invalid, then the workflow finishing generation N's Ready over it). It signals the model's
workflow, started if none runs, with the generation, field and rule; the workflow writes state
Failed and a `Ready=False` condition with reason InvalidSpec for that generation.

Retrying follows the two kinds of `modelferry.errors`: a temporary error (Temporal or the API
server down, a conflict, anything unknown) is retried with capped exponential backoff, honouring
`retry_after`; a permanent one (forbidden, not found, invalid) is logged and given up, and the next
event for the object decides afresh. While a retry waits, a newer event for the same object may
arrive: an Apply, PlacementChanged or MarkInvalid then stops (the newer event is decided against
the same knowledge, so nothing is lost); a Delete is never dropped.

An admin action (RunAdminAction, from an annotation) that the model's workflow refuses (its
validator's answer: an unknown node, a version not kept, nothing failed to retry), or that finds no
workflow, is done, not failed: one WARNING with the workflow's words, and the value is remembered,
so the same annotation value is not sent again on every event or resync. Temporal unreachable is
temporary like for any other decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelferry.errors import (
    AdminRequestRefusedError,
    ModelWorkflowNotFoundError,
    TemporaryError,
    is_retryable,
)
from modelferry.messages import InvalidRevision
from watcher.decide import (
    Apply,
    Decision,
    Delete,
    Ignore,
    MarkInvalid,
    PlacementChanged,
    RunAdminAction,
)
from watcher.gateway import WorkflowGateway

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1  # ± fraction, so many failing objects do not retry in lockstep

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor**attempt)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_BACKOFF = Backoff()


class Outcome(StrEnum):
    DONE = "done"
    GAVE_UP = "gave up"  # a permanent error
    SUPERSEDED = "superseded"  # a newer event for the object arrived while retrying


def invalid_revision(decision: MarkInvalid) -> InvalidRevision:
    """What the workflow is told about a refused generation: which one, and the field and rule."""
    return InvalidRevision(
        generation=decision.generation, field=decision.field, rule=decision.rule, uid=decision.ref.uid
    )


async def carry_out(
    decision: Decision,
    *,
    gateway: WorkflowGateway,
) -> None:
    """Perform one decision once; raises whatever the gateway or the API raised."""
    match decision:
        case Apply(ref=ref, revision=revision):
            await gateway.apply_model(ref=ref, revision=revision)
        case Delete(ref=ref):
            await gateway.delete_model(ref=ref)
        case PlacementChanged(ref=ref, reason=reason):
            await gateway.placement_changed(ref=ref, reason=reason)
        case MarkInvalid(ref=ref):
            await gateway.mark_invalid(ref=ref, invalid=invalid_revision(decision))
        case RunAdminAction(ref=ref, action=action, request=request, annotation=annotation, value=value):
            try:
                plan = await gateway.admin_action(ref=ref, action=action, request=request)
            except (AdminRequestRefusedError, ModelWorkflowNotFoundError) as refused:
                log.warning("%s=%s on %s refused: %s", annotation, value, ref.display(), refused)
                return
            if plan.already_handled:
                log.info("%s=%s on %s: already handled", annotation, value, ref.display())
            else:
                log.info("%s=%s on %s: %s %s", annotation, value, ref.display(), action.value, plan.nodes)
        case Ignore():
            pass


async def carry_out_with_retry(
    decision: Decision,
    *,
    gateway: WorkflowGateway,
    backoff: Backoff,
    superseded: Callable[[], bool] = lambda: False,
    slots: asyncio.Semaphore | None = None,
) -> Outcome:
    """Carry out `decision`, retrying temporary failures until done, superseded or permanent.

    `slots` bounds concurrent attempts across objects; it is held per attempt, never while
    waiting to retry, so objects that keep failing cannot starve the others.
    """
    attempt = 0
    droppable = not isinstance(decision, Delete)
    while True:
        try:
            async with slots or contextlib.nullcontext():
                await carry_out(decision, gateway=gateway)
            if attempt:
                log.info("%s succeeded after %d retries", _describe(decision), attempt)
            return Outcome.DONE
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not is_retryable(error):
                log.error("%s failed permanently: %s", _describe(decision), error)
                return Outcome.GAVE_UP
            if droppable and superseded():
                log.info("%s failed; a newer event supersedes it: %s", _describe(decision), error)
                return Outcome.SUPERSEDED
            retry_after = error.retry_after if isinstance(error, TemporaryError) else None
            delay = retry_after if retry_after is not None else backoff.delay(attempt)
            attempt += 1
            log.warning(
                "%s failed (attempt %d), retrying in %.1fs: %s", _describe(decision), attempt, delay, error
            )
            await asyncio.sleep(delay)
            if droppable and superseded():
                return Outcome.SUPERSEDED


def _describe(decision: Decision) -> str:
    ref = getattr(decision, "ref", None)
    where = ref.display() if ref is not None else ""
    return f"{type(decision).__name__} {where}".strip()


def describe_decisions(decisions: list[Decision] | tuple[Decision, ...]) -> list[Mapping[str, Any]]:
    """A log-friendly summary of decisions (type, ref, and the detail that matters)."""
    summary: list[Mapping[str, Any]] = []
    for d in decisions:
        item: dict[str, Any] = {"decision": type(d).__name__}
        if isinstance(d, Ignore):
            item["why"] = d.why
        else:
            item["ref"] = d.ref.display()
        if isinstance(d, Apply):
            item["generation"] = d.revision.generation
        if isinstance(d, PlacementChanged | Delete):
            item["reason"] = d.reason if isinstance(d, PlacementChanged) else d.why
        if isinstance(d, MarkInvalid):
            item["message"] = d.message
        if isinstance(d, RunAdminAction):
            item["annotation"] = f"{d.annotation}={d.value}"
        summary.append(item)
    return summary
