"""Control-queue activity that records a Kubernetes Event about a model resource, so
`kubectl describe basemodel X` shows what happened to it (downloads started, nodes ready or
failed, repairs), as a controller's events do.

The Event is built by `modelferry.events`; a repeat of the same event (same object, type, reason
and message) has the same name, so it is counted on the Event already there (count and
lastTimestamp) instead of adding another, like client-go's aggregation. A resource that is gone,
or was re-created under another uid, gets no Event: `recorded=False`, not a failure.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from temporalio import activity

from activities.errors import typed_failures
from activities.kube import KubeClient
from modelferry.errors import KubeConflictError, KubeForbiddenError, KubeNotFoundError
from modelferry.events import event_namespace, model_event, repeat_patch
from modelferry.messages import RecordModelEventInput, RecordModelEventResult

_CONFLICT_ATTEMPTS = 10  # concurrent repeats of one event: each retry re-reads the count
# What the API server answers (403) when an Event is created in a namespace being deleted: the
# model's own deletion then records into a namespace that cannot take it, which is no failure.
_NAMESPACE_TERMINATING = "being terminated"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventActivities:
    def __init__(self, *, kube: KubeClient, instance: str | None = None) -> None:
        self._kube = kube
        # reportingInstance: which replica recorded it (the pod's hostname in a cluster).
        self._instance = instance or socket.gethostname()

    @activity.defn(name="record_model_event")
    @typed_failures
    def record_model_event(self, inp: RecordModelEventInput) -> RecordModelEventResult:
        try:
            live = self._kube.get_model(inp.ref)
        except KubeNotFoundError:
            return RecordModelEventResult(recorded=False)
        uid = str((live.get("metadata") or {}).get("uid") or "")
        if inp.ref.uid and uid and uid != inp.ref.uid:
            return RecordModelEventResult(recorded=False)  # the resource it was about is gone
        ref = inp.ref.model_copy(update={"uid": uid or inp.ref.uid})
        now = _now()
        body = model_event(
            ref=ref,
            reason=inp.reason,
            message=inp.message,
            type=inp.type,
            node=inp.node,
            now=now,
            instance=self._instance,
        )
        namespace, name = event_namespace(ref), body["metadata"]["name"]
        try:
            for _ in range(_CONFLICT_ATTEMPTS):
                try:
                    self._kube.create_event(namespace, body)
                    return RecordModelEventResult(recorded=True)
                except KubeConflictError:
                    pass  # AlreadyExists: a repeat, counted on the Event already there
                try:
                    existing = self._kube.get_event(namespace, name)
                    self._kube.patch_event(namespace, name, repeat_patch(existing, now=now))
                    return RecordModelEventResult(recorded=True)
                except (KubeConflictError, KubeNotFoundError):
                    continue  # counted by someone else meanwhile, or expired: again
        except KubeForbiddenError as error:
            if _NAMESPACE_TERMINATING not in error.message:
                raise
            activity.logger.info("%s: no event, its namespace is being deleted", inp.ref.display())
            return RecordModelEventResult(recorded=False)
        raise KubeConflictError(f"event {namespace}/{name}: recording kept conflicting")
