"""`--log-format json`: one JSON object a line, and a line logged inside an activity or a
workflow carries its workflow ID, run and activity IDs, and the model and node read back from our
workflow IDs (or the worker's own node)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator

import pytest
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment

from modelferry.commands.logs import model_and_node, setup_logging
from modelferry.names import ModelKind, model_workflow_id, node_workflow_id


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging(
        log_format="json", level=logging.INFO, node="node-9", stream=stream, forward_core_logs=False
    )
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    activity.logger.activity_info_on_message = True  # temporalio's loggers as they were
    workflow.logger.workflow_info_on_message = True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@activity.defn
def fetch(message: str) -> None:
    activity.logger.info("fetched %s", message)


def test_an_activity_line_carries_workflow_activity_model_and_node(json_lines):
    workflow_id = node_workflow_id(
        model_workflow_id=model_workflow_id(kind=ModelKind.BASE_MODEL, namespace="team-a", name="llama"),
        node_name="gpu-1",
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, activity_id="7", attempt=2)
    env.run(fetch, "a.bin")
    (line,) = [entry for entry in lines(json_lines) if entry["logger"] == "temporalio.activity"]
    assert line["message"] == "fetched a.bin"  # the details are fields, not a dict in the text
    assert line["level"] == "INFO"
    assert line["workflow_id"] == "ome/basemodel/team-a/llama/node/gpu-1"
    assert line["activity_id"] == "7" and line["attempt"] == 2
    assert line["model"] == "BaseModel/team-a/llama"
    assert line["node"] == "gpu-1"
    assert line["time"].endswith("+00:00")


def test_a_line_outside_any_workflow_names_the_process_node(json_lines):
    logging.getLogger("modelferry.test").warning("disk %s", "slow", extra={"model": "ClusterBaseModel/x"})
    (line,) = lines(json_lines)
    assert line == {
        "time": line["time"],
        "level": "WARNING",
        "logger": "modelferry.test",
        "message": "disk slow",
        "model": "ClusterBaseModel/x",
        "node": "node-9",
    }


def test_an_exception_is_one_field_of_one_line(json_lines):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("modelferry.test").exception("failed")
    (line,) = lines(json_lines)
    assert line["message"] == "failed" and "RuntimeError: boom" in line["exception"]


@pytest.mark.parametrize(
    ("workflow_id", "expected"),
    [
        ("ome/clusterbasemodel/llama", ("ClusterBaseModel/llama", None)),
        ("ome/clusterbasemodel/llama/node/n1", ("ClusterBaseModel/llama", "n1")),
        ("ome/basemodel/ns/llama", ("BaseModel/ns/llama", None)),
        ("ome/basemodel/ns/llama/node/n1", ("BaseModel/ns/llama", "n1")),
        ("ome/finetunedweight/lora/node/n1", ("FineTunedWeight/lora", "n1")),
        ("ome/basemodel/ns", (None, None)),
        ("ome/clusterbasemodel/llama/other/n1", (None, None)),
        ("someone-elses-workflow", (None, None)),
        ("", (None, None)),
    ],
)
def test_model_and_node_are_read_back_from_our_workflow_ids(workflow_id, expected):
    assert model_and_node(workflow_id) == expected


def test_libraries_that_log_credentials_at_debug_stay_at_info() -> None:
    import io
    import logging

    from modelferry.commands.logs import CREDENTIAL_LOGGERS, setup_logging

    setup_logging(level=logging.DEBUG, stream=io.StringIO(), forward_core_logs=False)
    for name in CREDENTIAL_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
