"""`ModelWorkflow`: one durable workflow per model resource (ID from kind/namespace/name).

It holds the latest revision the watcher signalled, plans placement, and runs one `NodeWorkflow`
child per node that must get (or lose) the model, in parallel. It writes parsed metadata into the
spec once per delivery (not once per node), and the aggregated status whenever it changes. On a
delete request it removes the model from every node it reached, then releases the finalizer.

It is the one writer of the resource's status. A generation the watcher refused arrives as
`mark_invalid` (signal-with-start, so a resource never applied gets a run that reports it): from
then on every status write describes that generation (InvalidSpec), while what is already on the
nodes stays and keeps serving, until a newer valid generation is applied.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.resources import ResourceActivities
    from modelferry.lifecycle import delivery_fingerprint
    from modelferry.messages import (
        EnsureFinalizerInput,
        InvalidRevision,
        ModelRevision,
        ModelWorkflowInput,
        NodeAction,
        NodeOutcome,
        NodeWorkflowInput,
        PipelineOptions,
        PlanPlacementInput,
        PlanPlacementResult,
        ReleaseFinalizerInput,
        WriteModelStatusInput,
        WriteSpecMetadataInput,
    )
    from modelferry.modelstatus import desired_status, invalid_status
    from modelferry.names import CONTROL_TASK_QUEUE, node_workflow_id
    from modelferry.nodestatus import NodeModelStatus
    from workflows.failures import describe_failure
    from workflows.node import NodeWorkflow, skip_config_parsing
    from workflows.policies import (
        CONTROL_RETRY_SECONDS,
        KUBE_WRITE_RETRY,
        KUBE_WRITE_TIMEOUT,
        SA_MODEL_STATE,
        SA_NODE_NAMES,
    )

# Patches (workflow.patched): each changes the commands a running workflow issues.
PATCH_OPTIONS_FROM_WATCHER = "model-options-from-watcher-v1"  # `apply_options` replaces the options
PATCH_INVALID_SPEC_STATUS = "model-invalid-spec-status-v1"  # `mark_invalid`: InvalidSpec status


@workflow.defn(name="ModelWorkflow")
class ModelWorkflow:
    @workflow.init
    def __init__(self, inp: ModelWorkflowInput) -> None:
        # The timeouts this run started with, until the watcher signals its own (`apply_options`).
        # Set here, not in run(), so a signal handled before run() starts compares against them.
        self._options: PipelineOptions = inp.options
        self._revision: ModelRevision | None = None
        self._dirty = True
        self._delete = False
        self._nodes: dict[str, NodeOutcome] = {}
        self._last_status: dict | None = None
        self._metadata_written_for = ""
        self._state = ""
        self._started_for_delete = False
        self._invalid: InvalidRevision | None = None  # the newest generation the watcher refused
        self._status_due = False  # a refusal arrived that the status does not say yet

    # --- signals and queries ----------------------------------------------------------------

    @workflow.signal(name="apply_revision")
    def apply_revision(self, revision: ModelRevision) -> None:
        current = self._revision
        if current is None or revision.uid != current.uid or revision.generation > current.generation:
            self._revision = revision
            self._dirty = True

    @workflow.signal(name="mark_invalid")
    def mark_invalid(self, invalid: InvalidRevision) -> None:
        """The watcher refused a generation's spec. Nothing on the nodes changes (the version there
        keeps serving); the status reports the refusal until a newer generation is applied."""
        if not self._newer(invalid) or not workflow.patched(PATCH_INVALID_SPEC_STATUS):
            return
        workflow.logger.info("generation %d refused: %s", invalid.generation, invalid.message)
        self._invalid = invalid
        self._status_due = True
        self._dirty = True

    def _newer(self, invalid: InvalidRevision) -> bool:
        known = self._invalid
        if known is not None and invalid.uid == known.uid and invalid.generation <= known.generation:
            return False
        return self._after_revision(invalid)

    def _after_revision(self, invalid: InvalidRevision) -> bool:
        current = self._revision
        return current is None or invalid.uid != current.uid or invalid.generation > current.generation

    def _refused(self) -> InvalidRevision | None:
        """The refused generation the status must describe: one newer than the revision applied."""
        invalid = self._invalid
        return invalid if invalid is not None and self._after_revision(invalid) else None

    @workflow.signal(name="apply_options")
    def apply_options(self, options: PipelineOptions) -> None:
        """The watcher's current settings. Adopted, and carried over continue-as-new, so a changed
        setting reaches a model whose workflow started long ago; node work already running keeps
        the options it started with."""
        if options != self._options and workflow.patched(PATCH_OPTIONS_FROM_WATCHER):
            self._options = options

    @workflow.signal(name="request_delete")
    def request_delete(self) -> None:
        self._delete = True

    @workflow.signal(name="placement_changed")
    def placement_changed(self, reason: str) -> None:
        workflow.logger.info("placement changed: %s", reason)
        self._dirty = True

    @workflow.query(name="nodes")
    def nodes(self) -> dict[str, NodeOutcome]:
        return dict(self._nodes)

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    # --- main loop --------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ModelWorkflowInput) -> str:
        self._ref = inp.ref
        self.apply_revision(inp.revision)
        self._nodes = dict(inp.nodes)
        self._metadata_written_for = inp.spec_metadata_written_for
        self._delete = self._delete or inp.delete_requested
        self._started_for_delete = inp.delete_requested and not inp.nodes
        if inp.invalid is not None and self._newer(inp.invalid):
            self._invalid = inp.invalid  # carried over continue-as-new
        if not self._delete:
            await self._best_effort(ResourceActivities.ensure_finalizer, EnsureFinalizerInput(ref=self._ref))
        control_failed = False
        while True:
            if self._delete:
                await self._delete_everywhere()
                return "Deleted"
            if self._dirty:
                self._dirty = False
                try:
                    await self._reconcile()
                    control_failed = False
                except ActivityError as err:
                    # The Kubernetes API stayed unreachable (or refused us) through the activity's
                    # retries: keep the workflow, try the whole reconcile again shortly.
                    workflow.logger.error("reconcile failed, retrying in %ss: %s", CONTROL_RETRY_SECONDS, err)
                    control_failed = True
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                assert self._revision is not None
                workflow.continue_as_new(
                    ModelWorkflowInput(
                        ref=self._ref,
                        revision=self._revision,
                        nodes=self._nodes,
                        delete_requested=self._delete,
                        spec_metadata_written_for=self._metadata_written_for,
                        options=self._options,
                        invalid=self._refused(),
                    )
                )
            retry_failed = any(
                o.state == NodeModelStatus.FAILED and o.retryable for o in self._nodes.values()
            )
            timeout = timedelta(seconds=self._options.failed_node_retry_seconds) if retry_failed else None
            if control_failed:
                timeout = timedelta(seconds=CONTROL_RETRY_SECONDS)
            try:
                await workflow.wait_condition(lambda: self._dirty or self._delete, timeout=timeout)
            except TimeoutError:
                self._dirty = True  # time to retry nodes whose failure may have been temporary

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._options.max_history_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    async def _control(self, method, arg):  # type: ignore[no-untyped-def]
        return await workflow.execute_activity_method(
            method,
            arg,
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=KUBE_WRITE_TIMEOUT,
            retry_policy=KUBE_WRITE_RETRY,
        )

    async def _best_effort(self, method, arg) -> bool:  # type: ignore[no-untyped-def]
        """A control write whose failure must not stop the model's workflow; False if it failed."""
        try:
            await self._control(method, arg)
            return True
        except ActivityError as err:
            workflow.logger.error("%s failed: %s", getattr(method, "__name__", method), err)
            return False

    async def _plan(self) -> PlanPlacementResult:
        assert self._revision is not None
        return await self._control(
            ResourceActivities.plan_placement, PlanPlacementInput(ref=self._ref, spec=self._revision.spec)
        )

    def _needs_delivery(self, node: str, fingerprint: str, generation: int) -> bool:
        outcome = self._nodes.get(node)
        if outcome is None or outcome.fingerprint != fingerprint:
            return True
        if outcome.state == NodeModelStatus.READY:
            return False
        # A permanent failure waits for a new generation (a fixed spec or secret reference).
        return outcome.retryable or outcome.generation != generation

    async def _reconcile(self) -> None:
        revision = self._revision
        assert revision is not None
        if revision.spec is None:
            # Started to report a refused spec of a resource never applied: nothing to deliver.
            await self._write_status([], PlanPlacementResult())
            return
        fingerprint = delivery_fingerprint(revision.spec)
        plan = await self._plan()
        to_remove = sorted(n for n in self._nodes if n not in plan.eligible)
        to_deliver = [n for n in plan.eligible if self._needs_delivery(n, fingerprint, revision.generation)]
        for node in to_deliver:
            self._nodes[node] = NodeOutcome(
                node=node, state=NodeModelStatus.UPDATING.value, generation=revision.generation
            )
        await self._write_status(plan.eligible, plan)

        existing = set(plan.existing_nodes)
        runs = [self._run_node(node, NodeAction.DELIVER, revision, node_exists=True) for node in to_deliver]
        runs += [
            self._run_node(node, NodeAction.REMOVE, revision, node_exists=node in existing)
            for node in to_remove
        ]
        # Children run while signals keep arriving: a delete, or a revision that changes where the
        # bytes come from, cancels the in-flight node work instead of waiting hours for it.
        batch = asyncio.ensure_future(asyncio.gather(*runs))
        while True:
            await workflow.wait_condition(
                lambda: batch.done() or self._delete or self._superseded(fingerprint) or self._status_due
            )
            if batch.done() or self._delete or self._superseded(fingerprint):
                break
            # A refusal arrived while node work runs: the status says so now, not hours later.
            await self._write_status(plan.eligible, plan)
        if not batch.done():
            batch.cancel()
        try:
            outcomes = await batch
        except asyncio.CancelledError:
            self._dirty = True
            return
        for outcome in outcomes:
            if outcome.state == NodeModelStatus.DELETED:
                self._nodes.pop(outcome.node, None)
            else:
                self._nodes[outcome.node] = outcome

        await self._write_spec_metadata(revision, fingerprint)
        await self._write_status(plan.eligible, plan)

    def _superseded(self, fingerprint: str) -> bool:
        return self._revision is not None and delivery_fingerprint(self._revision.spec) != fingerprint

    async def _run_node(
        self, node: str, action: NodeAction, revision: ModelRevision, *, node_exists: bool
    ) -> NodeOutcome:
        try:
            return await workflow.execute_child_workflow(
                NodeWorkflow.run,
                NodeWorkflowInput(
                    ref=self._ref,
                    revision=revision,
                    node=node,
                    action=action,
                    node_exists=node_exists,
                    options=self._options,
                ),
                id=node_workflow_id(model_workflow_id=workflow.info().workflow_id, node_name=node),
                task_queue=CONTROL_TASK_QUEUE,
            )
        except (ChildWorkflowError, ActivityError) as err:
            failure = describe_failure(
                err.cause if isinstance(err, ChildWorkflowError) and err.cause else err
            )
            state = NodeModelStatus.FAILED.value
            return NodeOutcome(
                node=node,
                state=state,
                reason=failure.reason,
                message=failure.message,
                generation=revision.generation,
                fingerprint=delivery_fingerprint(revision.spec),
                retryable=True,
            )

    async def _write_spec_metadata(self, revision: ModelRevision, fingerprint: str) -> None:
        if self._metadata_written_for == fingerprint or skip_config_parsing(revision.annotations):
            return
        for node in sorted(self._nodes):
            outcome = self._nodes[node]
            if (
                outcome.state == NodeModelStatus.READY
                and outcome.fingerprint == fingerprint
                and outcome.metadata
            ):
                if await self._best_effort(
                    ResourceActivities.write_spec_metadata,
                    WriteSpecMetadataInput(ref=self._ref, metadata=outcome.metadata),
                ):
                    self._metadata_written_for = fingerprint
                return

    async def _write_status(
        self, eligible: list[str], plan: PlanPlacementResult, *, deleting: bool = False
    ) -> None:
        assert self._revision is not None
        self._status_due = False
        refused = self._refused()
        disabled = bool(self._revision.spec and self._revision.spec.disabled)
        reasons = "; ".join(f"{n}: {r}" for n, r in sorted(plan.excluded.items())[:5])
        generation = self._revision.generation
        if refused is not None and deleting:
            generation = refused.generation  # a write about an older generation would be refused
        status = desired_status(
            generation=generation,
            eligible=eligible,
            outcomes=self._nodes,
            no_nodes_reason="Disabled" if disabled else "NoEligibleNodes",
            no_nodes_message="the model is disabled" if disabled else (reasons or "the cluster has no nodes"),
            deleting=deleting,
        )
        if refused is not None and not deleting:
            # Every write describes the newest generation: the refused one, never an older Ready.
            # A run that never had a spec reports the refusal alone, as nothing is on any node.
            base = status if self._revision.spec is not None else None
            status = invalid_status(base, generation=refused.generation, message=refused.message)
        if status == self._last_status:
            return
        if not await self._best_effort(
            ResourceActivities.write_model_status,
            WriteModelStatusInput(ref=self._ref, status=status, generation=status["observedGeneration"]),
        ):
            return  # written on the next change or reconcile
        self._last_status = status
        self._state = status.get("state", "Deleting")
        workflow.upsert_search_attributes(
            [
                SA_MODEL_STATE.value_set(self._state),
                SA_NODE_NAMES.value_set(sorted(self._nodes)),
            ]
        )

    async def _delete_everywhere(self) -> None:
        # Deletion must finish (the finalizer holds the resource): retry through API outages.
        while True:
            try:
                await self._delete_once()
                return
            except ActivityError as err:
                workflow.logger.error("cleanup failed, retrying in %ss: %s", CONTROL_RETRY_SECONDS, err)
                await workflow.sleep(timedelta(seconds=CONTROL_RETRY_SECONDS))

    async def _delete_once(self) -> None:
        revision = self._revision
        assert revision is not None
        plan = await self._plan()
        await self._write_status(sorted(self._nodes), plan, deleting=True)
        existing = set(plan.existing_nodes)
        nodes = sorted(self._nodes)
        if not nodes and self._started_for_delete and revision.spec:
            # A cleanup-only run does not know where the model went: sweep every node.
            nodes = sorted(existing)
        await asyncio.gather(
            *(self._run_node(n, NodeAction.REMOVE, revision, node_exists=n in existing) for n in nodes)
        )
        self._nodes.clear()
        await self._control(ResourceActivities.release_finalizer, ReleaseFinalizerInput(ref=self._ref))
