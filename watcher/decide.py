"""What the watcher should do about one event: plain data in, plain data out.

`decide(event, known)` looks at one model or node event and at what the watcher already knows, and
returns decisions (`Apply`, `Delete`, `PlacementChanged`, `MarkInvalid`, `Ignore`); it performs no
I/O and imports neither the Kubernetes client nor Temporal, so every rule is a table-driven test.
`remember(known, event, decisions)` records the outcome once the decisions were carried out, so
a failed act is decided again on the next event instead of being forgotten.

Rules for a model event (ADDED, MODIFIED, or a periodic RESYNC):
- deletionTimestamp set and our finalizer present → Delete (once per uid); without our finalizer
  → Ignore: nothing of ours blocks the deletion, and the DELETED event that follows cleans up.
- the spec does not parse, or the installation's admission policy refuses it (tenancy of a
  claim, the models roots: `modelferry.admission`) → MarkInvalid(field, rule) once per
  generation, and not at all when the status already says exactly that (so the workflow's
  status write, which reports it, does not loop).
- a uid or a generation newer than the one applied → Apply; a new uid under a known name also
  Deletes the old incarnation first.
- admin annotations (`modelferry.io/redownload`, `modelferry.io/retry`, `modelferry.io/rollback:
  <version>`) with a value this watcher has not acted on → RunAdminAction, one per annotation,
  beside an Apply or on their own: an annotation change does not bump metadata.generation, so it
  is looked at on the "generation already applied" path too. A watcher that restarts has seen no
  value and sends them again; the workflow runs each `key=value` token once.
- the generation already applied (and no admin annotation to act on) → Ignore. That covers our
  own and the workflows' status writes (they do not bump metadata.generation) and RESYNC
  re-deliveries. Re-applying on every resync would be harmless (the workflow drops a generation
  it already has) but would add one signal per model per resync period to every workflow history
  for nothing: a fresh watcher process starts with empty knowledge and applies everything once,
  which is what heals a lost workflow.
A model DELETED (the object is gone) that we know and have not cleaned up → Delete, so cleanup
happens even when someone stripped the finalizer.

A node event → PlacementChanged for exactly the known models whose eligibility on that node flips
(a node that appears or disappears counts as a flip wherever the model is eligible).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelferry.admission import AdmissionPolicy, check_admission
from modelferry.errors import InvalidSpecError
from modelferry.messages import AdminAction, AdminRequest, ModelRef, ModelRevision
from modelferry.modelstatus import INVALID_SPEC_REASON
from modelferry.names import (
    ADMIN_REASON_ANNOTATION,
    FINALIZER,
    REDOWNLOAD_ANNOTATION,
    RETRY_ANNOTATION,
    ROLLBACK_ANNOTATION,
    SKIP_CONFIG_PARSING_ANNOTATIONS,
    ModelKey,
    ModelKind,
)
from modelferry.placement import evaluate_placement
from modelferry.spec.affinity import NodeAffinity
from modelferry.spec.parse import parse_resource

READY_CONDITION = "Ready"


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"  # the informer re-delivering an object it already delivered


def model_key(kind: ModelKind, obj: Mapping[str, Any]) -> ModelKey:
    meta = _metadata(obj)
    namespace = meta.get("namespace")
    namespace = str(namespace) if kind.namespaced and namespace is not None else None
    return (kind, namespace, str(meta.get("name", "")))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's metadata; garbage (which a real API server never sends) reads as empty."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _generation(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("generation") or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass(frozen=True)
class ModelEvent:
    type: EventType
    kind: ModelKind
    obj: Mapping[str, Any]  # the object as the API server sent it

    @property
    def key(self) -> ModelKey:
        return model_key(self.kind, self.obj)


@dataclass(frozen=True)
class NodeEvent:
    type: EventType
    name: str
    labels: Mapping[str, str]  # for DELETED, the labels it last had


Event = ModelEvent | NodeEvent


@dataclass(frozen=True)
class Placement:
    """The parts of a spec that decide which nodes hold the model."""

    disabled: bool = False
    node_selector: Mapping[str, str] | None = None
    node_affinity: NodeAffinity | None = None

    def eligible(self, *, node_name: str, labels: Mapping[str, str] | None) -> tuple[bool, str]:
        if labels is None:
            return False, "node is gone"
        decision = evaluate_placement(
            disabled=self.disabled,
            node_selector=self.node_selector,
            node_affinity=self.node_affinity,
            node_name=node_name,
            node_labels=labels,
        )
        return decision.eligible, decision.reason


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Apply:
    ref: ModelRef
    revision: ModelRevision
    placement: Placement


@dataclass(frozen=True)
class Delete:
    ref: ModelRef
    why: str


@dataclass(frozen=True)
class PlacementChanged:
    ref: ModelRef
    node: str
    eligible: bool
    reason: str


@dataclass(frozen=True)
class MarkInvalid:
    ref: ModelRef
    generation: int
    field: str
    rule: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.rule}" if self.field else self.rule


@dataclass(frozen=True)
class RunAdminAction:
    """An admin annotation's new value: run `action` once (an Update on the model's workflow)."""

    ref: ModelRef
    action: AdminAction
    request: AdminRequest
    annotation: str
    value: str


@dataclass(frozen=True)
class Ignore:
    why: str


Decision = Apply | Delete | PlacementChanged | MarkInvalid | RunAdminAction | Ignore

ANNOTATION_ACTIONS: dict[str, AdminAction] = {
    REDOWNLOAD_ANNOTATION: AdminAction.REDOWNLOAD,
    RETRY_ANNOTATION: AdminAction.RETRY,
    ROLLBACK_ANNOTATION: AdminAction.ROLLBACK,
}


# --- what the watcher knows ------------------------------------------------------------------


@dataclass
class KnownModel:
    ref: ModelRef
    applied_generation: int = 0  # 0: never applied
    invalid_generation: int = 0  # the generation last marked invalid
    deleting: bool = False  # Delete was carried out for this uid
    placement: Placement | None = None  # of the applied generation
    eligible_nodes: frozenset[str] = frozenset()
    admin_seen: dict[str, str] = field(default_factory=dict)  # admin annotation → value acted on


@dataclass
class Known:
    models: dict[ModelKey, KnownModel] = field(default_factory=dict)
    nodes: dict[str, Mapping[str, str]] = field(default_factory=dict)  # name → labels


# --- deciding --------------------------------------------------------------------------------


def decide(event: Event, known: Known, *, policy: AdmissionPolicy | None = None) -> list[Decision]:
    """The decisions for one event: never empty (an `Ignore` says why nothing is to be done).

    `policy` is the installation's admission policy (default: `AdmissionPolicy()`).
    """
    if isinstance(event, NodeEvent):
        return _decide_node(event, known)
    return _decide_model(event, known, policy or AdmissionPolicy())


def _decide_model(event: ModelEvent, known: Known, policy: AdmissionPolicy) -> list[Decision]:
    obj = event.obj
    meta = _metadata(obj)
    ref = _ref(event.kind, meta)
    current = known.models.get(event.key)

    if event.type is EventType.DELETED:
        if current is None:
            return [Ignore("deleted, never seen applied")]
        if current.deleting:
            return [Ignore("deleted, cleanup already requested")]
        return [Delete(current.ref, why="the resource is gone")]

    same_uid = current is not None and current.ref.uid == ref.uid
    if meta.get("deletionTimestamp"):
        finalizers = meta.get("finalizers")
        if not isinstance(finalizers, list) or FINALIZER not in finalizers:
            return [Ignore("being deleted without our finalizer: nothing blocks, nothing to clean")]
        if current is not None and same_uid and current.deleting:
            return [Ignore("being deleted, cleanup already requested")]
        return [Delete(ref, why="deletionTimestamp set")]

    generation = _generation(meta)
    superseded: list[Decision] = []
    if current is not None and not same_uid and not current.deleting:
        superseded = [Delete(current.ref, why=f"replaced by a new object (uid {ref.uid})")]

    try:
        # Status is written by controllers, not users: judge only what the user wrote.
        resource = parse_resource({k: v for k, v in obj.items() if k != "status"})
        refused = check_admission(resource, policy)
        if refused:
            raise InvalidSpecError(refused[0].rule, field=refused[0].field)
    except InvalidSpecError as error:
        return [
            *superseded,
            *_decide_invalid(
                obj, ref=ref, generation=generation, error=error, known=current if same_uid else None
            ),
        ]

    admin = _decide_admin(meta, ref=ref, known=current if same_uid else None)
    if current is not None and same_uid and current.applied_generation >= generation:
        if admin:
            return admin
        if event.type is EventType.RESYNC:
            return [Ignore("resync: generation already applied")]
        return [Ignore("generation already applied (status or metadata change)")]

    spec = resource.spec
    placement = Placement(
        disabled=bool(spec.disabled),
        node_selector=dict(spec.storage.node_selector) if spec.storage.node_selector else None,
        node_affinity=spec.storage.node_affinity,
    )
    revision = ModelRevision(
        generation=generation,
        spec=resource.spec,  # parsed once, here; everything downstream reads its fields
        annotations=_workflow_annotations(meta),
        uid=ref.uid,
    )
    return [*superseded, Apply(ref, revision, placement), *admin]


def _workflow_annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    """The annotations the workflows read (skip-config-parsing), not the rest: every signal and
    child input carries them, and `last-applied-configuration` alone can be as big as the spec."""
    annotations = meta.get("annotations") or {}
    return {k: v for k, v in annotations.items() if k in SKIP_CONFIG_PARSING_ANNOTATIONS}


def _decide_admin(meta: Mapping[str, Any], *, ref: ModelRef, known: KnownModel | None) -> list[Decision]:
    """A RunAdminAction per admin annotation whose value this watcher has not acted on."""
    annotations = meta.get("annotations")
    if not isinstance(annotations, Mapping):
        return []
    seen = known.admin_seen if known is not None else {}
    reason = annotations.get(ADMIN_REASON_ANNOTATION)
    decisions: list[Decision] = []
    for key, action in ANNOTATION_ACTIONS.items():
        value = annotations.get(key)
        if not isinstance(value, str) or seen.get(key) == value:
            continue
        request = AdminRequest(
            reason=reason if isinstance(reason, str) else "",
            requested_by=f"annotation:{key}",
            to_version=value.strip() if action is AdminAction.ROLLBACK else "",
            token=f"{key}={value}",
        )
        decisions.append(RunAdminAction(ref, action=action, request=request, annotation=key, value=value))
    return decisions


def _decide_invalid(
    obj: Mapping[str, Any],
    *,
    ref: ModelRef,
    generation: int,
    error: InvalidSpecError,
    known: KnownModel | None,
) -> list[Decision]:
    decision = MarkInvalid(
        ref,
        generation=generation,
        field=error.field or "",
        rule=error.reason,
    )
    if known is not None and known.invalid_generation == generation:
        return [Ignore("invalid spec already reported for this generation")]
    if _status_says_invalid(obj, generation=generation, message=decision.message):
        return [Ignore("status already reports this invalid spec")]
    return [decision]


def _decide_node(event: NodeEvent, known: Known) -> list[Decision]:
    labels = None if event.type is EventType.DELETED else event.labels
    was_known = event.name in known.nodes
    decisions: list[Decision] = []
    for model in known.models.values():
        if model.placement is None or model.deleting:
            continue
        was = event.name in model.eligible_nodes
        now, reason = model.placement.eligible(node_name=event.name, labels=labels)
        if was == now:
            continue
        if labels is None:
            what = "was removed"
        elif not was_known:
            what = "appeared"
        else:
            what = "changed labels"
        verdict = "eligible" if now else "no longer eligible"
        decisions.append(
            PlacementChanged(
                model.ref,
                node=event.name,
                eligible=now,
                reason=f"node {event.name} {what}: {verdict} ({reason})",
            )
        )
    return decisions or [Ignore(f"node {event.name}: no model's placement changed")]


# --- remembering -----------------------------------------------------------------------------


def remember(known: Known, event: Event, decisions: Sequence[Decision]) -> None:
    """Record in `known` that `decisions` for `event` were carried out."""
    if isinstance(event, NodeEvent):
        _remember_node(known, event)
        return
    key = event.key
    for decision in decisions:
        current = known.models.get(key)
        match decision:
            case Delete() if event.type is EventType.DELETED:
                known.models.pop(key, None)
            case Delete(ref=ref):  # kept until DELETED so later events of this uid are ignored
                known.models[key] = KnownModel(ref=ref, deleting=True)
            case Apply(ref=ref, revision=revision, placement=placement):
                entry = current if current is not None and current.ref.uid == ref.uid else KnownModel(ref=ref)
                entry.ref = ref
                entry.applied_generation = revision.generation
                entry.deleting = False
                entry.placement = placement
                entry.eligible_nodes = frozenset(
                    name
                    for name, labels in known.nodes.items()
                    if placement.eligible(node_name=name, labels=labels)[0]
                )
                known.models[key] = entry
            case MarkInvalid(ref=ref, generation=generation):
                entry = current if current is not None and current.ref.uid == ref.uid else KnownModel(ref=ref)
                entry.invalid_generation = generation
                known.models[key] = entry
            case RunAdminAction(ref=ref, annotation=annotation, value=value):
                entry = current if current is not None and current.ref.uid == ref.uid else KnownModel(ref=ref)
                entry.admin_seen[annotation] = value
                known.models[key] = entry
            case Ignore() if event.type is EventType.DELETED:
                known.models.pop(key, None)
            case _:
                pass


def _remember_node(known: Known, event: NodeEvent) -> None:
    # Recompute rather than trust the decision: the end state is always "current placement over
    # current labels", whatever order node and model events were carried out in.
    labels = None if event.type is EventType.DELETED else dict(event.labels)
    if labels is None:
        known.nodes.pop(event.name, None)
    else:
        known.nodes[event.name] = labels
    for model in known.models.values():
        if model.placement is None:
            continue
        eligible, _ = model.placement.eligible(node_name=event.name, labels=labels)
        if eligible:
            model.eligible_nodes = model.eligible_nodes | {event.name}
        else:
            model.eligible_nodes = model.eligible_nodes - {event.name}


# --- helpers ---------------------------------------------------------------------------------


def _ref(kind: ModelKind, meta: Mapping[str, Any]) -> ModelRef:
    namespace = meta.get("namespace")
    return ModelRef(
        kind=kind,
        name=str(meta.get("name", "")),
        namespace=str(namespace) if kind.namespaced and namespace is not None else None,
        uid=str(meta.get("uid") or ""),
    )


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []


def _status_says_invalid(obj: Mapping[str, Any], *, generation: int, message: str) -> bool:
    for condition in _conditions(obj):
        if (
            condition.get("type") == READY_CONDITION
            and condition.get("status") == "False"
            and condition.get("reason") == INVALID_SPEC_REASON
            and condition.get("message") == message
            and condition.get("observedGeneration") == generation
        ):
            return True
    return False
