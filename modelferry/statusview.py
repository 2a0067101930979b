"""What `modelferry status` shows, from plain data (pure: the command reads, this renders).

Without a model: one line per model resource (kind/namespace/name, state, ready and failed node
counts) from the resources' status. With one: a line per node, joining three sources that each own
a fact: the model workflow's `nodes` query (state, serving version, last error), the resource's
status (`nodesReady`/`nodesFailed`, for a node the query does not know, or when the workflow is not
reachable), and the node ConfigMap entry's `progress` object (bytes done, speed, ETA) while a
download runs. Any of them may be missing; the view shows what there is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelferry.messages import ModelRef, NodeOutcome, NodeProgress
from modelferry.modelarg import short_name
from modelferry.names import ModelKind
from modelferry.nodestatus import entry_key, ome_entry_key, report_node

BAR_WIDTH = 20
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """Decimal units, one decimal past bytes: `512 B`, `1.2 GB`."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h10m`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# --- all models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelLine:
    model: str  # short form, as the CLI takes it (cbm/NAME, bm/NS/NAME, ftw/NAME)
    state: str
    ready: int
    failed: int


def model_line(kind: ModelKind, obj: Mapping[str, Any]) -> ModelLine:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ref = ModelRef(
        kind=kind,
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or "") or None if kind.namespaced else None,
    )
    return ModelLine(
        model=short_name(ref),
        state=str(status.get("state") or "-"),
        ready=len(status.get("nodesReady") or []),
        failed=len(status.get("nodesFailed") or []),
    )


def render_models(lines: Sequence[ModelLine]) -> str:
    if not lines:
        return "no model resources"
    rows = [("MODEL", "STATE", "READY", "FAILED")] + [
        (ln.model, ln.state, str(ln.ready), str(ln.failed)) for ln in sorted(lines, key=lambda x: x.model)
    ]
    return _table(rows)


# --- one model, per node -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLine:
    node: str
    state: str
    version: str
    progress: str
    error: str


def progress_from_configmaps(
    ref: ModelRef, configmaps: Iterable[Mapping[str, Any]]
) -> dict[str, NodeProgress]:
    """node name (the ConfigMap's name, or the node an overflow ConfigMap names) → the model
    entry's `progress`, in whichever report format carries one; entries without it, or
    unreadable, are left out."""
    keys = [k for k in (entry_key(ref), ome_entry_key(ref)) if k]
    out: dict[str, NodeProgress] = {}
    for cm in configmaps:
        node = report_node(cm)
        data = cm.get("data") or {}
        for key in keys:
            try:
                entry = json.loads(data[key])
                raw = entry.get("progress") if isinstance(entry, dict) else None
                if isinstance(raw, dict):
                    out[node] = NodeProgress.model_validate(raw)
                    break
            except (KeyError, ValueError, TypeError, ValidationError):
                continue
    return out


def progress_text(progress: NodeProgress | None) -> str:
    """`[########............]  40% 1.2 GB/3.0 GB 50.0 MB/s ETA 36s`, or `` without a download."""
    if progress is None:
        return ""
    total, done = progress.total_bytes, progress.completed_bytes
    parts: list[str] = []
    if progress.phase:
        parts.append(progress.phase)
    if total > 0:
        fraction = min(1.0, max(0.0, done / total))
        filled = int(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%")
        parts.append(f"{human_bytes(done)}/{human_bytes(total)}")
    elif done:
        parts.append(human_bytes(done))
    if progress.speed_bytes_per_sec > 0:
        parts.append(f"{human_bytes(progress.speed_bytes_per_sec)}/s")
    if progress.eta_seconds is not None:
        parts.append(f"ETA {human_duration(progress.eta_seconds)}")
    return " ".join(parts)


def node_lines(
    *,
    status: Mapping[str, Any] | None,
    outcomes: Mapping[str, NodeOutcome] | None,
    progress: Mapping[str, NodeProgress] | None = None,
) -> list[NodeLine]:
    status = status or {}
    outcomes = outcomes or {}
    progress = progress or {}
    from_status: dict[str, str] = {}
    for node in status.get("nodesReady") or []:
        from_status[str(node)] = "Ready"
    for node in status.get("nodesFailed") or []:
        from_status[str(node)] = "Failed"
    lines = []
    for node in sorted(set(outcomes) | set(from_status) | set(progress)):
        outcome = outcomes.get(node)
        state = outcome.state if outcome is not None else from_status.get(node, "Updating")
        version = outcome.version_id if outcome is not None else ""
        error = ""
        if outcome is not None and outcome.state == "Failed":
            error = f"{outcome.reason}: {outcome.message}".strip(": ")
        lines.append(
            NodeLine(
                node=node,
                state=state,
                version=version or "-",
                progress=progress_text(progress.get(node)),
                error=error,
            )
        )
    return lines


def render_model(
    *,
    model: str,
    state: str,
    lines: Sequence[NodeLine],
    notes: Sequence[str] = (),
) -> str:
    head = f"{model}  {state or '-'}"
    if not lines:
        return "\n".join([head, "  no nodes", *notes])
    rows = [("NODE", "STATE", "VERSION", "PROGRESS", "LAST ERROR")] + [
        (ln.node, ln.state, ln.version, ln.progress, ln.error) for ln in lines
    ]
    return "\n".join([head, _table(rows), *notes])


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
