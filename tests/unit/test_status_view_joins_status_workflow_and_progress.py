"""`modelferry status` rendering (pure): the models overview, and one model's nodes joined from
the workflow's outcomes, the resource status and the ConfigMap entries' `progress`."""

from __future__ import annotations

import json

import pytest

from modelferry.messages import ModelRef, NodeOutcome, NodeProgress
from modelferry.names import ModelKind
from modelferry.statusview import (
    ModelLine,
    NodeLine,
    human_bytes,
    human_duration,
    model_line,
    node_lines,
    progress_from_configmaps,
    progress_text,
    render_model,
    render_models,
)

CBM = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama")


@pytest.mark.parametrize(
    ("kind", "obj", "line"),
    [
        (
            ModelKind.CLUSTER_BASE_MODEL,
            {"metadata": {"name": "llama"}, "status": {"state": "Ready", "nodesReady": ["a", "b"]}},
            ModelLine("cbm/llama", "Ready", 2, 0),
        ),
        (
            ModelKind.BASE_MODEL,
            {
                "metadata": {"name": "m", "namespace": "t"},
                "status": {"state": "Failed", "nodesFailed": ["a"]},
            },
            ModelLine("bm/t/m", "Failed", 0, 1),
        ),
        (ModelKind.FINE_TUNED_WEIGHT, {"metadata": {"name": "w"}}, ModelLine("ftw/w", "-", 0, 0)),
    ],
)
def test_model_lines(kind: ModelKind, obj: dict, line: ModelLine) -> None:
    assert model_line(kind, obj) == line


def test_models_table() -> None:
    text = render_models([ModelLine("cbm/z", "Ready", 2, 0), ModelLine("bm/t/a", "Creating", 0, 1)])
    assert text.splitlines() == [
        "MODEL   STATE     READY  FAILED",
        "bm/t/a  Creating  0      1",
        "cbm/z   Ready     2      0",
    ]
    assert render_models([]) == "no model resources"


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        (None, ""),
        (
            NodeProgress(
                phase="Downloading",
                total_bytes=2_000_000_000,
                completed_bytes=500_000_000,
                speed_bytes_per_sec=50_000_000,
                eta_seconds=30,
            ),
            "Downloading [#####...............]  25% 500.0 MB/2.0 GB 50.0 MB/s ETA 30s",
        ),
        (NodeProgress(total_bytes=100, completed_bytes=100), "[####################] 100% 100 B/100 B"),
        (NodeProgress(completed_bytes=4096, eta_seconds=3700), "4.1 kB ETA 1h01m"),
    ],
)
def test_progress_text(progress: NodeProgress | None, text: str) -> None:
    assert progress_text(progress) == text


def test_progress_is_read_from_either_report_format_and_tolerates_its_absence() -> None:
    progress = {"phase": "Downloading", "totalBytes": 10, "completedBytes": 4, "etaSeconds": 3}
    configmaps = [
        {
            "metadata": {"name": "n1"},
            "data": {"clusterbasemodel.llama": json.dumps({"status": "Updating", "progress": progress})},
        },
        {"metadata": {"name": "n2"}, "data": {"llama": json.dumps({"status": "Ready"})}},
        {"metadata": {"name": "n3"}, "data": {"llama": "not json"}},
        {"metadata": {"name": "n4"}, "data": {"llama": json.dumps({"progress": progress})}},
        {"metadata": {"name": "n5"}},
    ]
    found = progress_from_configmaps(CBM, configmaps)
    assert sorted(found) == ["n1", "n4"]
    assert found["n1"].completed_bytes == 4 and found["n1"].eta_seconds == 3


def test_node_lines_join_the_sources() -> None:
    outcomes = {
        "n1": NodeOutcome(node="n1", state="Ready", version_id="v2", kept_versions=["v1"]),
        "n2": NodeOutcome(node="n2", state="Failed", reason="AccessDenied", message="403 from the bucket"),
    }
    status = {"nodesReady": ["n1"], "nodesFailed": ["n2", "n3"]}
    progress = {"n4": NodeProgress(total_bytes=10, completed_bytes=5)}
    lines = node_lines(status=status, outcomes=outcomes, progress=progress)
    assert lines == [
        NodeLine("n1", "Ready", "v2", "", ""),
        NodeLine("n2", "Failed", "-", "", "AccessDenied: 403 from the bucket"),
        NodeLine("n3", "Failed", "-", "", ""),
        NodeLine("n4", "Updating", "-", "[##########..........]  50% 5 B/10 B", ""),
    ]


def test_without_the_workflow_the_status_still_shows() -> None:
    lines = node_lines(status={"nodesReady": ["n1"]}, outcomes=None)
    text = render_model(
        model="cbm/llama", state="Ready", lines=lines, notes=["(model workflow not queried: x)"]
    )
    assert text.splitlines() == [
        "cbm/llama  Ready",
        "NODE  STATE  VERSION  PROGRESS  LAST ERROR",
        "n1    Ready  -",
        "(model workflow not queried: x)",
    ]
    assert render_model(model="cbm/llama", state="", lines=[]).splitlines() == ["cbm/llama  -", "  no nodes"]


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (999, "999 B"), (1200, "1.2 kB"), (1_234_000_000, "1.2 GB")]
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(0, "0s"), (59.6, "1m00s"), (185, "3m05s"), (7800, "2h10m")])
def test_human_duration(s: float, text: str) -> None:
    assert human_duration(s) == text
