"""Control-queue activity that shows a node's download progress in the node's ConfigMap entry.

The node workflow starts `report_node_progress` beside a node's download and cancels it once the
download and verification are done. Every interval it describes the node workflow through the
Temporal client, finds the pending `download_model` or `verify_model` activity, decodes its last
heartbeat (`modelferry.progress`) and, when `modelferry.progress.should_write` says the change is
worth it, writes the entry with a `progress` object through the one writer of entries
(`LabelActivities.write_node_progress`). The entry keeps the status and config the workflow gave.

It runs on the event loop (an async activity): it mostly sleeps, and heartbeats every tick so the
workflow's cancellation reaches it. Cancellation ends it quietly: it *returns* its result (the
writes made), so a cancelled reporter is a completed activity, never a failure. Only a worker
shutting down re-raises, so that the attempt is retried on another control worker.

Progress is best effort: an unreadable workflow or a refused write is logged and tried again at
the next tick; it never fails the model's delivery.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.label import LabelActivities
from modelferry.errors import ModelferryError
from modelferry.messages import NodeProgress, ReportNodeProgressInput, ReportNodeProgressResult
from modelferry.nodestatus import NodeModelStatus
from modelferry.progress import PHASE_OF_ACTIVITY, progress_from_heartbeat, should_write

# Longest sleep between two heartbeats and looks: well under the 60 s heartbeat timeout the node
# workflow gives the reporter, so a missed beat or two is no timeout.
HEARTBEAT_SECONDS = 5.0
_MIN_TICK = 0.05  # an interval of 0 must not spin


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProgressActivities:
    def __init__(self, *, client: Client, labels: LabelActivities) -> None:
        self._client = client
        self._labels = labels

    async def _pending_heartbeat(self, workflow_id: str) -> tuple[str, Any] | None:
        """(activity type, its last heartbeat's first detail or None) of the node workflow's
        pending download or verification, else None."""
        description = await self._client.get_workflow_handle(workflow_id).describe()
        pending = {
            p.activity_type.name: p
            for p in description.raw_description.pending_activities
            # Scheduled only (waiting for the node's worker, or for its next attempt): no progress.
            if p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        }
        for name in PHASE_OF_ACTIVITY:
            info = pending.get(name)
            if info is None:
                continue
            details: list[Any] = []
            if info.HasField("heartbeat_details") and info.heartbeat_details.payloads:
                try:
                    details = await self._client.data_converter.decode(info.heartbeat_details.payloads)
                except Exception as error:  # a payload we cannot read shows as no detail
                    activity.logger.debug("heartbeat of %s not decoded: %s", name, error)
            return name, details[0] if details else None
        return None

    async def _write(self, inp: ReportNodeProgressInput, progress: NodeProgress) -> bool:
        return await asyncio.to_thread(
            self._labels.write_node_progress,
            ref=inp.ref,
            node=inp.node,
            status=NodeModelStatus(inp.status),
            config=inp.config,
            progress=progress,
        )

    @activity.defn(name="report_node_progress")
    async def report_node_progress(self, inp: ReportNodeProgressInput) -> ReportNodeProgressResult:
        tick = max(min(inp.interval_seconds, HEARTBEAT_SECONDS), _MIN_TICK)
        writes = 0
        seen: NodeProgress | None = None  # the last progress read (its counts carry into verifying)
        written: NodeProgress | None = None
        written_at = 0.0
        try:
            while True:
                activity.heartbeat()
                started = time.monotonic()
                try:
                    found = await self._pending_heartbeat(inp.node_workflow_id)
                except RPCError as error:
                    if error.status == RPCStatusCode.NOT_FOUND:
                        activity.logger.info("workflow %s is gone; no progress to show", inp.node_workflow_id)
                        return ReportNodeProgressResult(writes=writes)
                    activity.logger.warning("describe %s: %s", inp.node_workflow_id, error)
                    found = None
                if found is not None:
                    current = progress_from_heartbeat(
                        activity_type=found[0], details=found[1], now=_now(), previous=seen
                    )
                    if current is not None:
                        seen = current
                        if should_write(
                            current=current,
                            written=written,
                            seconds_since_written=None if written is None else started - written_at,
                            interval_seconds=inp.interval_seconds,
                            min_percent_step=inp.min_percent_step,
                        ):
                            written, written_at = current, started
                            try:
                                writes += int(await self._write(inp, current))
                            except ModelferryError as error:
                                activity.logger.warning(
                                    "progress of %s not written: %s", inp.node, error.message
                                )
                await asyncio.sleep(tick)
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is not None and details.worker_shutdown:
                raise  # retried on another control worker
            return ReportNodeProgressResult(writes=writes)
