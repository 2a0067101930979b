"""The Temporal side of the watcher: signal-with-start on each model's stable workflow ID.

`start_workflow(..., start_signal=..., id_conflict_policy=USE_EXISTING)` starts the workflow if it
is not running and otherwise only delivers the signal, so a watcher restart or a resync never
creates a duplicate. Search attributes set at start make a model's history findable with
`temporal workflow list --query 'ModelName="x"'`.

Every Apply also hands a running workflow this watcher's `PipelineOptions` (built from its settings
by `modelferry.options.pipeline_options`): a workflow keeps its options across continue-as-new, so
without this a changed setting would never reach a model that is already running.

A refused spec is signalled the same way (`mark_invalid`), so the workflow, the one writer of a
resource's status, reports it, and a resource never applied still gets a run that does.

Admin annotations become the workflow's admin Updates (`watcher.admin`, shared with the CLI).
"""

from __future__ import annotations

from temporalio.client import Client, RPCError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCStatusCode

from modelferry.messages import (
    AdminAction,
    AdminPlan,
    AdminRequest,
    InvalidRevision,
    ModelRef,
    ModelRevision,
    ModelWorkflowInput,
    PipelineOptions,
)
from modelferry.names import CONTROL_TASK_QUEUE, model_workflow_id
from watcher.admin import run_admin_action
from workflows.model import ModelWorkflow
from workflows.policies import SA_MODEL_KIND, SA_MODEL_NAME, SA_MODEL_NAMESPACE, SA_STORAGE_URI


def workflow_id_for(ref: ModelRef) -> str:
    return model_workflow_id(kind=ref.kind, namespace=ref.namespace, name=ref.name)


class TemporalGateway:
    def __init__(self, *, client: Client, options: PipelineOptions) -> None:
        self._client = client
        self._options = options

    async def _signal_with_start(
        self,
        *,
        inp: ModelWorkflowInput,
        signal: str,
        args: list[ModelRevision] | list[InvalidRevision] | None = None,
    ) -> None:
        """Start the model's workflow if none runs, then deliver `signal` (to it or the running one)."""
        ref = inp.ref
        spec = inp.revision.spec
        storage_uri = spec.storage.storage_uri if spec else ""
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SA_MODEL_NAME, ref.name),
                SearchAttributePair(SA_MODEL_NAMESPACE, ref.namespace or ""),
                SearchAttributePair(SA_MODEL_KIND, ref.kind.value),
                SearchAttributePair(SA_STORAGE_URI, storage_uri),
            ]
        )
        await self._client.start_workflow(
            ModelWorkflow.run,
            inp,
            id=workflow_id_for(ref),
            task_queue=CONTROL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=signal,
            start_signal_args=args or [],
            search_attributes=attributes,
        )

    async def apply_model(self, *, ref: ModelRef, revision: ModelRevision) -> None:
        # Options first, so a running workflow plans this revision with them; a workflow that is
        # not running gets them in the input of the start below.
        try:
            await self._handle(ref).signal(ModelWorkflow.apply_options, self._options)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
        await self._signal_with_start(
            inp=ModelWorkflowInput(ref=ref, revision=revision, options=self._options),
            signal="apply_revision",
            args=[revision],
        )

    async def mark_invalid(self, *, ref: ModelRef, invalid: InvalidRevision) -> None:
        # A resource never applied has no workflow yet: this starts one, with no spec (nothing to
        # deliver), whose first status write reports the refusal.
        await self._signal_with_start(
            inp=ModelWorkflowInput(
                ref=ref,
                revision=ModelRevision(generation=0, spec=None, uid=ref.uid),
                options=self._options,
            ),
            signal="mark_invalid",
            args=[invalid],
        )

    def _handle(self, ref: ModelRef) -> WorkflowHandle:
        return self._client.get_workflow_handle(workflow_id_for(ref))

    async def delete_model(self, *, ref: ModelRef, revision: ModelRevision | None = None) -> None:
        try:
            await self._handle(ref).signal(ModelWorkflow.request_delete)
            return
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
        # No running workflow (it failed, was terminated, or never started): start one whose only
        # job is the cleanup, so nothing is left on the nodes and the finalizer is released.
        await self._signal_with_start(
            inp=ModelWorkflowInput(
                ref=ref,
                revision=revision or ModelRevision(generation=0, spec=None, uid=ref.uid),
                delete_requested=True,
                options=self._options,
            ),
            signal="request_delete",
        )

    async def placement_changed(self, *, ref: ModelRef, reason: str) -> None:
        try:
            await self._handle(ref).signal(ModelWorkflow.placement_changed, reason)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise

    async def admin_action(self, *, ref: ModelRef, action: AdminAction, request: AdminRequest) -> AdminPlan:
        return await run_admin_action(
            self._client, workflow_id=workflow_id_for(ref), action=action, request=request
        )
