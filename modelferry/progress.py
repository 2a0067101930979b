"""A node's download progress, as read from the download activity's heartbeat, and when to write it.

The download activity heartbeats a checkpoint dict (`activities/download.py`, `on_progress`:
bytes_done, bytes_total, files_done_count, files_total, bytes_per_second, eta_seconds, plus
revision and version_id). The progress reporter (`activities/progress.py`) reads that heartbeat
from the node workflow's pending activities and turns it into a `NodeProgress` here; verify_model
heartbeats without details, so its phase keeps the download's last counts.

Writing every heartbeat would rewrite a node's ConfigMap (every model's entry on that node) every
few seconds per model; `should_write` keeps it to a change worth showing: a new phase, or a
percentage step, and never more than once per interval.

Pure functions over plain data, with table tests (tests/unit/test_node_progress_from_heartbeats.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelferry.messages import NodeProgress

DOWNLOADING = "Downloading"
VERIFYING = "Verifying"
# The node activity whose heartbeat tells each phase, by activity type name (in the order looked for).
PHASE_OF_ACTIVITY: dict[str, str] = {"download_model": DOWNLOADING, "verify_model": VERIFYING}


def _count(details: Mapping[str, Any], key: str) -> int | None:
    value = details.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(int(value), 0)


def _rate(details: Mapping[str, Any], key: str) -> float | None:
    value = details.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(float(value), 0.0)


def progress_from_heartbeat(
    *, activity_type: str, details: Any, now: str, previous: NodeProgress | None = None
) -> NodeProgress | None:
    """The progress a pending node activity's heartbeat shows (None for an activity that tells
    none). A count the heartbeat lacks keeps `previous`'s (the download's last, while verifying);
    speed and ETA are only what this heartbeat says. `now` is RFC 3339, UTC."""
    phase = PHASE_OF_ACTIVITY.get(activity_type)
    if phase is None:
        return None
    d: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    last = previous or NodeProgress()

    def count(key: str, fallback: int) -> int:
        value = _count(d, key)
        return fallback if value is None else value

    return NodeProgress(
        phase=phase,
        total_bytes=count("bytes_total", last.total_bytes),
        completed_bytes=count("bytes_done", last.completed_bytes),
        total_files=count("files_total", last.total_files),
        completed_files=count("files_done_count", last.completed_files),
        speed_bytes_per_sec=_rate(d, "bytes_per_second") or 0.0,
        eta_seconds=_rate(d, "eta_seconds"),
        last_updated=now,
    )


def percent(progress: NodeProgress) -> float:
    """0-100 by bytes (as OME's `DownloadProgress.Percentage`); 0 while the total is unknown."""
    if progress.total_bytes <= 0:
        return 0.0
    return min(progress.completed_bytes / progress.total_bytes * 100.0, 100.0)


def _finished(progress: NodeProgress) -> bool:
    return progress.total_bytes > 0 and progress.completed_bytes >= progress.total_bytes


def should_write(
    *,
    current: NodeProgress,
    written: NodeProgress | None,
    seconds_since_written: float | None,
    interval_seconds: float,
    min_percent_step: float,
) -> bool:
    """Whether to write `current`, given what was last written (`written`, that long ago; None:
    nothing yet). Never twice within `interval_seconds`; past it, only a new phase, a move of at
    least `min_percent_step` percent, or reaching 100% is worth a write."""
    if written is None or seconds_since_written is None:
        return True
    if seconds_since_written < interval_seconds:
        return False
    if current.phase != written.phase:
        return True
    if _finished(current) and not _finished(written):
        return True
    return abs(percent(current) - percent(written)) >= min_percent_step
