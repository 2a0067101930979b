"""What the watcher asks of Temporal: the boundary between the watcher and the workflows.

The watcher only decides *which* model changed; `TemporalGateway` (in `watcher.temporal`) turns
that into signal-with-start calls on the model's stable workflow ID, so restarts and resyncs are
idempotent: a workflow ignores a revision whose generation it already has. The watcher writes no
status: a refused spec is signalled too, and the workflow, the one writer of status, reports it.
"""

from __future__ import annotations

from typing import Protocol

from modelferry.messages import AdminAction, AdminPlan, AdminRequest, InvalidRevision, ModelRef, ModelRevision


class WorkflowGateway(Protocol):
    async def apply_model(self, *, ref: ModelRef, revision: ModelRevision) -> None:
        """Start the model's workflow, or signal the running one with this revision."""
        ...

    async def mark_invalid(self, *, ref: ModelRef, invalid: InvalidRevision) -> None:
        """This generation's spec is refused: the model's workflow (started if none runs) reports it
        in the status, which only the workflow writes."""
        ...

    async def delete_model(self, *, ref: ModelRef) -> None:
        """The resource is being deleted (deletionTimestamp set, our finalizer present)."""
        ...

    async def placement_changed(self, *, ref: ModelRef, reason: str) -> None:
        """A node relevant to this model appeared, disappeared or changed labels."""
        ...

    async def admin_action(self, *, ref: ModelRef, action: AdminAction, request: AdminRequest) -> AdminPlan:
        """Run an admin action (an Update on the model's workflow) and return its accepted plan;
        raises `AdminRequestRefusedError` when the workflow refuses it, `ModelWorkflowNotFoundError`
        when no workflow runs for the model."""
        ...
