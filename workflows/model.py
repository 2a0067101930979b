"""`ModelWorkflow`: one durable workflow per model resource (ID from kind/namespace/name).

It holds the latest revision the watcher signalled, plans placement, and runs one `NodeWorkflow`
child per node that must get (or lose) the model, in parallel. Each node's outcome is taken as it
arrives: the status (written only on change) follows node by node, and a node that becomes
eligible, or is due a retry, starts at once instead of waiting for slower nodes. It writes parsed
metadata into the spec once per delivery (not once per node). On a delete request it removes the
model from every node it reached, then releases the finalizer.

A spec change that changes the bytes is fetched beside the version each node serves; those nodes
stay Ready meanwhile (`Progressing`), and a failure leaves the previous version serving
(`Degraded: UpdateFailed`). Admins act through Updates (`redownload`, `rollback`, `retry`) whose
validators refuse what cannot be done before anything runs; node workers report damaged files
(`report_damage`) and the model is repaired on that node.

It is the one writer of the resource's status. A generation the watcher refused arrives as
`mark_invalid` (signal-with-start, so a resource never applied gets a run that reports it): from
then on every status write describes that generation (InvalidSpec), while what is already on the
nodes stays and keeps serving, until a newer valid generation is applied.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.resources import ResourceActivities
    from modelferry.lifecycle import delivery_fingerprint, fingerprint_matches
    from modelferry.messages import (
        AdminAction,
        AdminPlan,
        AdminRequest,
        DamageReport,
        EnsureFinalizerInput,
        InvalidRevision,
        ModelRevision,
        ModelWorkflowInput,
        NodeAction,
        NodeOutcome,
        NodeWorkflowInput,
        PeerSource,
        PendingNodeWork,
        PipelineOptions,
        PlanPlacementInput,
        PlanPlacementResult,
        RecordModelEventInput,
        ReleaseFinalizerInput,
        WriteModelStatusInput,
        WriteSpecMetadataInput,
    )
    from modelferry.modelstatus import desired_status, invalid_status
    from modelferry.names import (
        CONTROL_TASK_QUEUE,
        SIGNAL_REPORT_DAMAGE,
        UPDATE_REDOWNLOAD,
        UPDATE_RETRY,
        UPDATE_ROLLBACK,
        node_workflow_id,
    )
    from modelferry.nodestatus import NodeModelStatus
    from workflows.failures import describe_failure
    from workflows.node import REPORT_RETRY, REPORT_TIMEOUT, NodeWorkflow, skip_config_parsing
    from workflows.policies import (
        CONTROL_RETRY_SECONDS,
        KUBE_WRITE_RETRY,
        KUBE_WRITE_TIMEOUT,
        SA_MODEL_STATE,
        SA_NODE_NAMES,
        SA_NODE_STATES,
        SA_STORAGE_URI,
    )

# Patches (workflow.patched): each changes the commands a running workflow issues.
PATCH_OPTIONS_FROM_WATCHER = "model-options-from-watcher-v1"  # `apply_options` replaces the options
PATCH_INVALID_SPEC_STATUS = "model-invalid-spec-status-v1"  # `mark_invalid`: InvalidSpec status
# Node outcomes taken as they arrive, updates beside the serving version, admin Updates, repairs.
# A run recorded before it keeps the batched loop (`_run_batched`) until it continues as new.
PATCH_LIVE_NODES = "model-live-node-status-v1"

_MAX_TOKENS = 100  # admin request tokens remembered (annotation values already acted on)
# A keyword list search attribute must stay under Temporal's per-value size limit (2 KB by
# default); past it the upsert is refused and the workflow task fails. NodeNames and NodeStates
# list what fits, in order (NodeStates: the nodes not Ready first, so a failed node is findable).
_KEYWORD_LIST_BUDGET = 1800
_HISTORY_HARD_FACTOR = 2  # past this many times the limit, running node work is restarted in a new run
# Status writes while nodes finish are at least this far apart: ~1 s per 100 eligible nodes,
# between 1 s and 30 s, so a thousand nodes finishing do not write a thousand statuses.
_STATUS_COALESCE_MIN, _STATUS_COALESCE_MAX, _NODES_PER_COALESCE_SECOND = 1.0, 30.0, 100


@dataclass
class _NodeRun:
    """Node work in flight (never serialized: a new run restarts what was running)."""

    task: asyncio.Task[NodeOutcome]
    action: NodeAction
    fingerprint: str
    serving: bool  # a verified version serves on the node meanwhile
    peers: bool = False  # fetching from peers, not the origin
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        self.task.cancel()


@dataclass
class _Spread:
    """Peer delivery's plan for one pass: the nodes that can feed a version, and how many more
    nodes may fetch it from the origin. Each node gets up to `_PEERS_PER_NODE` sources, rotated
    so the load spreads over every holder."""

    sources: list[PeerSource]
    origin_slots: int
    _given: int = 0

    def sources_for(self, node: str) -> list[PeerSource]:
        if not self.sources:
            return []
        start = self._given % len(self.sources)
        self._given += 1
        rotated = self.sources[start:] + self.sources[:start]
        return [p for p in rotated if p.node != node][:_PEERS_PER_NODE]

    def take_origin_slot(self) -> bool:
        if self.origin_slots <= 0:
            return False
        self.origin_slots -= 1
        return True


_PEERS_PER_NODE = 3  # sources handed to one download (tried in order, then the origin)


class AdminRequestRefused(ApplicationError):
    """An admin action the model cannot do now; nothing ran."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="AdminRequestRefused", non_retryable=True)


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
        self._status_due = False  # something changed that the status does not say yet
        self._ref = inp.ref
        # Decided here, not in run(): an Update or a damage report may come before run() starts.
        self._live = workflow.patched(PATCH_LIVE_NODES)
        self._running: dict[str, _NodeRun] = {}
        self._update_failures: dict[str, NodeOutcome] = dict(inp.update_failures)
        self._failed_at: dict[str, float] = dict(inp.failed_at)
        self._pending: dict[str, PendingNodeWork] = dict(inp.pending)
        self._retry_now: set[str] = set()
        self._handled_tokens: list[str] = list(inp.handled_tokens)
        self._placement: PlanPlacementResult | None = None
        self._events: list[RecordModelEventInput] = []
        self._doomed: ModelRevision | None = None  # the revision a delete request was about
        self._metadata: dict[str, dict[str, Any]] = dict(inp.metadata)  # by `_version_key`
        self._last_status_at = 0.0  # workflow time of the last status write (live loop)
        self._awaiting_peers: set[str] = set()  # peer delivery: nodes waiting for a node to feed them

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
        if not self._delete:
            # What is deleted is the resource as known now; a re-created one under the same name
            # (a new uid, applied while this cleanup runs) is another model and gets its own run.
            self._doomed = self._revision
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

    @workflow.query(name="update_failures")
    def update_failures(self) -> dict[str, NodeOutcome]:
        return dict(self._update_failures)

    @workflow.query(name="running")
    def running(self) -> dict[str, str]:
        """node -> the node work in flight (deliver, remove, rollback)."""
        return {node: run.action.value for node, run in self._running.items()}

    # --- damage reports and admin Updates ---------------------------------------------------

    @workflow.signal(name=SIGNAL_REPORT_DAMAGE)
    def report_damage(self, report: DamageReport) -> None:
        """A node worker found files of the serving version missing or corrupted: fetch just
        those again into a new version on that node and swap it in."""
        if not self._live:
            return  # a run on the batched loop; it adopts repairs when it continues as new
        revision = self._revision
        if revision is not None and report.uid and revision.uid and report.uid != revision.uid:
            return  # about an older resource under this name
        outcome = self._nodes.get(report.node)
        if outcome is None or outcome.state != NodeModelStatus.READY:
            return
        if outcome.version_id and report.version_id != outcome.version_id:
            return  # about a version no longer served
        if report.node in self._pending or report.node in self._running:
            return  # a repair (or other node work) is queued or running; reports go on until it swaps
        if report.files:
            files = ", ".join(report.files[:5]) + (" ..." if len(report.files) > 5 else "")
            cause = (
                f"repair after the {report.check} check found {len(report.files)} damaged file(s): {files}"
            )
        else:
            # The manifest or the version directory itself is gone: nothing on disk can be trusted.
            cause = f"fresh download after the {report.check} check found the version unreadable"
        workflow.logger.warning("%s on node %s: %s", self._ref.display(), report.node, cause)
        self._pending[report.node] = PendingNodeWork(
            action=NodeAction.DELIVER.value,
            fresh_tag=_tag(),
            repair_from=report.version_id if report.files else "",
            damaged_files=list(report.files),
            cause=cause,
        )
        self._record(
            reason="DamageFound", message=f"{cause}. {report.detail}".strip(), node=report.node, warning=True
        )
        self._dirty = True

    @workflow.update(name=UPDATE_REDOWNLOAD)
    def redownload(self, request: AdminRequest) -> AdminPlan:
        return self._accept(AdminAction.REDOWNLOAD, request)

    @redownload.validator
    def _validate_redownload(self, request: AdminRequest) -> None:
        self._admin_plan(AdminAction.REDOWNLOAD, request)

    @workflow.update(name=UPDATE_ROLLBACK)
    def rollback(self, request: AdminRequest) -> AdminPlan:
        return self._accept(AdminAction.ROLLBACK, request)

    @rollback.validator
    def _validate_rollback(self, request: AdminRequest) -> None:
        self._admin_plan(AdminAction.ROLLBACK, request)

    @workflow.update(name=UPDATE_RETRY)
    def retry(self, request: AdminRequest) -> AdminPlan:
        return self._accept(AdminAction.RETRY, request)

    @retry.validator
    def _validate_retry(self, request: AdminRequest) -> None:
        self._admin_plan(AdminAction.RETRY, request)

    def _eligible(self) -> set[str]:
        return set(self._placement.eligible) if self._placement is not None else set(self._nodes)

    def _admin_plan(self, action: AdminAction, request: AdminRequest) -> AdminPlan:
        """What `action` would do now; raises AdminRequestRefused (the validator's answer)."""
        if request.token and request.token in self._handled_tokens:
            return AdminPlan(
                action=action, already_handled=True, message=f"{request.token} was handled before"
            )
        if not self._live:
            raise AdminRequestRefused(
                "this model's workflow still runs code older than admin actions; it adopts them when it "
                "continues as new (or after the next spec change)"
            )
        if self._delete:
            raise AdminRequestRefused("the model is being deleted")
        revision = self._revision
        if revision is None or revision.spec is None:
            raise AdminRequestRefused("the model has no valid spec applied; fix the spec first")
        if self._placement is None:
            raise AdminRequestRefused("the model's placement is not planned yet; try again in a moment")
        eligible = self._eligible()
        not_eligible = [n for n in request.nodes if n not in eligible]
        if not_eligible:
            raise AdminRequestRefused(
                f"node(s) {', '.join(not_eligible)} not among the model's nodes "
                f"({', '.join(sorted(eligible)) or 'none'})"
            )
        if action is AdminAction.REDOWNLOAD:
            nodes = sorted(set(request.nodes) or eligible)
            if not nodes:
                raise AdminRequestRefused("no node is eligible for this model; nothing to redownload")
            return AdminPlan(
                action=action, nodes=nodes, message=f"fresh fetch and full verify on {len(nodes)} node(s)"
            )
        if action is AdminAction.RETRY:
            failed = {
                n for n, o in self._nodes.items() if o.state == NodeModelStatus.FAILED and n in eligible
            }
            failed |= {n for n in self._update_failures if n in eligible}
            for node in request.nodes:
                if node not in failed:
                    state = self._nodes[node].state if node in self._nodes else "not started"
                    raise AdminRequestRefused(f"node {node} has not failed (it is {state}); nothing to retry")
            nodes = sorted(set(request.nodes) or failed)
            if not nodes:
                raise AdminRequestRefused("no node has failed; nothing to retry")
            return AdminPlan(action=action, nodes=nodes, message=f"deliver again now on {len(nodes)} node(s)")
        # rollback
        candidates = sorted(set(request.nodes)) or sorted(
            n for n, o in self._nodes.items() if o.state == NodeModelStatus.READY and n in eligible
        )
        if not candidates:
            raise AdminRequestRefused("no node is Ready; only a serving node can roll back")
        versions: dict[str, str] = {}
        for node in candidates:
            outcome = self._nodes.get(node)
            if outcome is None or outcome.state != NodeModelStatus.READY:
                state = outcome.state if outcome else "not started"
                raise AdminRequestRefused(
                    f"node {node} is not Ready (it is {state}); only a serving node can roll back"
                )
            kept = outcome.kept_versions
            target = request.to_version or (kept[0] if kept else "")
            if not target:
                raise AdminRequestRefused(
                    f"node {node} keeps no previous version (pipeline.keep_versions); nothing to roll back to"
                )
            if target == outcome.version_id:
                raise AdminRequestRefused(f"node {node} already serves version {target}")
            if target not in kept:
                raise AdminRequestRefused(
                    f"version {target} is not kept on node {node}; kept: {', '.join(kept) or 'none'}"
                )
            versions[node] = target
        return AdminPlan(
            action=action,
            nodes=sorted(versions),
            to_version=versions,
            message=f"serve a kept version again on {len(versions)} node(s)",
        )

    def _accept(self, action: AdminAction, request: AdminRequest) -> AdminPlan:
        plan = self._admin_plan(action, request)
        if plan.already_handled:
            return plan
        if request.token:
            self._handled_tokens = [*self._handled_tokens, request.token][-_MAX_TOKENS:]
        cause = f"admin {action.value} by {request.requested_by or 'unknown'}"
        if request.reason:
            cause += f": {request.reason}"
        workflow.logger.info("%s: %s on %s", self._ref.display(), cause, ", ".join(plan.nodes))
        for node in plan.nodes:
            if action is AdminAction.RETRY:
                self._retry_now.add(node)
                self._failed_at.pop(node, None)
            elif action is AdminAction.REDOWNLOAD:
                self._pending[node] = PendingNodeWork(
                    action=NodeAction.DELIVER.value, fresh_tag=_tag(), cause=cause
                )
            else:
                self._pending[node] = PendingNodeWork(
                    action=NodeAction.ROLLBACK.value, version_id=plan.to_version[node], cause=cause
                )
        self._record(
            reason=f"Admin{action.value.capitalize()}", message=f"{cause}; node(s): {', '.join(plan.nodes)}"
        )
        self._dirty = True
        return plan

    def _record(self, *, reason: str, message: str, node: str = "", warning: bool = False) -> None:
        """Queue an Event on the resource; the main loop writes it (handlers do no I/O)."""
        self._events.append(
            RecordModelEventInput(
                ref=self._ref,
                reason=reason,
                message=message,
                node=node,
                type="Warning" if warning else "Normal",
            )
        )

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
        if self._live:
            return await self._run_live()
        return await self._run_batched()

    def _continue_as_new(self) -> None:
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
                update_failures=self._update_failures,
                failed_at=self._failed_at,
                pending=self._pending,
                handled_tokens=self._handled_tokens,
                metadata={k: v for k, v in self._metadata.items() if k in self._version_keys()},
            )
        )

    async def _run_batched(self) -> str:
        """The loop of runs recorded before PATCH_LIVE_NODES: every node's outcome is awaited
        together. Kept so those runs replay; their next run takes `_run_live`."""
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
                self._continue_as_new()
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

    # --- the live loop ----------------------------------------------------------------------

    async def _run_live(self) -> str:
        control_failed = False
        while True:
            if self._delete:
                await self._stop_all_runs()
                await self._delete_everywhere()
                successor = self._successor()
                if successor is None:
                    return "Deleted"
                workflow.logger.info("%s re-created (uid %s): a new run", self._ref.display(), successor.uid)
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ModelWorkflowInput(
                        ref=self._ref.model_copy(update={"uid": successor.uid}),
                        revision=successor,
                        options=self._options,
                    )
                )
            if self._dirty:
                self._dirty = False
                try:
                    await self._plan_and_start()
                    control_failed = False
                except ActivityError as err:
                    workflow.logger.error("reconcile failed, retrying in %ss: %s", CONTROL_RETRY_SECONDS, err)
                    control_failed = True
            self._absorb_finished()
            await self._flush_reports()
            if self._should_continue_as_new() and not self._dirty and not self._events:
                hard = workflow.info().get_current_history_length() > (
                    self._options.max_history_events * _HISTORY_HARD_FACTOR
                )
                if not self._running or hard:
                    # Node work still running is cancelled and starts again in the new run (a
                    # download resumes from its checkpoint on disk).
                    await self._stop_all_runs()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    self._continue_as_new()
            timeout = self._next_wakeup(control_failed)
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._dirty
                        or self._delete
                        or bool(self._events)
                        or any(run.task.done() for run in self._running.values())
                    ),
                    timeout=timeout,
                )
            except TimeoutError:
                # A failed node may be due its retry (or the control plane its next try); a timer
                # that only let a coalesced status write through needs no planning.
                self._dirty = control_failed or self._retry_due_somewhere()

    def _next_wakeup(self, control_failed: bool) -> timedelta | None:
        now = workflow.now().timestamp()
        waits = [
            max(1.0, at + self._options.failed_node_retry_seconds - now)
            for node, at in self._failed_at.items()
            if self._retryable_failure(node) and node not in self._running
        ]
        if control_failed:
            waits.append(CONTROL_RETRY_SECONDS)
        if self._status_due:
            waits.append(max(0.1, self._status_wait()))
        return timedelta(seconds=min(waits)) if waits else None

    def _retry_due_somewhere(self) -> bool:
        return any(
            self._retryable_failure(node) and node not in self._running and self._retry_due(node)
            for node in self._failed_at
        )

    def _failure(self, node: str) -> NodeOutcome | None:
        outcome = self._nodes.get(node)
        if outcome is not None and outcome.state == NodeModelStatus.FAILED:
            return outcome
        return self._update_failures.get(node)

    def _retryable_failure(self, node: str) -> bool:
        failure = self._failure(node)
        return failure is not None and failure.retryable

    def _retry_due(self, node: str) -> bool:
        at = self._failed_at.get(node)
        return at is None or workflow.now().timestamp() >= at + self._options.failed_node_retry_seconds

    def _serving(self, node: str) -> NodeOutcome | None:
        """The node's Ready outcome, with its version's metadata."""
        outcome = self._nodes.get(node)
        if outcome is None or outcome.state != NodeModelStatus.READY:
            return None
        return outcome.model_copy(update={"metadata": self._metadata_of(outcome)})

    @staticmethod
    def _version_key(outcome: NodeOutcome) -> str:
        return outcome.version_id or f"fingerprint:{outcome.fingerprint}"

    def _version_keys(self) -> set[str]:
        return {self._version_key(o) for o in self._nodes.values() if o.state == NodeModelStatus.READY}

    def _metadata_of(self, outcome: NodeOutcome) -> dict[str, Any] | None:
        # Outcomes of the batched loop carry their metadata inline.
        if outcome.metadata is not None:
            return outcome.metadata
        return self._metadata.get(self._version_key(outcome))

    def _matches_spec(self, outcome: NodeOutcome) -> bool:
        """The outcome delivered what the current spec asks for, whichever fingerprint version
        recorded it (a new version's keys never re-deliver what an older one delivered)."""
        assert self._revision is not None
        return fingerprint_matches(outcome.fingerprint, self._revision.spec)

    def _wants_delivery(self, node: str, generation: int) -> bool:
        if node in self._retry_now:
            return True
        outcome = self._nodes.get(node)
        if outcome is None or outcome.state == NodeModelStatus.UPDATING:
            return True
        if outcome.state == NodeModelStatus.READY and self._matches_spec(outcome):
            return False
        failure = self._failure(node)
        if failure is None or not self._matches_spec(failure):
            return True  # the spec changed what the node must hold
        if failure.generation != generation:
            return True  # a newer generation (a fixed spec or Secret reference) is a new attempt
        return failure.retryable and self._retry_due(node)

    async def _plan_and_start(self) -> None:
        revision = self._revision
        assert revision is not None
        self._status_due = True
        if revision.spec is None:
            return  # started to report a refused spec of a resource never applied
        fingerprint = delivery_fingerprint(revision.spec)
        plan = await self._plan()
        self._placement = plan
        eligible = set(plan.eligible)
        existing = set(plan.existing_nodes)
        for node, run in self._running.items():
            if run.cancelled:
                continue
            if run.action == NodeAction.REMOVE:
                continue  # finishes; a node eligible again is delivered to afterwards
            if node not in eligible or run.fingerprint != fingerprint or node in self._pending:
                run.cancel()  # superseded: a new spec, lost eligibility, or an admin's request
        updates = []
        spread = self._spread(fingerprint) if self._options.peer_delivery else None
        self._awaiting_peers.clear()
        for node in sorted(eligible):
            if node in self._running:
                continue
            pending = self._pending.pop(node, None)
            if pending is not None:
                self._start(node, NodeAction(pending.action), fingerprint, pending=pending)
            elif self._wants_delivery(node, revision.generation):
                peers: list[PeerSource] = []
                if spread is not None:
                    peers = spread.sources_for(node)
                    if not peers and not spread.take_origin_slot():
                        self._awaiting_peers.add(node)  # starts once a node holds the version
                        continue
                cause = self._cause(node, NodeAction.DELIVER)  # before the outcome says Updating
                if peers:
                    cause += f" (from peer(s) {', '.join(p.node for p in peers)})"
                serving = self._serving(node)
                if serving is None:
                    self._nodes[node] = NodeOutcome(
                        node=node, state=NodeModelStatus.UPDATING.value, generation=revision.generation
                    )
                elif not self._matches_spec(serving):
                    updates.append(node)
                self._start(node, NodeAction.DELIVER, fingerprint, cause=cause, peers=peers)
        for node in sorted(self._nodes):
            if node not in eligible and node not in self._running:
                self._start(node, NodeAction.REMOVE, fingerprint, node_exists=node in existing)
        for node in list(self._pending):
            if node not in eligible:
                del self._pending[node]  # the node left the model's placement
        if updates:
            self._record(
                reason="UpdateStarted",
                message=f"generation {revision.generation} changes the model's files: fetching the new "
                f"version beside the serving one on {len(updates)} node(s)",
            )

    def _spread(self, fingerprint: str) -> _Spread:
        """Who may fetch this fingerprint's version from the origin now, and who can feed peers."""
        sources = [
            PeerSource(node=node, url=outcome.peer_url, version_id=outcome.version_id)
            for node, outcome in sorted(self._nodes.items())
            if outcome.state == NodeModelStatus.READY
            and self._matches_spec(outcome)
            and outcome.peer_url
            and outcome.version_id
            and node not in self._update_failures
        ]
        from_origin = sum(
            1
            for run in self._running.values()
            if run.action == NodeAction.DELIVER and run.fingerprint == fingerprint and not run.peers
        )
        return _Spread(sources=sources, origin_slots=max(0, self._options.peer_origin_fetchers - from_origin))

    def _cause(self, node: str, action: NodeAction) -> str:
        revision = self._revision
        assert revision is not None
        if action == NodeAction.REMOVE:
            return "the node is no longer eligible" if not self._delete else "the model is deleted"
        if node in self._retry_now:
            return "admin retry"
        if self._failure(node) is not None:
            return f"retry of generation {revision.generation} after a failure"
        return f"generation {revision.generation}"

    def _start(
        self,
        node: str,
        action: NodeAction,
        fingerprint: str,
        *,
        node_exists: bool = True,
        pending: PendingNodeWork | None = None,
        cause: str = "",
        peers: list[PeerSource] | None = None,
    ) -> None:
        revision = self._revision
        assert revision is not None
        serving = self._serving(node) if action != NodeAction.REMOVE else None
        cause = pending.cause if pending is not None else cause or self._cause(node, action)
        self._retry_now.discard(node)
        inp = NodeWorkflowInput(
            ref=self._ref,
            revision=revision,
            node=node,
            action=action,
            node_exists=node_exists,
            options=self._options,
            serving=serving,
            fresh_tag=pending.fresh_tag if pending else "",
            repair_from=pending.repair_from if pending else "",
            damaged_files=list(pending.damaged_files) if pending else [],
            version_id=pending.version_id if pending else "",
            peers=list(peers or []),
            cause=cause,
        )
        task = asyncio.ensure_future(self._run_node_input(inp, summary=f"{action.value} on {node}: {cause}"))
        self._running[node] = _NodeRun(
            task=task, action=action, fingerprint=fingerprint, serving=serving is not None, peers=bool(peers)
        )

    async def _run_node_input(self, inp: NodeWorkflowInput, *, summary: str | None) -> NodeOutcome:
        """The child's outcome; a child that failed (or could not start) is a Failed outcome."""
        try:
            return await workflow.execute_child_workflow(
                NodeWorkflow.run,
                inp,
                id=node_workflow_id(model_workflow_id=workflow.info().workflow_id, node_name=inp.node),
                task_queue=CONTROL_TASK_QUEUE,
                static_summary=summary[:200] if summary is not None else None,
            )
        except (ChildWorkflowError, ActivityError) as err:
            failure = describe_failure(
                err.cause if isinstance(err, ChildWorkflowError) and err.cause else err
            )
            return NodeOutcome(
                node=inp.node,
                state=NodeModelStatus.FAILED.value,
                reason=failure.reason,
                message=failure.message,
                generation=inp.revision.generation,
                fingerprint=delivery_fingerprint(inp.revision.spec),
                retryable=True,
            )

    def _absorb_finished(self) -> None:
        for node, run in list(self._running.items()):
            if not run.task.done():
                continue
            del self._running[node]
            if run.cancelled or run.task.cancelled():
                self._dirty = True  # superseded: plan again (the node may need other work now)
                continue
            outcome = run.task.result()
            self._status_due = True
            if self._awaiting_peers:
                self._dirty = True  # a new holder can feed them, or an origin slot came free
            if outcome.state == NodeModelStatus.DELETED:
                self._nodes.pop(node, None)
                self._update_failures.pop(node, None)
                self._failed_at.pop(node, None)
                if node in self._eligible():
                    self._dirty = True  # eligible again while it was being removed
            elif outcome.state == NodeModelStatus.READY:
                if outcome.metadata is not None:
                    # Held once per version, not once per node (the history stays bounded).
                    self._metadata[self._version_key(outcome)] = outcome.metadata
                    outcome = outcome.model_copy(update={"metadata": None})
                self._nodes[node] = outcome
                self._update_failures.pop(node, None)
                self._failed_at.pop(node, None)
            else:
                if run.serving and self._serving(node) is not None:
                    self._update_failures[node] = outcome  # the previous version keeps serving
                else:
                    self._nodes[node] = outcome
                self._failed_at[node] = workflow.now().timestamp()

    async def _stop_all_runs(self) -> None:
        """Cancel node work in flight and wait for it; what finished already is taken first."""
        self._absorb_finished()
        for run in self._running.values():
            run.cancel()
        if self._running:
            await asyncio.gather(*(run.task for run in self._running.values()), return_exceptions=True)
        self._running.clear()

    async def _flush_reports(self) -> None:
        while self._events:
            event = self._events.pop(0)
            try:
                await workflow.execute_activity(
                    "record_model_event",
                    event,
                    task_queue=CONTROL_TASK_QUEUE,
                    start_to_close_timeout=REPORT_TIMEOUT,
                    retry_policy=REPORT_RETRY,
                    summary=f"event {event.reason}",
                )
            except ActivityError as err:
                workflow.logger.info("event %s not recorded: %s", event.reason, err)
        revision = self._revision
        if revision is not None and revision.spec is not None:
            await self._write_spec_metadata(revision, delivery_fingerprint(revision.spec))
        if self._status_due and self._status_wait() == 0:
            plan = self._placement or PlanPlacementResult(eligible=sorted(self._nodes))
            await self._write_status(plan.eligible, plan)
            self._last_status_at = workflow.now().timestamp()

    def _status_wait(self) -> float:
        """Seconds until the next status write may go (0: now)."""
        eligible = len(self._placement.eligible) if self._placement is not None else len(self._nodes)
        spacing = min(_STATUS_COALESCE_MAX, max(_STATUS_COALESCE_MIN, eligible / _NODES_PER_COALESCE_SECOND))
        if self._running and not self._delete:
            return max(0.0, self._last_status_at + spacing - workflow.now().timestamp())
        return 0.0  # nothing in flight: the last word goes out at once

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
        """Node work of the batched loop and of a deletion: no cause or summary to give."""
        inp = NodeWorkflowInput(
            ref=self._ref,
            revision=revision,
            node=node,
            action=action,
            node_exists=node_exists,
            options=self._options,
        )
        return await self._run_node_input(inp, summary=None)

    async def _write_spec_metadata(self, revision: ModelRevision, fingerprint: str) -> None:
        if self._metadata_written_for == fingerprint or skip_config_parsing(revision.annotations):
            return
        for node in sorted(self._nodes):
            outcome = self._nodes[node]
            metadata = self._metadata_of(outcome)
            if outcome.state == NodeModelStatus.READY and outcome.fingerprint == fingerprint and metadata:
                if await self._best_effort(
                    ResourceActivities.write_spec_metadata,
                    WriteSpecMetadataInput(ref=self._ref, metadata=metadata),
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
            updating=[
                n for n, run in self._running.items() if run.serving and run.action != NodeAction.REMOVE
            ]
            + sorted(self._awaiting_peers),  # Ready nodes waiting for a peer are updating too
            update_failures=self._update_failures,
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
        attributes: list[SearchAttributeUpdate[Any]] = [
            SA_MODEL_STATE.value_set(self._state),
            SA_NODE_NAMES.value_set(_within_budget(sorted(self._nodes))),
        ]
        if self._live:
            not_ready = [
                f"{node}={'UpdateFailed' if node in self._update_failures else outcome.state}"
                for node, outcome in sorted(self._nodes.items())
                if outcome.state != NodeModelStatus.READY or node in self._update_failures
            ]
            attributes.append(SA_NODE_STATES.value_set(_within_budget(not_ready)))
            if self._revision.spec is not None:
                attributes.append(SA_STORAGE_URI.value_set(self._revision.spec.storage.storage_uri))
            ready = len(status.get("nodesReady") or [])
            workflow.set_current_details(
                f"{self._state or 'Deleting'}: ready on {ready} of {len(eligible)} node(s); "
                f"in flight: {', '.join(sorted(self._running)) or 'nothing'}"
            )
        workflow.upsert_search_attributes(attributes)

    async def _delete_everywhere(self) -> None:
        # Deletion must finish (the finalizer holds the resource): retry through API outages.
        while True:
            try:
                await self._delete_once()
                return
            except ActivityError as err:
                workflow.logger.error("cleanup failed, retrying in %ss: %s", CONTROL_RETRY_SECONDS, err)
                await workflow.sleep(timedelta(seconds=CONTROL_RETRY_SECONDS))

    def _successor(self) -> ModelRevision | None:
        """A revision of a re-created resource (another uid) applied while the old one was deleted."""
        doomed, current = self._doomed, self._revision
        if doomed is None or current is None or not current.uid or current.uid == doomed.uid:
            return None
        return current

    async def _delete_once(self) -> None:
        # The spec of the resource being deleted: its paths are what the sweep removes.
        revision = self._doomed or self._revision
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


def _tag() -> str:
    """A short deterministic tag naming a fresh version directory (replays give the same one)."""
    return workflow.uuid4().hex[:8]


def _within_budget(values: list[str]) -> list[str]:
    """The leading values whose total size fits a keyword list search attribute."""
    kept: list[str] = []
    used = 0
    for value in values:
        used += len(value.encode()) + 3  # JSON quotes and separator
        if used > _KEYWORD_LIST_BUDGET:
            break
        kept.append(value)
    return kept
