"""Kubernetes Events about a model resource, so `kubectl describe basemodel X` tells its story.

Pure functions: the activity (`activities/events.py`) reads the resource, builds the Event here,
creates it, and on AlreadyExists patches the count of the one already there.

Repeats are aggregated as client-go's recorder does: an Event's name is derived from what makes it
the same event (the object, type, reason and message), so a repeat finds the existing Event by name
and only its `count` and `lastTimestamp` move. A different message is another Event.

Where: an Event lives in its object's namespace; a cluster-scoped object's Events live in
`default` with an empty `involvedObject.namespace` (what the API server requires of them, and
where `kubectl describe` looks, across all namespaces, for a cluster-scoped object's Events).
"""

from __future__ import annotations

import hashlib
from typing import Any

from modelferry.messages import ModelRef
from modelferry.names import API_GROUP_VERSION, ModelKind

SOURCE_COMPONENT = "modelferry"
REPORTING_CONTROLLER = "modelferry.io/controller"
CLUSTER_EVENT_NAMESPACE = "default"
MESSAGE_MAX = 1024  # what client-go's recorder keeps of a message; longer ones are cut
_INSTANCE_MAX = 128  # the API server's limit on reportingInstance
_NAME_MAX = 253  # a DNS subdomain
_HASH_CHARS = 16  # 64 bits: a collision between two distinct events of one object is negligible


def event_namespace(ref: ModelRef) -> str:
    if ModelKind(ref.kind).namespaced and ref.namespace:
        return ref.namespace
    return CLUSTER_EVENT_NAMESPACE


def event_message(*, message: str, node: str = "") -> str:
    """The message as recorded: prefixed with the node it is about, at most MESSAGE_MAX chars."""
    text = f"node {node}: {message}" if node else message
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 3] + "..."


def event_name(*, ref: ModelRef, type: str, reason: str, message: str) -> str:
    """`<resource name>.<hash of what makes the event the same>`: a repeat gets the same name."""
    identity = "\0".join((str(ref.kind), ref.namespace or "", ref.name, ref.uid, type, reason, message))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_HASH_CHARS]
    # A DNS subdomain: a cut name must not end its last label with "-" or ".".
    prefix = ref.name[: _NAME_MAX - _HASH_CHARS - 1].rstrip("-.")
    return f"{prefix}.{digest}"


def model_event(
    *, ref: ModelRef, reason: str, message: str, type: str, node: str, now: str, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about the resource `ref` (its uid filled), seen once at `now` (RFC 3339)."""
    text = event_message(message=message, node=node)
    kind = ModelKind(ref.kind)
    involved: dict[str, Any] = {"apiVersion": API_GROUP_VERSION, "kind": kind.value, "name": ref.name}
    if kind.namespaced and ref.namespace:
        involved["namespace"] = ref.namespace
    if ref.uid:
        involved["uid"] = ref.uid
    source: dict[str, str] = {"component": SOURCE_COMPONENT}
    if node:
        source["host"] = node  # as the kubelet's events name their node
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(ref=ref, type=type, reason=reason, message=text),
            "namespace": event_namespace(ref),
        },
        "involvedObject": involved,
        "reason": reason,
        "message": text,
        "type": type,
        "source": source,
        "reportingComponent": REPORTING_CONTROLLER,
        "reportingInstance": instance[:_INSTANCE_MAX],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def repeat_patch(existing: dict[str, Any], *, now: str) -> dict[str, Any]:
    """A merge patch counting one more occurrence of `existing`, valid only against the version
    read (its resourceVersion), so two concurrent repeats both count."""
    count = existing.get("count")
    return {
        "metadata": {"resourceVersion": (existing.get("metadata") or {}).get("resourceVersion")},
        "count": (count if isinstance(count, int) and count > 0 else 1) + 1,
        "lastTimestamp": now,
    }
