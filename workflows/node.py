"""`NodeWorkflow`: one model on one node, with its own readable history.

deliver: label Updating -> ensure the node's worker -> download -> verify -> activate -> parse ->
label Ready (or Failed, with the reason). remove: delete the files (when the node still exists),
then the ConfigMap entry and node label. rollback: verify a kept version, then serve it again.
Node activities run on the node's own task queue; a node whose worker never polls fails by
schedule-to-start timeout instead of hanging.

When a verified version already serves on the node (`NodeWorkflowInput.serving`: an update, a
redownload, a repair), the new version is fetched beside it and the node stays Ready throughout; a
failure leaves the previous version serving and the label Ready (a recorded rollback). Every
transition is a Kubernetes Event on the resource, and while bytes move a control-queue activity
copies the download's heartbeat into the node's ConfigMap entry as `progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.download import DownloadActivities
    from activities.files import FilesActivities
    from activities.label import LabelActivities
    from activities.nodeworker import NodeWorkerActivities
    from activities.parse import ParseActivities
    from modelferry.admission import resolve_claim
    from modelferry.errors import InvalidSpecError
    from modelferry.lifecycle import delivery_fingerprint, spec_metadata
    from modelferry.messages import (
        ActivateModelVersionInput,
        ActivateModelVersionResult,
        DownloadModelInput,
        EnsureNodeWorkerInput,
        NodeAction,
        NodeOutcome,
        NodeWorkflowInput,
        ParseModelInput,
        ParseModelResult,
        RecordModelEventInput,
        RemoveModelFilesInput,
        RemoveNodeModelStatusInput,
        ReportNodeProgressInput,
        SetNodeModelStatusInput,
        VerifyModelInput,
    )
    from modelferry.names import CONTROL_TASK_QUEUE, SKIP_CONFIG_PARSING_ANNOTATIONS
    from modelferry.nodestatus import NodeModelStatus
    from modelferry.storage_uri import PvcUri
    from workflows.failures import describe_failure
    from workflows.policies import (
        DOWNLOAD_RETRY,
        FILES_TIMEOUT,
        KUBE_WRITE_RETRY,
        KUBE_WRITE_TIMEOUT,
        NODE_LOCAL_RETRY,
        PARSE_TIMEOUT,
        VERIFY_HEARTBEAT,
        VERIFY_TIMEOUT,
    )


# Patches (workflow.patched): each changes the commands a running workflow issues.
PATCH_FAILURES_HEAL = "node-failures-heal-v1"  # failures that need no spec change are retried later
# Events on the resource, progress in the ConfigMap entry, and a serving version kept Ready while
# a newer one is fetched beside it.
PATCH_NODE_REPORTS = "node-events-progress-v1"
# Node work the model's workflow cancels (a newer source supersedes it, the model is deleted, a
# continue-as-new restarts it) ends Canceled: no Failed label, no NodeFailed/UpdateFailed event.
PATCH_CANCEL_IS_NOT_FAILURE = "node-cancel-is-not-failure-v1"

# Events and progress are reports: a few quick tries, and their failure never fails the delivery.
REPORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
REPORT_TIMEOUT = timedelta(seconds=30)
# Short, because the SDK sends a heartbeat (and learns of a cancel) only every 0.8 x this: with
# 60 s a cancelled reporter held its control slot for up to 48 s after the download ended.
PROGRESS_HEARTBEAT = timedelta(seconds=10)


def skip_config_parsing(annotations: dict[str, str]) -> bool:
    return any(annotations.get(key, "").strip().lower() == "true" for key in SKIP_CONFIG_PARSING_ANNOTATIONS)


@workflow.defn(name="NodeWorkflow")
class NodeWorkflow:
    @workflow.run
    async def run(self, inp: NodeWorkflowInput) -> NodeOutcome:
        if inp.action == NodeAction.REMOVE:
            return await self._remove(inp)
        if inp.action == NodeAction.ROLLBACK:
            return await self._rollback(inp)
        return await self._deliver(inp)

    async def _event(
        self, inp: NodeWorkflowInput, reason: str, message: str, *, warning: bool = False
    ) -> None:
        try:
            await workflow.execute_activity(
                "record_model_event",
                RecordModelEventInput(
                    ref=inp.ref,
                    reason=reason,
                    message=message,
                    type="Warning" if warning else "Normal",
                    node=inp.node,
                ),
                task_queue=CONTROL_TASK_QUEUE,
                start_to_close_timeout=REPORT_TIMEOUT,
                retry_policy=REPORT_RETRY,
                summary=f"event {reason}",
            )
        except ActivityError as err:
            workflow.logger.info("event %s on %s not recorded: %s", reason, inp.ref.display(), err)

    def _start_progress(self, inp: NodeWorkflowInput) -> asyncio.Task[object]:
        serving = inp.serving
        report = ReportNodeProgressInput(
            ref=inp.ref,
            node=inp.node,
            node_workflow_id=workflow.info().workflow_id,
            status=(NodeModelStatus.READY if serving else NodeModelStatus.UPDATING).value,
            config=serving.metadata if serving else None,
        )
        return asyncio.ensure_future(
            workflow.execute_activity(
                "report_node_progress",
                report,
                task_queue=CONTROL_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=inp.options.download_timeout_seconds + 7200),
                heartbeat_timeout=PROGRESS_HEARTBEAT,
                cancellation_type=ActivityCancellationType.TRY_CANCEL,
                retry_policy=REPORT_RETRY,
                summary=f"progress of {inp.node} into its ConfigMap entry",
            )
        )

    @staticmethod
    async def _stop_progress(progress: asyncio.Task[object] | None) -> None:
        if progress is None:
            return
        progress.cancel()
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await progress

    async def _keep_serving(self, inp: NodeWorkflowInput) -> None:
        """After a failed update the label and entry say Ready again, with the serving version's
        metadata (a concurrent writer may have set anything meanwhile)."""
        serving = inp.serving
        assert serving is not None
        await self._label(inp, NodeModelStatus.READY, config=serving.metadata)

    async def _label(
        self, inp: NodeWorkflowInput, status: NodeModelStatus, config: dict | None = None
    ) -> None:
        await workflow.execute_activity_method(
            LabelActivities.set_node_model_status,
            SetNodeModelStatusInput(ref=inp.ref, node=inp.node, status=status.value, config=config),
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=KUBE_WRITE_TIMEOUT,
            retry_policy=KUBE_WRITE_RETRY,
        )

    async def _ensure_worker(self, inp: NodeWorkflowInput) -> str:
        claim = _pvc_claim(inp)
        result = await workflow.execute_activity_method(
            NodeWorkerActivities.ensure_node_worker,
            EnsureNodeWorkerInput(node=inp.node, claim_namespace=claim[0], claim_name=claim[1]),
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=KUBE_WRITE_TIMEOUT,
            retry_policy=KUBE_WRITE_RETRY,
        )
        return result.task_queue

    async def _deliver(self, inp: NodeWorkflowInput) -> NodeOutcome:
        spec = inp.revision.spec
        assert spec is not None, "a delivery always carries the spec it delivers"
        fingerprint = delivery_fingerprint(spec)
        schedule_to_start = timedelta(seconds=inp.options.node_schedule_to_start_seconds)
        reports = workflow.patched(PATCH_NODE_REPORTS)
        serving = inp.serving if reports else None
        if serving is None:
            await self._label(inp, NodeModelStatus.UPDATING)
        if reports:
            beside = f" beside serving version {serving.version_id or serving.revision}" if serving else ""
            await self._event(inp, "DownloadStarted", f"fetching{beside}: {inp.cause or 'delivery'}")
        work = self._work(inp)
        progress: asyncio.Task[object] | None = None
        try:
            queue = await self._ensure_worker(inp)
            if reports:
                progress = self._start_progress(inp)
            try:
                downloaded = await workflow.execute_activity_method(
                    DownloadActivities.download_model,
                    DownloadModelInput(
                        **work,
                        fresh_tag=inp.fresh_tag,
                        repair_from=inp.repair_from,
                        damaged_files=inp.damaged_files,
                        peers=inp.peers,
                    ),
                    task_queue=queue,
                    schedule_to_start_timeout=schedule_to_start,
                    start_to_close_timeout=timedelta(seconds=inp.options.download_timeout_seconds),
                    heartbeat_timeout=timedelta(seconds=inp.options.download_heartbeat_seconds),
                    retry_policy=DOWNLOAD_RETRY,
                    summary=_download_summary(inp),
                )
                version = downloaded.version_id
                await self._verify(inp, queue, version, summary=f"verify every byte of {version}")
            finally:
                await self._stop_progress(progress)
            activated = await self._activate(
                inp, queue, version, summary=f"serve {version} at {spec.storage.path}"
            )
            parsed = await self._parse(inp, queue, version)
        except ActivityError as err:
            if _cancelled(err):
                raise
            failure = describe_failure(err)
            workflow.logger.warning(
                "%s failed on node %s: %s: %s", inp.ref.display(), inp.node, failure.reason, failure.message
            )
            if serving is not None:
                await self._keep_serving(inp)
                await self._event(
                    inp,
                    "UpdateFailed",
                    f"{failure.reason}: {failure.message}; still serving version "
                    f"{serving.version_id or serving.revision}",
                    warning=True,
                )
            else:
                await self._label(inp, NodeModelStatus.FAILED)
                if reports:
                    await self._event(inp, "NodeFailed", f"{failure.reason}: {failure.message}", warning=True)
            return NodeOutcome(
                node=inp.node,
                state=NodeModelStatus.FAILED.value,
                reason=failure.reason,
                message=failure.message,
                generation=inp.revision.generation,
                fingerprint=fingerprint,
                retryable=failure.heals if workflow.patched(PATCH_FAILURES_HEAL) else failure.retryable,
            )
        await self._label(inp, NodeModelStatus.READY, config=parsed.metadata)
        # The one line a delivery prints when it succeeds (workflow.logger is silent on replay).
        workflow.logger.info(
            "%s ready on node %s: version %s, %d bytes",
            inp.ref.display(),
            inp.node,
            version,
            downloaded.total_bytes,
        )
        reason = "Repaired" if inp.repair_from else "Redownloaded" if inp.fresh_tag else "Downloaded"
        message = f"{downloaded.files} file(s), {downloaded.total_bytes} bytes verified"
        if downloaded.bytes_from_peers:
            fed = ", ".join(f"{n} {b} bytes" for n, b in sorted(downloaded.bytes_from_peers.items()))
            message += f"; fed by {fed}"
        if downloaded.dropped_peers:
            message += "; dropped " + ", ".join(
                f"{n} ({why})" for n, why in sorted(downloaded.dropped_peers.items())
            )
        if inp.repair_from:
            fetched = downloaded.bytes_transferred
            message += f"; {len(inp.damaged_files)} damaged file(s) fetched again ({fetched} bytes)"
        if reports:
            await self._event(
                inp, "NodeReady" if reason == "Downloaded" else reason, f"version {version}: {message}"
            )
        return NodeOutcome(
            node=inp.node,
            state=NodeModelStatus.READY.value,
            reason=reason,
            message=message,
            generation=inp.revision.generation,
            revision=downloaded.revision,
            fingerprint=fingerprint,
            metadata=parsed.metadata,
            version_id=activated.version_id,
            peer_url=downloaded.peer_url,
            # A repaired version stays on disk until pruned, but is never a rollback target.
            kept_versions=[v for v in activated.kept if v != inp.repair_from],
        )

    # --- the steps after a download, shared by a delivery and a rollback --------------------------

    @staticmethod
    def _work(inp: NodeWorkflowInput) -> dict[str, Any]:
        return {"ref": inp.ref, "spec": inp.revision.spec, "node": inp.node}

    async def _verify(self, inp: NodeWorkflowInput, queue: str, version: str, *, summary: str) -> None:
        await workflow.execute_activity_method(
            FilesActivities.verify_model,
            VerifyModelInput(**self._work(inp), version_id=version),
            task_queue=queue,
            schedule_to_start_timeout=timedelta(seconds=inp.options.node_schedule_to_start_seconds),
            start_to_close_timeout=VERIFY_TIMEOUT,
            heartbeat_timeout=VERIFY_HEARTBEAT,
            retry_policy=NODE_LOCAL_RETRY,
            summary=summary,
        )

    async def _activate(
        self, inp: NodeWorkflowInput, queue: str, version: str, *, summary: str
    ) -> ActivateModelVersionResult:
        return await workflow.execute_activity_method(
            FilesActivities.activate_model_version,
            ActivateModelVersionInput(
                **self._work(inp), version_id=version, keep_previous=inp.options.keep_versions
            ),
            task_queue=queue,
            schedule_to_start_timeout=timedelta(seconds=inp.options.node_schedule_to_start_seconds),
            start_to_close_timeout=FILES_TIMEOUT,
            retry_policy=NODE_LOCAL_RETRY,
            summary=summary,
        )

    async def _parse(self, inp: NodeWorkflowInput, queue: str, version: str) -> ParseModelResult:
        spec = inp.revision.spec
        assert spec is not None
        if skip_config_parsing(inp.revision.annotations):
            return ParseModelResult(metadata=spec_metadata(spec), skipped=True)
        return await workflow.execute_activity_method(
            ParseActivities.parse_model,
            ParseModelInput(**self._work(inp), version_id=version),
            task_queue=queue,
            schedule_to_start_timeout=timedelta(seconds=inp.options.node_schedule_to_start_seconds),
            start_to_close_timeout=PARSE_TIMEOUT,
            retry_policy=NODE_LOCAL_RETRY,
        )

    async def _rollback(self, inp: NodeWorkflowInput) -> NodeOutcome:
        """Serve a kept version again: verify every byte of it, swap the link, parse it."""
        spec = inp.revision.spec
        assert spec is not None, "a rollback always carries the current spec"
        version = inp.version_id
        try:
            queue = await self._ensure_worker(inp)
            await self._verify(
                inp, queue, version, summary=f"verify kept version {version} before serving it"
            )
            activated = await self._activate(
                inp, queue, version, summary=f"roll back: serve {version} at {spec.storage.path}"
            )
            parsed = await self._parse(inp, queue, version)
        except ActivityError as err:
            if _cancelled(err):
                raise
            failure = describe_failure(err)
            serving = inp.serving
            still = f"; still serving version {serving.version_id}" if serving else ""
            await self._event(
                inp,
                "RollbackFailed",
                f"to {version}: {failure.reason}: {failure.message}{still}",
                warning=True,
            )
            return NodeOutcome(
                node=inp.node,
                state=NodeModelStatus.FAILED.value,
                reason=failure.reason,
                message=f"rollback to {version}: {failure.message}",
                generation=inp.revision.generation,
                fingerprint=delivery_fingerprint(spec),
                retryable=False,
            )
        await self._label(inp, NodeModelStatus.READY, config=parsed.metadata)
        workflow.logger.info("%s rolled back on node %s to version %s", inp.ref.display(), inp.node, version)
        await self._event(inp, "RolledBack", f"serving kept version {version} again ({inp.cause})")
        return NodeOutcome(
            node=inp.node,
            state=NodeModelStatus.READY.value,
            reason="RolledBack",
            message=f"serving kept version {version} ({inp.cause})",
            generation=inp.revision.generation,
            revision=inp.serving.revision if inp.serving else "",
            # Pinned until the spec changes again or an admin asks otherwise: the current spec's
            # fingerprint, so the rollback is not undone by the next reconcile.
            fingerprint=delivery_fingerprint(spec),
            metadata=parsed.metadata,
            version_id=activated.version_id,
            kept_versions=activated.kept,
        )

    async def _remove(self, inp: NodeWorkflowInput) -> NodeOutcome:
        message = ""
        spec = inp.revision.spec
        if spec is None:
            # The model workflow sweeps only with a known spec; without one the path is unknown.
            message = "no spec known: nothing removed on the node"
        elif inp.node_exists:
            try:
                queue = await self._ensure_worker(inp)
                result = await workflow.execute_activity_method(
                    FilesActivities.remove_model_files,
                    RemoveModelFilesInput(ref=inp.ref, spec=spec, node=inp.node),
                    task_queue=queue,
                    schedule_to_start_timeout=timedelta(seconds=inp.options.node_schedule_to_start_seconds),
                    start_to_close_timeout=FILES_TIMEOUT,
                    retry_policy=NODE_LOCAL_RETRY,
                )
                message = f"removed {result.path}" if result.removed else f"nothing at {result.path}"
            except ActivityError as err:
                failure = describe_failure(err)
                # The entry and label still go: a node that cannot run our worker must not keep
                # the resource's deletion hanging. The history keeps what was left behind.
                message = f"files not removed: {failure.reason}: {failure.message}"
                workflow.logger.warning("node %s: %s", inp.node, message)
        else:
            message = "node no longer exists; nothing to remove on it"
        await workflow.execute_activity_method(
            LabelActivities.remove_node_model_status,
            RemoveNodeModelStatusInput(ref=inp.ref, node=inp.node),
            task_queue=CONTROL_TASK_QUEUE,
            start_to_close_timeout=KUBE_WRITE_TIMEOUT,
            retry_policy=KUBE_WRITE_RETRY,
        )
        return NodeOutcome(
            node=inp.node,
            state=NodeModelStatus.DELETED.value,
            reason="Removed",
            message=message,
            generation=inp.revision.generation,
        )


def _cancelled(err: ActivityError) -> bool:
    """The model's workflow cancelled this node work: not a failure of the node, nothing to report."""
    return is_cancelled_exception(err) and workflow.patched(PATCH_CANCEL_IS_NOT_FAILURE)


def _download_summary(inp: NodeWorkflowInput) -> str:
    if inp.repair_from:
        return f"repair {inp.repair_from}: fetch {len(inp.damaged_files)} damaged file(s) again"
    if inp.fresh_tag:
        return "fresh download, ignoring what is on disk"
    return f"download {inp.ref.display()} onto {inp.node}"


def _pvc_claim(inp: NodeWorkflowInput) -> tuple[str | None, str | None]:
    """(namespace, claim) for a pvc:// model; (None, None) otherwise. Parsing is pure."""
    if inp.revision.spec is None:
        return None, None
    try:
        uri = inp.revision.storage_uri(inp.ref.kind)
    except InvalidSpecError:
        return None, None
    if not isinstance(uri, PvcUri):
        return None, None
    return resolve_claim(kind=inp.ref.kind, namespace=inp.ref.namespace, uri=uri)
