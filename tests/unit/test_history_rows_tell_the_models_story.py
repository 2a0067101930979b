"""`modelferry history`'s event → row mapping, fed with recorded histories (tests/data/histories)
and with single events built here for the paths no recording holds yet (Updates, damage reports,
failures, continue-as-new). Payloads are decoded, never shown raw."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from modelferry.commands.timeline import (
    TimelineRow,
    child_runs,
    history_rows,
    merge,
    node_of,
    render,
)
from modelferry.messages import AdminRequest, DamageReport

HISTORIES = Path(__file__).resolve().parents[1] / "data" / "histories"
CONVERTER = pydantic_data_converter.payload_converter


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json("recorded", json.loads((HISTORIES / f"{name}.json").read_text()))


def whats(rows: list[TimelineRow]) -> list[tuple[str, str]]:
    return [(r.node, r.what) for r in rows]


@pytest.mark.parametrize(
    ("name", "node", "expected"),
    [
        (
            "model_workflow_deliver_then_delete",
            "",
            [
                ("", "workflow started (gen 1)"),
                ("", "revision applied gen 1"),
                ("", "Creating"),
                ("", "revision applied gen 2"),
                ("", "Ready"),
                ("", "delete requested"),
                ("", "Deleting"),
                ("", "workflow completed"),
            ],
        ),
        (
            "node_workflow_deliver",
            "node-1",
            [
                ("node-1", "deliver started (gen 1)"),
                ("node-1", "download started"),
                ("node-1", "download completed 628.5 kB"),
                ("node-1", "verify ok"),
                (
                    "node-1",
                    "activated version 3096d7a3ad099cf2ce0676b65e8f2ceb67f8146726062cd068680c872a239cbe",
                ),
                ("node-1", "metadata parsed"),
                ("node-1", "Ready"),
            ],
        ),
        (
            "node_workflow_remove",
            "node-1",
            [("node-1", "remove started"), ("node-1", "files removed"), ("node-1", "removed")],
        ),
        (
            "model_workflow_started_for_a_refused_spec",
            "",
            [
                ("", "workflow started"),
                ("", "invalid spec"),
                ("", "Failed: InvalidSpec: spec.storage.path: must be absolute"),
            ],
        ),
    ],
)
def test_recorded_histories_read_as_a_story(name: str, node: str, expected: list[tuple[str, str]]) -> None:
    rows = history_rows(recorded(name).events, converter=CONVERTER, node=node)
    assert whats(rows)[: len(expected)] == expected


def test_download_rows_carry_bytes_and_outcome() -> None:
    rows = history_rows(recorded("node_workflow_deliver").events, converter=CONVERTER, node="node-1")
    download = next(r for r in rows if r.what.startswith("download completed"))
    assert (download.bytes, download.outcome) == (628480, "ok")
    assert download.why.startswith("3 files, version 3096d7a3")
    verify = next(r for r in rows if r.what == "verify ok")
    assert verify.bytes == 628480


def test_a_refused_generation_says_field_and_rule() -> None:
    rows = history_rows(recorded("model_workflow_ready_then_refused").events, converter=CONVERTER)
    invalid = next(r for r in rows if r.what == "invalid spec")
    assert (invalid.outcome, invalid.why) == ("failed", "gen 2: spec.storage.path: must be absolute")


def test_no_row_shows_a_raw_payload() -> None:
    for path in sorted(HISTORIES.glob("*.json")):
        node = "node-1" if path.name.startswith("node_") else ""
        rows = history_rows(recorded(path.stem).events, converter=CONVERTER, node=node)
        text = json.dumps([r.to_json() for r in rows]) + render(rows)
        assert "eyJ" not in text and "payloads" not in text and "anNvbi" not in text, path.name


def test_children_are_found_by_run() -> None:
    runs = child_runs(recorded("model_workflow_deliver_then_delete").events)
    assert [wid for wid, _ in runs] == ["ome/clusterbasemodel/tiny-8d5d09/node/node-1"] * 2
    assert len({run for _, run in runs}) == 2
    assert node_of(runs[0][0]) == "node-1"


# --- single events -------------------------------------------------------------------------------

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def event(event_id: int, kind: int, **attributes: Any) -> HistoryEvent:
    stamp = Timestamp()
    stamp.FromDatetime(T0.replace(second=event_id % 60))
    built = HistoryEvent(event_id=event_id, event_type=kind, event_time=stamp)  # type: ignore[arg-type]
    for name, value in attributes.items():
        getattr(built, name).CopyFrom(value)
    return built


def payloads(*values: Any) -> Any:
    from temporalio.api.common.v1 import Payloads

    return Payloads(payloads=CONVERTER.to_payloads(list(values)))


def update_accepted(name: str, request: AdminRequest) -> HistoryEvent:
    from temporalio.api.history.v1 import WorkflowExecutionUpdateAcceptedEventAttributes
    from temporalio.api.update.v1 import Input, Request

    attrs = WorkflowExecutionUpdateAcceptedEventAttributes(
        accepted_request=Request(input=Input(name=name, args=payloads(request)))
    )
    return event(
        5,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        workflow_execution_update_accepted_event_attributes=attrs,
    )


def signaled(name: str, *args: Any) -> HistoryEvent:
    from temporalio.api.history.v1 import WorkflowExecutionSignaledEventAttributes

    attrs = WorkflowExecutionSignaledEventAttributes(signal_name=name, input=payloads(*args))
    return event(
        6,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        workflow_execution_signaled_event_attributes=attrs,
    )


def activity_failed(name: str, failure: Failure) -> list[HistoryEvent]:
    from temporalio.api.common.v1 import ActivityType
    from temporalio.api.history.v1 import (
        ActivityTaskFailedEventAttributes,
        ActivityTaskScheduledEventAttributes,
    )

    return [
        event(
            10,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                activity_type=ActivityType(name=name), input=payloads({"fresh_tag": "x1"})
            ),
        ),
        event(
            12,
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            activity_task_failed_event_attributes=ActivityTaskFailedEventAttributes(
                scheduled_event_id=10, failure=failure
            ),
        ),
    ]


def continued() -> HistoryEvent:
    from temporalio.api.history.v1 import WorkflowExecutionContinuedAsNewEventAttributes

    return event(
        30,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
        workflow_execution_continued_as_new_event_attributes=WorkflowExecutionContinuedAsNewEventAttributes(
            new_execution_run_id="run-2"
        ),
    )


DISK_FULL = Failure(
    message="activity failed",
    cause=Failure(
        message="needs 2 GB, 1 GB free on /raid",
        application_failure_info=ApplicationFailureInfo(type="InsufficientDiskSpaceError"),
    ),
)


@pytest.mark.parametrize(
    ("events", "node", "row"),
    [
        (
            [update_accepted("redownload", AdminRequest(requested_by="cli:alice@h", reason="bad shard"))],
            "",
            TimelineRow(T0.replace(second=5), "", "admin redownload by cli:alice@h: bad shard"),
        ),
        (
            [
                update_accepted(
                    "rollback",
                    AdminRequest(
                        requested_by="annotation:modelferry.io/rollback", nodes=["n1"], to_version="v1"
                    ),
                )
            ],
            "",
            TimelineRow(
                T0.replace(second=5),
                "",
                "admin rollback by annotation:modelferry.io/rollback",
                why="nodes n1; to version v1",
            ),
        ),
        (
            [signaled("report_damage", DamageReport(node="n2", version_id="v3", files=["a.safetensors"]))],
            "",
            TimelineRow(
                T0.replace(second=6),
                "n2",
                "damage reported",
                outcome="failed",
                why="a.safetensors; version v3",
            ),
        ),
        (
            activity_failed("download_model", DISK_FULL),
            "n1",
            TimelineRow(
                T0.replace(second=12),
                "n1",
                "download failed",
                outcome="failed",
                why="InsufficientDiskSpaceError: needs 2 GB, 1 GB free on /raid",
            ),
        ),
        ([continued()], "", TimelineRow(T0.replace(second=30), "", "continued as new")),
    ],
)
def test_single_events(events: list[HistoryEvent], node: str, row: TimelineRow) -> None:
    rows = history_rows(events, converter=CONVERTER, node=node)
    assert rows[-1] == row


def test_a_fresh_download_says_so() -> None:
    rows = history_rows(activity_failed("download_model", DISK_FULL), converter=CONVERTER, node="n1")
    assert rows[0].what == "download started" and rows[0].why == "fresh copy"


def test_merge_orders_by_time_and_filters_a_node() -> None:
    late = TimelineRow(T0.replace(minute=5), "n1", "Ready")
    early = TimelineRow(T0, "", "revision applied gen 1")
    other = TimelineRow(T0.replace(minute=1), "n2", "Ready")
    assert merge([late, other, early]) == [early, other, late]
    assert merge([late, other, early], node="n1") == [late]
    assert late.to_json() == {
        "when": "2026-11-22T12:05:00Z",
        "node": "n1",
        "what": "Ready",
        "bytes": None,
        "outcome": "",
        "why": "",
    }
