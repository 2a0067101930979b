"""Recorded histories replay against today's workflow code, so a change that would break running
workflows fails here (guard such changes with `workflow.patched`)."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.model import ModelWorkflow
from workflows.node import NodeWorkflow

HISTORY_DIR = Path(__file__).resolve().parents[1] / "data" / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))
# Child workflow IDs derive from the parent's, so a history replays only under its original ID.
WORKFLOW_IDS = dict(
    line.split(" ", 1) for line in (HISTORY_DIR / "workflow_ids.txt").read_text().splitlines()
)


def test_recorded_histories_exist():
    names = {p.name for p in HISTORIES}
    assert {
        "model_workflow_adopts_options.json",
        "model_workflow_deliver_then_delete.json",
        "node_workflow_deliver.json",
        "node_workflow_remove.json",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path):
    replayer = Replayer(workflows=[ModelWorkflow, NodeWorkflow], data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(WORKFLOW_IDS[path.name], path.read_text())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
