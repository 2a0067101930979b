"""Control-queue activity that makes sure a worker will poll a node's task queue.

`job` mode creates (idempotently) the node's worker Job before node work is dispatched; a Job that
already finished (idle exit) is replaced. `daemonset` and `static` modes have a worker already, so
this only names the queue. A node that cannot run the worker shows up as a schedule-to-start
timeout on the node's activities, which the node workflow reports as the node's failure reason.

In `job` mode a node has no worker once its models are Ready, so nothing would verify them: the
controller's verify sweep (`wake_nodes_holding_models`, every verify interval) ensures the worker
Job of each node that holds a model; the Job runs the checks that are due and exits when idle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import typed_failures
from activities.kube import KubeClient
from modelferry.errors import KubeConflictError, KubeNotFoundError
from modelferry.messages import EnsureNodeWorkerInput, EnsureNodeWorkerResult
from modelferry.nodejob import build_worker_job, job_is_finished, worker_job_name, worker_task_queue
from modelferry.nodestatus import nodes_holding_models
from modelferry.settings import Settings, WorkerMode

log = logging.getLogger(__name__)


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
        created = ensure_worker_job(
            kube=self._kube, settings=self._settings, node=inp.node, namespace=namespace, claim_name=claim
        )
        return EnsureNodeWorkerResult(task_queue=queue, mode=mode.value, job_name=name, created=created)


def ensure_worker_job(
    *, kube: KubeClient, settings: Settings, node: str, namespace: str, claim_name: str | None = None
) -> bool:
    """Make sure the node's worker Job (for `claim_name`, the claim's) exists and runs; True when
    this call created it. A finished one (idle exit) is replaced. Raises KubeConflictError while an
    old Job is still being deleted: a later call settles it."""
    claim_namespace = namespace if claim_name else None
    name = worker_job_name(node=node, claim_namespace=claim_namespace, claim_name=claim_name)
    try:
        job = kube.get_job(namespace, name)
        if not job_is_finished(job):
            return False
        kube.delete_job(namespace, name)
    except KubeNotFoundError:
        pass
    body = build_worker_job(settings=settings, node=node, namespace=namespace, claim_name=claim_name)
    try:
        kube.create_job(namespace, body)
    except KubeConflictError:
        # Created concurrently by another model's node workflow (or the verify sweep), or the old
        # one is still being deleted: either way a retry settles it.
        job = kube.get_job(namespace, name)
        if job.get("metadata", {}).get("deletionTimestamp") or job_is_finished(job):
            raise
        return False
    return True


@dataclass(slots=True)
class Sweep:
    """What one verify sweep did, by node name."""

    created: list[str] = field(default_factory=list)  # a worker Job was created
    running: list[str] = field(default_factory=list)  # the node's worker Job was running already
    failed: list[str] = field(default_factory=list)  # logged; tried again on the next sweep


def wake_nodes_holding_models(*, kube: KubeClient, settings: Settings) -> Sweep:
    """Ensure the worker Job (the node's own queue, no claim) of every node whose labels say it
    holds a model. Idempotent, so both manager replicas may sweep; one node's failure is logged
    and does not stop the others."""
    sweep = Sweep()
    for node in nodes_holding_models(kube.list_nodes()):
        try:
            created = ensure_worker_job(
                kube=kube, settings=settings, node=node, namespace=settings.kube.agent_namespace
            )
        except Exception as error:
            log.warning("verify sweep: could not ensure the worker Job of node %s: %s", node, error)
            sweep.failed.append(node)
            continue
        (sweep.created if created else sweep.running).append(node)
    return sweep
