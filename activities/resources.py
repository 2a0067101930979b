"""Control-queue activities on the model resource itself: finalizer, placement plan, spec
metadata and status. Each reads, calls a pure function, and writes only what changed.

Status has one writer, the model's workflow, and every write says which generation it describes:
a write older than the status it would replace is refused, so a late write of generation N's
Ready never hides what generation N+1 reported.

Identity is the uid, not the name: a resource deleted and re-created under the same name is
another model, and a workflow still cleaning up the old one must not write the new one's status,
spec or finalizer. Every read here treats an object with another uid as gone.

When OME's own manager runs too (`kube.ome_manager`; `auto` detects it by OME's finalizer on the
model), it owns `state`, `nodesReady` and `nodesFailed` and we write only `conditions` and
`observedGeneration` (`modelstatus.split_status` says why). Its status writes drop those two, so
after a write the activity gives OME a moment to catch up with our node reports and writes ours
again if OME's write dropped them; once OME's fields match, a repeat writes nothing.

Parsed metadata refreshes the spec fields the parser wrote before (recorded, with their values, in
the `modelferry.io/parsed-fields` annotation) and fills empty ones; a field a user set is never
overwritten (`lifecycle.refresh_parsed_fields`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.errors import typed_failures
from activities.kube import KubeClient
from modelferry import metrics
from modelferry.errors import KubeConflictError, KubeNotFoundError
from modelferry.lifecycle import refresh_parsed_fields
from modelferry.messages import (
    EnsureFinalizerInput,
    EnsureFinalizerResult,
    ModelRef,
    PlanPlacementInput,
    PlanPlacementResult,
    ReleaseFinalizerInput,
    ReleaseFinalizerResult,
    WriteModelStatusInput,
    WriteModelStatusResult,
    WriteSpecMetadataInput,
    WriteSpecMetadataResult,
)
from modelferry.modelstatus import (
    merge_transition_times,
    observed_generation,
    ome_caught_up,
    split_status,
    status_changed,
)
from modelferry.names import FINALIZER, OME_FINALIZERS, PARSED_FIELDS_ANNOTATION, OmeManager
from modelferry.placement import evaluate_placement

_CONFLICT_ATTEMPTS = 10  # optimistic-concurrency loop: re-read and re-apply on 409
# Beside OME's manager: how long a status write waits for OME to catch up with our node reports
# (OME reacts to a ConfigMap change in well under a second), in this many looks.
OME_SETTLE_SECONDS = 1.5
_OME_SETTLE_LOOKS = 5


def _parsed_fields_record(meta: dict[str, Any]) -> dict[str, Any]:
    raw = (meta.get("annotations") or {}).get(PARSED_FIELDS_ANNOTATION)
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        return {}  # unreadable (edited by hand): nothing is known to be ours, so nothing is overwritten
    return record if isinstance(record, dict) else {}


def ome_manager_present(setting: OmeManager, obj: Mapping[str, Any]) -> bool:
    """Whether OME's manager reconciles this model: as set, or (auto) whether its finalizer is on
    it. OME adds that finalizer on its first reconcile of every BaseModel and ClusterBaseModel, and
    nothing else does; it needs no permission beyond the read of the model we make anyway."""
    if setting is not OmeManager.AUTO:
        return setting is OmeManager.PRESENT
    finalizers = (obj.get("metadata") or {}).get("finalizers") or []
    return any(f in OME_FINALIZERS for f in finalizers)


class ResourceActivities:
    def __init__(
        self,
        *,
        kube: KubeClient,
        ome_manager: OmeManager = OmeManager.AUTO,
        ome_settle_seconds: float = OME_SETTLE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._kube = kube
        self._ome_manager = ome_manager
        self._ome_settle = ome_settle_seconds
        self._sleep = sleep

    def _get_own(self, ref: ModelRef) -> dict[str, Any]:
        """The resource, if it is still this model: another uid under the name is another model
        (raises KubeNotFoundError, as for a resource that is gone)."""
        obj = self._kube.get_model(ref)
        uid = (obj.get("metadata") or {}).get("uid")
        if ref.uid and uid and uid != ref.uid:
            raise KubeNotFoundError(f"{ref.display()} is now another resource (uid {uid}, not {ref.uid})")
        return obj

    def _update_finalizers(self, inp: EnsureFinalizerInput | ReleaseFinalizerInput, *, add: bool) -> bool:
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                obj = self._get_own(inp.ref)
            except KubeNotFoundError:
                return False
            meta = obj.get("metadata", {})
            finalizers = list(meta.get("finalizers") or [])
            if add == (FINALIZER in finalizers):
                return False
            if add and meta.get("deletionTimestamp"):
                return False  # the API refuses new finalizers on an object being deleted
            finalizers = [*finalizers, FINALIZER] if add else [f for f in finalizers if f != FINALIZER]
            patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}}
            try:
                self._kube.patch_model(inp.ref, patch)
                return True
            except KubeConflictError:
                metrics.count_write_conflict("model")
                continue
            except KubeNotFoundError:
                return False
        raise KubeConflictError(f"{inp.ref.display()}: finalizer update kept conflicting")

    @activity.defn(name="ensure_finalizer")
    @typed_failures
    def ensure_finalizer(self, inp: EnsureFinalizerInput) -> EnsureFinalizerResult:
        return EnsureFinalizerResult(added=self._update_finalizers(inp, add=True))

    @activity.defn(name="release_finalizer")
    @typed_failures
    def release_finalizer(self, inp: ReleaseFinalizerInput) -> ReleaseFinalizerResult:
        return ReleaseFinalizerResult(released=self._update_finalizers(inp, add=False))

    @activity.defn(name="plan_placement")
    @typed_failures
    def plan_placement(self, inp: PlanPlacementInput) -> PlanPlacementResult:
        storage = inp.spec.storage if inp.spec else None
        eligible: list[str] = []
        excluded: dict[str, str] = {}
        nodes = self._kube.list_nodes()
        for name, labels in nodes:
            decision = evaluate_placement(
                disabled=bool(inp.spec and inp.spec.disabled),
                node_selector=storage.node_selector if storage else None,
                node_affinity=storage.node_affinity if storage else None,
                node_name=name,
                node_labels=labels,
            )
            if decision.eligible:
                eligible.append(name)
            else:
                excluded[name] = decision.reason
        return PlanPlacementResult(
            eligible=sorted(eligible), excluded=excluded, existing_nodes=sorted(n for n, _ in nodes)
        )

    @activity.defn(name="write_spec_metadata")
    @typed_failures
    def write_spec_metadata(self, inp: WriteSpecMetadataInput) -> WriteSpecMetadataResult:
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                obj = self._get_own(inp.ref)
            except KubeNotFoundError:
                return WriteSpecMetadataResult(written=False)
            meta = obj["metadata"]
            filled = _parsed_fields_record(meta)
            fill, record = refresh_parsed_fields(obj.get("spec") or {}, inp.metadata, filled=filled)
            if not fill and record == filled:
                return WriteSpecMetadataResult(written=False)
            annotation = json.dumps(record, sort_keys=True, separators=(",", ":"))
            patch: dict[str, Any] = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": {PARSED_FIELDS_ANNOTATION: annotation},
                }
            }
            if fill:
                patch["spec"] = fill
            try:
                self._kube.patch_model(inp.ref, patch)
                return WriteSpecMetadataResult(written=True)
            except KubeConflictError:
                metrics.count_write_conflict("model")
                continue
        raise KubeConflictError(f"{inp.ref.display()}: spec metadata update kept conflicting")

    @activity.defn(name="write_model_status")
    @typed_failures
    def write_model_status(self, inp: WriteModelStatusInput) -> WriteModelStatusResult:
        generation = observed_generation(inp.status) if inp.generation is None else inp.generation
        written = False
        for look in range(_OME_SETTLE_LOOKS + 1):
            try:
                obj = self._get_own(inp.ref)
            except KubeNotFoundError:
                return WriteModelStatusResult(written=written)
            current = obj.get("status")
            if observed_generation(current) > generation:
                # The status already describes a newer generation: never go back (a write that was
                # delayed, retried or replayed must not undo what a later one said).
                activity.logger.info(
                    "%s: status for generation %d not written, it already describes generation %d",
                    inp.ref.display(),
                    generation,
                    observed_generation(current),
                )
                return WriteModelStatusResult(written=written)
            ome_present = ome_manager_present(self._ome_manager, obj)
            ours = split_status(inp.status, ome_present=ome_present, current=current)
            if status_changed(current, ours):
                now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                current = self._kube.patch_model_status(
                    inp.ref, merge_transition_times(current, ours, now=now)
                ).get("status")
                written = True
            if not ome_present or ome_caught_up(current, inp.status) or look == _OME_SETTLE_LOOKS:
                return WriteModelStatusResult(written=written)
            # OME has yet to write what our node reports say, and its write will drop our fields:
            # look again shortly, and write ours again if it did.
            self._sleep(self._ome_settle / _OME_SETTLE_LOOKS)
        return WriteModelStatusResult(written=written)
