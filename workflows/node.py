"""`NodeWorkflow`: one model on one node, with its own readable history.

deliver: label Updating -> ensure the node's worker -> download -> verify -> activate -> parse ->
label Ready (or Failed, with the reason). remove: delete the files (when the node still exists),
then the ConfigMap entry and node label. Node activities run on the node's own task queue; a node
whose worker never polls fails by schedule-to-start timeout instead of hanging.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

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
        DownloadModelInput,
        EnsureNodeWorkerInput,
        NodeAction,
        NodeOutcome,
        NodeWorkflowInput,
        ParseModelInput,
        ParseModelResult,
        RemoveModelFilesInput,
        RemoveNodeModelStatusInput,
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


def skip_config_parsing(annotations: dict[str, str]) -> bool:
    return any(annotations.get(key, "").strip().lower() == "true" for key in SKIP_CONFIG_PARSING_ANNOTATIONS)


@workflow.defn(name="NodeWorkflow")
class NodeWorkflow:
    @workflow.run
    async def run(self, inp: NodeWorkflowInput) -> NodeOutcome:
        if inp.action == NodeAction.REMOVE:
            return await self._remove(inp)
        return await self._deliver(inp)

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
        await self._label(inp, NodeModelStatus.UPDATING)
        work = {"ref": inp.ref, "spec": spec, "node": inp.node}
        try:
            queue = await self._ensure_worker(inp)
            downloaded = await workflow.execute_activity_method(
                DownloadActivities.download_model,
                DownloadModelInput(**work),
                task_queue=queue,
                schedule_to_start_timeout=schedule_to_start,
                start_to_close_timeout=timedelta(seconds=inp.options.download_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=inp.options.download_heartbeat_seconds),
                retry_policy=DOWNLOAD_RETRY,
            )
            version = downloaded.version_id
            await workflow.execute_activity_method(
                FilesActivities.verify_model,
                VerifyModelInput(**work, version_id=version),
                task_queue=queue,
                schedule_to_start_timeout=schedule_to_start,
                start_to_close_timeout=VERIFY_TIMEOUT,
                heartbeat_timeout=VERIFY_HEARTBEAT,
                retry_policy=NODE_LOCAL_RETRY,
            )
            await workflow.execute_activity_method(
                FilesActivities.activate_model_version,
                ActivateModelVersionInput(**work, version_id=version),
                task_queue=queue,
                schedule_to_start_timeout=schedule_to_start,
                start_to_close_timeout=FILES_TIMEOUT,
                retry_policy=NODE_LOCAL_RETRY,
            )
            if skip_config_parsing(inp.revision.annotations):
                parsed = ParseModelResult(metadata=spec_metadata(spec), skipped=True)
            else:
                parsed = await workflow.execute_activity_method(
                    ParseActivities.parse_model,
                    ParseModelInput(**work, version_id=version),
                    task_queue=queue,
                    schedule_to_start_timeout=schedule_to_start,
                    start_to_close_timeout=PARSE_TIMEOUT,
                    retry_policy=NODE_LOCAL_RETRY,
                )
        except ActivityError as err:
            failure = describe_failure(err)
            workflow.logger.warning(
                "%s failed on node %s: %s: %s", inp.ref.display(), inp.node, failure.reason, failure.message
            )
            await self._label(inp, NodeModelStatus.FAILED)
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
        return NodeOutcome(
            node=inp.node,
            state=NodeModelStatus.READY.value,
            reason="Downloaded",
            message=f"{downloaded.files} file(s), {downloaded.total_bytes} bytes verified",
            generation=inp.revision.generation,
            revision=downloaded.revision,
            fingerprint=fingerprint,
            metadata=parsed.metadata,
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
