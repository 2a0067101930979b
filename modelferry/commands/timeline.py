"""A model's timeline from its Temporal histories: history events in, readable rows out (no I/O).

`modelferry history` fetches every run of the model's workflow and of its node child workflows
and hands their events here. Payloads are decoded with the client's payload converter into plain
JSON and read by field name; a payload that does not decode is left out, never printed raw. Most
events are bookkeeping (workflow tasks, ConfigMap writes, starting a worker) and make no row; a
row is something an operator asks about: a revision applied or refused, an admin action and who
asked, a download with its bytes, verify, activation, the node's and the model's outcome, a
failure with its reason, a continue-as-new.

Node outcomes come from the node workflows' own histories (their result), not from the parent's
record of the child completing, so each appears once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import PayloadConverter

from modelferry.statusview import human_bytes


@dataclass(frozen=True)
class TimelineRow:
    when: datetime
    node: str  # "" for the model itself
    what: str
    bytes: int | None = None
    outcome: str = ""  # ok | failed | "" (neither: a request, a note)
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["when"] = self.when.isoformat().replace("+00:00", "Z")
        return out


_E = EventType


def _when(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime().replace(tzinfo=UTC)


def _decode(converter: PayloadConverter, payloads: Sequence[Any]) -> list[Any]:
    """Payloads as plain JSON values; [] when they do not decode."""
    try:
        return list(converter.from_payloads(list(payloads)))
    except Exception:
        return []


def _first(converter: PayloadConverter, payloads: Sequence[Any]) -> Any:
    values = _decode(converter, payloads)
    return values[0] if values else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def failure_text(failure: Failure) -> str:
    """`Type: message`, descending into the cause the SDK wraps around it (activity, child)."""
    while failure.HasField("cause") and not failure.HasField("application_failure_info"):
        failure = failure.cause
    kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
    return f"{kind}: {failure.message}" if kind else failure.message


def _outcome_row(when: datetime, node: str, outcome: dict[str, Any]) -> TimelineRow | None:
    """A NodeOutcome (a node workflow's result) as a row."""
    state = str(outcome.get("state") or "")
    reason, message = str(outcome.get("reason") or ""), str(outcome.get("message") or "")
    node = str(outcome.get("node") or node)
    if state == "Ready":
        return TimelineRow(when, node, "Ready", outcome="ok", why=message)
    if state == "Failed":
        return TimelineRow(when, node, f"Failed: {reason}: {message}".rstrip(": "), outcome="failed")
    if state == "Deleted":
        return TimelineRow(when, node, "removed", outcome="ok", why=message)
    return TimelineRow(when, node, state or "finished", why=message) if state else None


def _status_row(when: datetime, status: dict[str, Any]) -> TimelineRow | None:
    """A model status write as a row: the state, and for Failed the Ready condition's reason."""
    state = str(status.get("state") or "")
    ready = next(
        (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {}
    )
    gen = status.get("observedGeneration")
    gen_text = f"generation {gen}" if gen is not None else ""
    if state == "Failed":
        what = f"Failed: {ready.get('reason', '')}: {ready.get('message', '')}".rstrip(": ")
        return TimelineRow(when, "", what, outcome="failed", why=gen_text)
    if state == "Ready":
        return TimelineRow(when, "", "Ready", outcome="ok", why=", ".join(status.get("nodesReady") or []))
    if state:
        return TimelineRow(when, "", state, why=str(ready.get("message") or gen_text))
    return None


def _signal_row(when: datetime, name: str, arg: Any) -> TimelineRow | None:
    data = _dict(arg)
    if name == "apply_revision":
        return TimelineRow(when, "", f"revision applied gen {data.get('generation', '?')}")
    if name == "mark_invalid":
        field, rule = data.get("field") or "", data.get("rule") or ""
        return TimelineRow(
            when,
            "",
            "invalid spec",
            outcome="failed",
            why=f"gen {data.get('generation', '?')}: " + (f"{field}: {rule}" if field else str(rule)),
        )
    if name == "request_delete":
        return TimelineRow(when, "", "delete requested")
    if name == "placement_changed":
        return TimelineRow(when, "", "placement changed", why=str(arg or ""))
    if name == "apply_options":
        return TimelineRow(when, "", "settings adopted")
    if name == "report_damage":
        files = ", ".join(data.get("files") or [])
        detail = str(data.get("detail") or "")
        why = "; ".join(p for p in (files, detail, f"version {data.get('version_id', '')}") if p)
        return TimelineRow(when, str(data.get("node") or ""), "damage reported", outcome="failed", why=why)
    return TimelineRow(when, "", f"signal {name}")


def _admin_row(when: datetime, name: str, arg: Any) -> TimelineRow:
    request = _dict(arg)
    who = str(request.get("requested_by") or "someone")
    reason = str(request.get("reason") or "")
    what = f"admin {name} by {who}" + (f": {reason}" if reason else "")
    why = []
    if request.get("nodes"):
        why.append("nodes " + ", ".join(request["nodes"]))
    if request.get("to_version"):
        why.append(f"to version {request['to_version']}")
    return TimelineRow(when, "", what, why="; ".join(why))


def _activity_row(when: datetime, node: str, activity: str, inp: Any, result: Any) -> TimelineRow | None:
    """A completed activity worth a row (by its name, reading its input and result)."""
    res = _dict(result)
    if activity == "download_model":
        total = res.get("total_bytes")
        moved = res.get("bytes_transferred")
        what = "download completed" + (f" {human_bytes(total)}" if isinstance(total, int) else "")
        why = f"{res.get('files', '?')} files, version {res.get('version_id', '?')}"
        if isinstance(moved, int) and isinstance(total, int) and moved != total:
            why += f", {human_bytes(moved)} fetched (the rest was on disk)"
        return TimelineRow(
            when, node, what, bytes=moved if isinstance(moved, int) else None, outcome="ok", why=why
        )
    if activity == "verify_model":
        total = res.get("total_bytes")
        return TimelineRow(
            when,
            node,
            "verify ok",
            bytes=total if isinstance(total, int) else None,
            outcome="ok",
            why=f"{res.get('files', '?')} files",
        )
    if activity == "activate_model_version":
        version = result if isinstance(result, str) else res.get("version_id", "?")
        pruned = res.get("pruned") or []
        return TimelineRow(
            when,
            node,
            f"activated version {version}",
            outcome="ok",
            why=("pruned " + ", ".join(pruned)) if pruned else "",
        )
    if activity == "parse_model":
        if res.get("skipped"):
            return TimelineRow(when, node, "metadata parsing skipped")
        warnings = "; ".join(res.get("warnings") or [])
        return TimelineRow(when, node, "metadata parsed", outcome="ok", why=warnings)
    if activity == "remove_model_files":
        return TimelineRow(when, node, "files removed", outcome="ok", why=str(res.get("path") or ""))
    if activity == "ensure_node_worker" and res.get("created"):
        return TimelineRow(when, node, f"worker job {res.get('job_name') or ''} created".replace("  ", " "))
    if activity == "write_model_status":
        return _status_row(when, _dict(_dict(inp).get("status")))
    return None


def _node_start_row(when: datetime, node: str, inp: dict[str, Any]) -> TimelineRow:
    action = str(inp.get("action") or "deliver")
    gen = _dict(inp.get("revision")).get("generation")
    what = f"{action} started" + (f" (gen {gen})" if gen is not None and action == "deliver" else "")
    if action == "rollback" and inp.get("version_id"):
        what = f"rollback to version {inp['version_id']} started"
    why = str(inp.get("cause") or "")
    if inp.get("fresh_tag"):
        why = "; ".join(p for p in (why, "fresh copy") if p)
    return TimelineRow(when, node, what, why=why)


def history_rows(
    events: Iterable[HistoryEvent], *, converter: PayloadConverter, node: str = ""
) -> list[TimelineRow]:
    """The rows of one workflow run: a model workflow's (`node` "") or a node workflow's."""
    rows: list[TimelineRow] = []
    scheduled: dict[int, tuple[str, Any]] = {}  # activity scheduled event id -> (name, decoded input)
    last_status: tuple[str, str] | None = None
    for event in events:
        when = _when(event)
        kind = event.event_type
        row: TimelineRow | None = None
        if kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            if node:
                row = _node_start_row(when, node, _dict(_first(converter, attrs.input.payloads)))
            elif not attrs.continued_execution_run_id:
                inp = _dict(_first(converter, attrs.input.payloads))
                gen = _dict(inp.get("revision")).get("generation")
                row = TimelineRow(when, "", "workflow started" + (f" (gen {gen})" if gen else ""))
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs_s = event.workflow_execution_signaled_event_attributes
            row = _signal_row(when, attrs_s.signal_name, _first(converter, attrs_s.input.payloads))
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request.input
            row = _admin_row(when, request.name, _first(converter, request.args.payloads))
        elif kind == _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs_a = event.activity_task_scheduled_event_attributes
            name = attrs_a.activity_type.name
            inp = _first(converter, attrs_a.input.payloads)
            scheduled[event.event_id] = (name, inp)
            if name == "download_model":
                fresh = bool(_dict(inp).get("fresh_tag"))
                row = TimelineRow(when, node, "download started", why="fresh copy" if fresh else "")
        elif kind == _E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs_c = event.activity_task_completed_event_attributes
            name, inp = scheduled.get(attrs_c.scheduled_event_id, ("", None))
            row = _activity_row(when, node, name, inp, _first(converter, attrs_c.result.payloads))
            if name == "write_model_status" and row is not None:
                key = (row.what, row.why)
                if key == last_status:  # the same state written again (a retry, a new generation)
                    row = None
                else:
                    last_status = key
        elif kind in (_E.EVENT_TYPE_ACTIVITY_TASK_FAILED, _E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
            if kind == _E.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                attrs_f = event.activity_task_failed_event_attributes
                failure, sched = attrs_f.failure, attrs_f.scheduled_event_id
            else:
                attrs_t = event.activity_task_timed_out_event_attributes
                failure, sched = attrs_t.failure, attrs_t.scheduled_event_id
            name, _ = scheduled.get(sched, ("activity", None))
            what = name.replace("_model", "").replace("_", " ")
            row = TimelineRow(when, node, f"{what} failed", outcome="failed", why=failure_text(failure))
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            row = TimelineRow(when, node, "continued as new")
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            result = _first(converter, event.workflow_execution_completed_event_attributes.result.payloads)
            if node:
                row = _outcome_row(when, node, _dict(result))
            else:
                row = TimelineRow(
                    when, "", "workflow completed", why=str(result) if isinstance(result, str) else ""
                )
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            why = failure_text(event.workflow_execution_failed_event_attributes.failure)
            row = TimelineRow(when, node, "workflow failed", outcome="failed", why=why)
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            row = TimelineRow(when, node, "workflow terminated", outcome="failed", why=reason)
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            row = TimelineRow(when, node, "workflow timed out", outcome="failed")
        elif kind == _E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            row = TimelineRow(when, node, "workflow canceled")
        if row is not None:
            rows.append(row)
    return rows


def child_runs(events: Iterable[HistoryEvent]) -> list[tuple[str, str]]:
    """(workflow id, run id) of every child a model workflow run started, in order."""
    out: list[tuple[str, str]] = []
    for event in events:
        if event.event_type == _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            execution = event.child_workflow_execution_started_event_attributes.workflow_execution
            out.append((execution.workflow_id, execution.run_id))
    return out


def node_of(workflow_id: str) -> str:
    """The node a node workflow ID (`names.node_workflow_id`) is for."""
    return workflow_id.rpartition("/node/")[2]


def merge(rows: Iterable[TimelineRow], *, node: str | None = None) -> list[TimelineRow]:
    """Every row in time order (stable for equal times); with `node`, only that node's."""
    kept = [r for r in rows if node is None or r.node == node]
    return sorted(kept, key=lambda r: r.when)


def render(rows: Sequence[TimelineRow]) -> str:
    if not rows:
        return "no history"
    table = [("WHEN", "NODE", "WHAT", "BYTES", "OUTCOME", "WHY")] + [
        (
            r.when.strftime("%Y-%m-%d %H:%M:%S"),
            r.node or "-",
            r.what,
            human_bytes(r.bytes) if r.bytes is not None else "",
            r.outcome,
            r.why,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = []
    for row in table:
        lines.append(
            "  ".join([*(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)), row[5]]).rstrip()
        )
    return "\n".join(lines)
