"""What a failed activity prints, through a real worker on the Temporal dev server: an expected
failure (one of our typed permanent errors: a missing source, denied access, an invalid spec)
is one WARNING line that says what failed and why, with no traceback; an unexpected exception
keeps the SDK's WARNING with its full traceback."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.errors import typed_failures
from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.errors import AccessDeniedError, InvalidSpecError, SourceNotFoundError

EXPECTED = {
    "missing": SourceNotFoundError("hf://acme/nope@main: repository not found"),
    "denied": AccessDeniedError("s3://bucket/m: 403 AccessDenied: check storageKey"),
    "invalid": InvalidSpecError("must be absolute", field="spec.storage.path"),
}


@activity.defn(name="fail")
@typed_failures
def fail(kind: str) -> None:
    if kind in EXPECTED:
        raise EXPECTED[kind]
    raise RuntimeError("a bug: list index out of range")


@workflow.defn(name="FailOnce")
class FailOnce:
    @workflow.run
    async def run(self, kind: str) -> str:
        try:
            await workflow.execute_activity(
                fail,
                kind,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return f"{err.cause.type}: {err.cause.message}"
        return "no failure"


async def run_failing(temporal: TemporalDevServer, kind: str) -> str:
    await temporal.wait_ready()
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    queue = f"fail-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[FailOnce],
            activities=[fail],
            activity_executor=pool,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            return await client.execute_workflow(FailOnce.run, kind, id=queue, task_queue=queue)


def warnings_from_the_activity(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("temporalio.activity", "activities"))
    ]


@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_an_expected_failure_is_one_warning_without_a_traceback(temporal, caplog, kind):
    caplog.set_level(logging.DEBUG)
    error = EXPECTED[kind]
    result = await run_failing(temporal, kind)
    assert result == f"{type(error).__name__}: {error.message}"  # the workflow still learns it all
    [warning] = warnings_from_the_activity(caplog)
    assert warning.exc_info is None and not warning.exc_text
    assert f"fail failed: {type(error).__name__}: {error.message}" in warning.getMessage()
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]  # what an operator sees
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in shown)
    # The SDK's own record of the failure, with its traceback, is still there at DEBUG.
    sdk = [r for r in caplog.records if r.getMessage().startswith("Completing activity as failed")]
    assert [r.levelno for r in sdk] == [logging.DEBUG]


async def test_an_unexpected_exception_keeps_its_traceback(temporal, caplog):
    caplog.set_level(logging.DEBUG)
    result = await run_failing(temporal, "bug")
    assert result == "RuntimeError: a bug: list index out of range"
    [warning] = warnings_from_the_activity(caplog)
    assert warning.name == "temporalio.activity" and warning.exc_info is not None
    assert isinstance(warning.exc_info[1], RuntimeError)
    assert "Traceback" in caplog.text
