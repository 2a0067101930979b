"""The resource's status, derived from where each node stands (pure).

State rules (OME's vocabulary): `Creating` while any eligible node is still in progress; `Ready`
once at least one node is Ready and none is in progress; `Failed` when no node could get the model
(all failed, or no node is eligible). Per-node detail goes to `nodesReady` / `nodesFailed` and
to conditions, so `kubectl wait --for=condition=Ready` works as operators script it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelferry.messages import NodeOutcome
from modelferry.nodestatus import NodeModelStatus
from modelferry.spec.status import ModelState

# The only states written here (ModelState is the one list of spellings).
STATE_CREATING = ModelState.CREATING.value
STATE_READY = ModelState.READY.value
STATE_FAILED = ModelState.FAILED.value

INVALID_SPEC_REASON = "InvalidSpec"  # Ready=False because the newest generation's spec is refused

_MAX_MESSAGE = 1024  # conditions are for humans; keep the object small


def _condition(ctype: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "observedGeneration": generation,
    }


def _failure_summary(failed: Iterable[NodeOutcome]) -> str:
    parts = [f"{o.node}: {o.reason}: {o.message}".rstrip(": ") for o in failed]
    return "; ".join(parts)


def desired_status(
    *,
    generation: int,
    eligible: Iterable[str],
    outcomes: Mapping[str, NodeOutcome],
    no_nodes_reason: str = "NoEligibleNodes",
    no_nodes_message: str = "no node matches the model's nodeSelector/nodeAffinity",
    deleting: bool = False,
    updating: Iterable[str] = (),
    update_failures: Mapping[str, NodeOutcome] | None = None,
) -> dict[str, Any]:
    """The status subresource body (without lastTransitionTime; see `merge_transition_times`).

    `updating`: Ready nodes fetching a newer version beside the one they serve; they stay Ready
    (and schedulable) and show as `Progressing`. `update_failures`: Ready nodes whose newer version
    failed; they keep serving the previous one, and `Degraded` names the failure.
    """
    eligible = sorted(set(eligible))
    update_failures = update_failures or {}
    ready = sorted(n for n in eligible if (o := outcomes.get(n)) and o.state == NodeModelStatus.READY)
    failed_outcomes = [o for n in eligible if (o := outcomes.get(n)) and o.state == NodeModelStatus.FAILED]
    failed = sorted(o.node for o in failed_outcomes)
    in_progress = sorted(n for n in eligible if n not in ready and n not in failed)

    if deleting:
        state = ""  # dropped below
        ready_cond = _condition(
            "Ready", False, "Deleting", "model is being removed from its nodes", generation
        )
    elif in_progress:
        state = STATE_CREATING
        ready_cond = _condition(
            "Ready",
            False,
            "InProgress",
            f"{len(in_progress)} of {len(eligible)} node(s) in progress",
            generation,
        )
    elif not eligible:
        state, ready_cond = (
            STATE_FAILED,
            _condition("Ready", False, no_nodes_reason, no_nodes_message, generation),
        )
    elif ready:
        state = STATE_READY
        reason = "AllNodesReady" if not failed else "SomeNodesReady"
        ready_cond = _condition(
            "Ready", True, reason, f"ready on {len(ready)} of {len(eligible)} node(s)", generation
        )
    else:
        state = STATE_FAILED
        ready_cond = _condition(
            "Ready", False, "AllNodesFailed", _failure_summary(failed_outcomes), generation
        )

    updating = sorted(n for n in set(updating) if n in ready)
    kept_serving = [update_failures[n] for n in ready if n in update_failures]
    progressing = sorted({*in_progress, *updating})
    if in_progress:
        progress_reason = "Downloading"
    elif updating:
        progress_reason = "Updating"  # a new version is fetched beside the one that serves
    else:
        progress_reason = "Idle"
    if failed:
        degraded_reason = "NodesFailed"
    elif kept_serving:
        degraded_reason = "UpdateFailed"  # the previous version keeps serving: a recorded rollback
    else:
        degraded_reason = "NoFailures"
    degraded_message = "; ".join(
        part
        for part in (
            _failure_summary(failed_outcomes),
            _failure_summary(kept_serving) + " (previous version still serving)" if kept_serving else "",
        )
        if part
    )
    conditions = [
        ready_cond,
        _condition(
            "Progressing",
            bool(progressing) and not deleting,
            progress_reason,
            ", ".join(progressing),
            generation,
        ),
        _condition("Degraded", bool(failed or kept_serving), degraded_reason, degraded_message, generation),
    ]
    status: dict[str, Any] = {
        "state": state,
        "nodesReady": ready,
        "nodesFailed": failed,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    if deleting:
        # OME's CRD knows no Deleting state: leave `state` as it was and say it in the conditions.
        del status["state"]
    return status


def invalid_status(base: Mapping[str, Any] | None, *, generation: int, message: str) -> dict[str, Any]:
    """The status that reports generation `generation` as refused (InvalidSpec): state Failed,
    `Ready=False` with the field and rule as message, and observedGeneration `generation`.

    Everything else in `base` (the status of what is on the nodes: the previous version keeps
    serving) is kept as it is, other conditions included; the Ready condition is replaced where it
    stood, or appended.
    """
    ready = _condition("Ready", False, INVALID_SPEC_REASON, message, generation)
    conditions = [dict(c) for c in ((base or {}).get("conditions") or [])]
    at = next((i for i, c in enumerate(conditions) if c.get("type") == "Ready"), None)
    if at is None:
        conditions.append(ready)
    else:
        conditions[at] = ready
    return {**(base or {}), "state": STATE_FAILED, "observedGeneration": generation, "conditions": conditions}


def observed_generation(status: Mapping[str, Any] | None) -> int:
    """The generation a status describes (0 when it says none, or garbage)."""
    try:
        return int((status or {}).get("observedGeneration") or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _comparable(status: Mapping[str, Any] | None) -> dict[str, Any]:
    if not status:
        return {}
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in (status.get("conditions") or [])
    ]
    return out


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when writing `desired` would change anything but timestamps (write only on change).
    Fields we do not own (e.g. `lifecycle`) are compared only if we set them."""
    cur = _comparable(current)
    want = _comparable(desired)
    return any(cur.get(k) != v for k, v in want.items())


def merge_transition_times(
    current: Mapping[str, Any] | None, desired: Mapping[str, Any], *, now: str
) -> dict[str, Any]:
    """Keep a condition's lastTransitionTime unless its status flipped (Kubernetes convention)."""
    previous = {c.get("type"): c for c in ((current or {}).get("conditions") or [])}
    conditions = []
    for cond in desired.get("conditions", []):
        old = previous.get(cond["type"])
        stamp = old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        conditions.append({**cond, "lastTransitionTime": stamp or now})
    return {**desired, "conditions": conditions}


# --- beside OME's manager --------------------------------------------------------------------
#
# OME's BaseModel controller (pkg/controller/v1beta1/basemodel/controller.go) recomputes three
# status fields from the node ConfigMaps on every reconcile and writes them whenever they differ
# from what the resource shows: `nodesReady` and `nodesFailed` (sorted node names whose OME-format
# entry is Ready / Failed) and `state` (Ready if any node is Ready, else Failed if any failed, else
# In_Transit). It writes with a status Update of its Go struct, which knows only `lifecycle`,
# `state`, `nodesReady` and `nodesFailed`: every field it does not know (our `conditions` and
# `observedGeneration`) is dropped by that write. If both of us wrote the three fields, each would
# rewrite the other's values (Creating vs In_Transit; a node updating beside its serving version is
# Ready to us and out of nodesReady to OME) on every change.
#
# So with OME present each field has one writer: OME owns `state`, `nodesReady` and `nodesFailed`
# (computed from the entries we write, so they still follow our nodes), modelferry owns
# `conditions` and `observedGeneration`. `state` is the one exception, written once when the
# resource has none yet, because the CRDs require it; then with the value OME itself computes.

OME_OWNED_FIELDS = ("state", "nodesReady", "nodesFailed")
OME_STATE_IN_TRANSIT = ModelState.IN_TRANSIT.value


def ome_view(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The three fields as OME's controller computes them from the same node reports: the nodes
    Ready and Failed, sorted, and `calculateLifecycleState`'s state. Empty lists are left out as
    Go's omitempty leaves them out."""
    ready = sorted((status or {}).get("nodesReady") or [])
    failed = sorted((status or {}).get("nodesFailed") or [])
    state = STATE_READY if ready else STATE_FAILED if failed else OME_STATE_IN_TRANSIT
    out: dict[str, Any] = {"state": state}
    if ready:
        out["nodesReady"] = ready
    if failed:
        out["nodesFailed"] = failed
    return out


def ome_fields(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The three OME-owned fields as a status shows them, empties left out (to compare)."""
    return {k: v for k in OME_OWNED_FIELDS if (v := (status or {}).get(k))}


def split_status(
    desired: Mapping[str, Any], *, ome_present: bool, current: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What modelferry writes of `desired`: all of it without OME's manager; beside it only the
    fields OME does not own (plus `state`, as OME would compute it, when the resource has none)."""
    if not ome_present:
        return dict(desired)
    out = {k: v for k, v in desired.items() if k not in OME_OWNED_FIELDS}
    if not (current or {}).get("state"):
        out["state"] = ome_view(desired)["state"]
    return out


def ome_caught_up(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when OME's fields already say what OME will compute from our node reports, so OME has
    nothing left to write (and nothing of ours left to drop)."""
    return ome_fields(current) == ome_view(desired)
