"""A download's heartbeat becomes the node entry's `progress` (OME's DownloadProgress names), the
throttle writes only a change worth showing and never twice per interval, and the entry carries
progress in both formats until a status write drops it."""

from __future__ import annotations

import json

import pytest

from modelferry.messages import ModelRef, NodeProgress
from modelferry.names import ModelKind
from modelferry.nodestatus import (
    NodeModelStatus,
    entry_status,
    ome_download_progress,
    with_entry,
    with_progress,
)
from modelferry.progress import percent, progress_from_heartbeat, should_write

NOW = "2025-01-02T03:04:05Z"
BEAT = {
    "revision": "abc",
    "version_id": "v-1",
    "bytes_done": 400,
    "bytes_total": 1000,
    "files_done_count": 2,
    "files_total": 5,
    "bytes_per_second": 50,
    "eta_seconds": 12.0,
}
DOWNLOADING = NodeProgress(
    phase="Downloading",
    total_bytes=1000,
    completed_bytes=400,
    total_files=5,
    completed_files=2,
    speed_bytes_per_sec=50.0,
    eta_seconds=12.0,
    last_updated=NOW,
)

# (id, activity type, heartbeat detail, previous, expected)
HEARTBEAT_CASES = [
    ("a download's checkpoint", "download_model", BEAT, None, DOWNLOADING),
    (
        "listing: no counts yet",
        "download_model",
        {"revision": "abc", "version_id": "v-1"},
        None,
        NodeProgress(phase="Downloading", last_updated=NOW),
    ),
    ("no heartbeat yet", "download_model", None, None, NodeProgress(phase="Downloading", last_updated=NOW)),
    (
        "verifying keeps the download's counts, not its speed",
        "verify_model",
        None,
        DOWNLOADING,
        DOWNLOADING.model_copy(
            update={"phase": "Verifying", "speed_bytes_per_sec": 0.0, "eta_seconds": None}
        ),
    ),
    (
        "nonsense values are not counts",
        "download_model",
        {"bytes_done": -5, "bytes_total": "many", "files_total": True, "bytes_per_second": float("nan")},
        None,
        NodeProgress(phase="Downloading", last_updated=NOW),
    ),
    ("an activity that tells no progress", "parse_model", BEAT, None, None),
]


@pytest.mark.parametrize(
    ("activity_type", "details", "previous", "expected"),
    [c[1:] for c in HEARTBEAT_CASES],
    ids=[c[0] for c in HEARTBEAT_CASES],
)
def test_heartbeat_becomes_progress(activity_type, details, previous, expected) -> None:
    got = progress_from_heartbeat(activity_type=activity_type, details=details, now=NOW, previous=previous)
    assert got == expected


def test_progress_has_omes_names_on_the_wire() -> None:
    assert DOWNLOADING.model_dump(by_alias=True) == {
        "phase": "Downloading",
        "totalBytes": 1000,
        "completedBytes": 400,
        "totalFiles": 5,
        "completedFiles": 2,
        "speedBytesPerSec": 50.0,
        "etaSeconds": 12.0,
        "lastUpdated": NOW,
    }
    assert percent(DOWNLOADING) == 40.0
    assert percent(NodeProgress()) == 0.0


def _at(done: int, phase: str = "Downloading") -> NodeProgress:
    return NodeProgress(phase=phase, total_bytes=1000, completed_bytes=done)


# (id, current, written, seconds since written, expected) with interval 10 s, step 5%
THROTTLE_CASES = [
    ("first write", _at(0), None, None, True),
    ("moved a step after the interval", _at(450), _at(400), 10.0, True),
    ("moved a step within the interval", _at(900), _at(400), 9.9, False),
    ("moved less than a step", _at(440), _at(400), 60.0, False),
    ("phase changed after the interval", _at(1000, "Verifying"), _at(1000), 10.0, True),
    ("phase changed within the interval", _at(1000, "Verifying"), _at(990), 0.5, False),
    ("finished: the last bytes are less than a step", _at(1000), _at(980), 10.0, True),
    ("still finished: nothing new", _at(1000), _at(1000), 60.0, False),
]


@pytest.mark.parametrize(
    ("current", "written", "since", "expected"),
    [c[1:] for c in THROTTLE_CASES],
    ids=[c[0] for c in THROTTLE_CASES],
)
def test_throttle(current, written, since, expected) -> None:
    assert (
        should_write(
            current=current,
            written=written,
            seconds_since_written=since,
            interval_seconds=10.0,
            min_percent_step=5.0,
        )
        is expected
    )


REF = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="llama", uid="u-1")
DOCS, OME = "team-a_llama", "team-a.basemodel.llama"
CONFIG = {"modelType": "llama", "parameterCount": 8}


def _entries(data: dict[str, str]) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in data.items()}


def test_progress_rides_in_both_formats_and_a_status_write_drops_it() -> None:
    updating = with_entry({}, ref=REF, status=NodeModelStatus.UPDATING, config=CONFIG)
    data = with_progress(
        updating, ref=REF, status=NodeModelStatus.UPDATING, config=None, progress=DOWNLOADING
    )
    entries = _entries(data)
    assert entries[DOCS] == {
        "name": "llama",
        "status": "Updating",
        "config": CONFIG,  # kept: the report gave none
        "progress": DOWNLOADING.model_dump(by_alias=True),
    }
    assert entries[OME]["progress"] == {  # DownloadProgress has no etaSeconds
        "phase": "Downloading",
        "totalBytes": 1000,
        "completedBytes": 400,
        "totalFiles": 5,
        "completedFiles": 2,
        "speedBytesPerSec": 50.0,
        "lastUpdated": NOW,
    }
    assert entries[OME]["status"] == "Updating" and entries[OME]["config"] == {"modelType": "llama"}

    ready = _entries(with_entry(data, ref=REF, status=NodeModelStatus.READY, config=CONFIG))
    assert all("progress" not in e and e["status"] == "Ready" for e in ready.values())


def test_progress_never_creates_an_entry_nor_overwrites_another_status() -> None:
    progress = dict(ref=REF, status=NodeModelStatus.UPDATING, config=None, progress=DOWNLOADING)
    assert with_progress({"other": "x"}, **progress) == {"other": "x"}  # removed: stays removed
    ready = with_entry({}, ref=REF, status=NodeModelStatus.READY, config=CONFIG)
    assert with_progress(ready, **progress) == ready  # a late report after Ready changes nothing
    assert entry_status(ready, ref=REF) == "Ready"
    assert entry_status({}, ref=REF) is None


def test_ome_progress_keeps_only_what_its_go_types_decode() -> None:
    assert ome_download_progress(
        {"phase": "Downloading", "totalBytes": -1, "totalFiles": 2**32, "speedBytesPerSec": "fast", "x": 1}
    ) == {"phase": "Downloading"}
