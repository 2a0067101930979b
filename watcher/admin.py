"""The client side of the admin actions: a Temporal Update on the model's workflow.

The CLI (`modelferry redownload|rollback|retry`) and the watcher (the `modelferry.io/*`
annotations) both send them through `run_admin_action`, so both read a refusal the same way:

- the workflow's validator refused the request (unknown node, version not kept, model being
  deleted, nothing failed to retry) → `AdminRequestRefusedError` carrying the validator's message;
- no workflow runs under the model's ID → `ModelWorkflowNotFoundError`;
- anything else (Temporal unreachable, no answer in time) is temporary: retrying may help.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client, RPCError, WorkflowUpdateFailedError
from temporalio.exceptions import FailureError
from temporalio.service import RPCStatusCode

from modelferry.errors import AdminRequestRefusedError, ModelWorkflowNotFoundError, TemporaryError
from modelferry.messages import AdminAction, AdminPlan, AdminRequest

# An accepted Update answers with its plan before anything runs: only a workflow nobody is
# polling for (the control worker down) keeps the caller waiting this long.
ADMIN_UPDATE_TIMEOUT_SECONDS = 30.0

# RPC statuses that mean "the server refused this request", not "the server is unreachable".
_REFUSALS = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION)


async def run_admin_action(
    client: Client,
    *,
    workflow_id: str,
    action: AdminAction,
    request: AdminRequest,
    timeout: float = ADMIN_UPDATE_TIMEOUT_SECONDS,
) -> AdminPlan:
    """Send `action` as an Update to the model workflow `workflow_id`; its accepted plan."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(timeout):
            plan: AdminPlan = await handle.execute_update(action.value, request, result_type=AdminPlan)
            return plan
    except WorkflowUpdateFailedError as error:
        raise AdminRequestRefusedError(refusal_message(error)) from None
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ModelWorkflowNotFoundError(
                f"no running workflow {workflow_id}: the model is unknown to modelferry or gone"
            ) from None
        if error.status in _REFUSALS:
            raise AdminRequestRefusedError(error.message) from None
        raise TemporaryError(f"{action.value} on {workflow_id}: {error.message}") from None
    except TimeoutError:
        raise TemporaryError(
            f"{action.value} on {workflow_id}: no answer in {timeout:.0f}s (is the control worker running?)"
        ) from None


def refusal_message(error: BaseException) -> str:
    """The innermost failure's message: the validator's words, without the SDK's wrapping."""
    message = str(error)
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, FailureError) and cause.message:
            message = cause.message
        elif not isinstance(cause, WorkflowUpdateFailedError) and str(cause):
            message = str(cause)
        cause = cause.__cause__
    return message
