"""Turn an activity failure into a node's reason, message and whether a later retry can help."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

# Failures only a change to the resource can fix. Every other failure can heal by itself (space
# freed, a source or claim created, a Secret rotated, another model deleted, a worker started),
# so the node is tried again on the model's retry timer, with the message measured afresh.
NEEDS_SPEC_CHANGE = frozenset(
    {"InvalidSpecError", "InvalidStorageUriError", "UnsafePathError", "TenancyError"}
)


@dataclass(frozen=True)
class NodeFailure:
    reason: str
    message: str
    retryable: bool  # may another activity attempt help (Temporal's non_retryable, inverted)

    @property
    def heals(self) -> bool:
        """May the node succeed later without a new generation of the resource?"""
        return self.retryable or self.reason not in NEEDS_SPEC_CHANGE


def describe_failure(err: BaseException) -> NodeFailure:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, TimeoutError):
        if cause.type == TimeoutType.SCHEDULE_TO_START:
            return NodeFailure(
                "NodeWorkerUnavailable",
                "no worker picked up the node's work in time "
                "(node gone, unschedulable, or worker not running)",
                True,
            )
        if cause.type == TimeoutType.HEARTBEAT:
            return NodeFailure("WorkerLost", "the node worker stopped heartbeating", True)
        return NodeFailure(
            "Timeout", f"activity timed out ({cause.type.name if cause.type else 'unknown'})", True
        )
    if isinstance(cause, ApplicationError):
        return NodeFailure(cause.type or "Error", cause.message, not cause.non_retryable)
    return NodeFailure(type(cause).__name__ if cause else "Error", str(cause or err), True)
