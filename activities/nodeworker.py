"""Control-queue activity that makes sure a worker will poll a node's task queue.

`job` mode creates (idempotently) the node's worker Job before node work is dispatched; a Job that
already finished (idle exit) is replaced. `daemonset` and `static` modes have a worker already, so
this only names the queue. A node that cannot run the worker shows up as a schedule-to-start
timeout on the node's activities, which the node workflow reports as the node's failure reason.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import typed_failures
from activities.kube import KubeClient
from modelferry.errors import KubeConflictError, KubeNotFoundError
from modelferry.messages import EnsureNodeWorkerInput, EnsureNodeWorkerResult
from modelferry.nodejob import build_worker_job, job_is_finished, worker_job_name, worker_task_queue
from modelferry.settings import Settings, WorkerMode


class NodeWorkerActivities:
    def __init__(self, *, kube: KubeClient, settings: Settings) -> None:
        self._kube = kube
        self._settings = settings

    @activity.defn(name="ensure_node_worker")
    @typed_failures
    def ensure_node_worker(self, inp: EnsureNodeWorkerInput) -> EnsureNodeWorkerResult:
        mode = self._settings.worker.mode
        if mode is not WorkerMode.JOB:
            return EnsureNodeWorkerResult(task_queue=worker_task_queue(node=inp.node), mode=mode.value)
        if not self._kube.node_exists(inp.node):
            raise ApplicationError(f"node {inp.node} does not exist", type="NodeNotFound", non_retryable=True)
        namespace = inp.claim_namespace or self._settings.kube.agent_namespace
        claim = inp.claim_name
        name = worker_job_name(node=inp.node, claim_namespace=inp.claim_namespace, claim_name=claim)
        queue = worker_task_queue(node=inp.node, claim_namespace=inp.claim_namespace, claim_name=claim)
        try:
            job = self._kube.get_job(namespace, name)
            if not job_is_finished(job):
                return EnsureNodeWorkerResult(task_queue=queue, mode=mode.value, job_name=name)
            self._kube.delete_job(namespace, name)
        except KubeNotFoundError:
            pass
        body = build_worker_job(settings=self._settings, node=inp.node, namespace=namespace, claim_name=claim)
        try:
            self._kube.create_job(namespace, body)
        except KubeConflictError:
            # Created concurrently by another model's node workflow, or the old one is still being
            # deleted: either way a retry of this activity settles it.
            job = self._kube.get_job(namespace, name)
            if job.get("metadata", {}).get("deletionTimestamp") or job_is_finished(job):
                raise
            return EnsureNodeWorkerResult(task_queue=queue, mode=mode.value, job_name=name)
        return EnsureNodeWorkerResult(task_queue=queue, mode=mode.value, job_name=name, created=True)
