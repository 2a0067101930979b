"""Turn our typed errors into Temporal failures at the activity boundary.

A permanent error becomes a non-retryable `ApplicationError` whose `type` is our class name, so
the workflow (and the Temporal UI) show exactly what went wrong and no retry is wasted. A temporary
error stays retryable, with `Retry-After` carried as the next retry delay.

Logging follows the same line. An expected failure (a missing source, denied access, an invalid
spec: someone outside has to act, and our message says what) is logged here once, as one WARNING
line without a traceback, and marked BENIGN so that the SDK's own "Completing activity as failed"
record, which carries the full chained traceback, drops to DEBUG (temporalio's documented
behaviour for that category; such failures are also left out of its failure metrics, which should
count our faults, not users'). Anything else, an unexpected exception included, keeps the SDK's
WARNING with its traceback: that is where a traceback helps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from modelferry.errors import KubeInvalidError, ModelferryError, TemporaryError

F = TypeVar("F", bound=Callable[..., Any])


def is_expected(error: ModelferryError) -> bool:
    """A failure no retry fixes and no traceback explains: the resource's author or the operator
    acts on its message. A request the API server found malformed is our own fault, not one."""
    return not error.retryable and not isinstance(error, KubeInvalidError)


def to_application_error(error: ModelferryError) -> ApplicationError:
    delay = None
    if isinstance(error, TemporaryError) and error.retry_after:
        delay = timedelta(seconds=error.retry_after)
    category = ApplicationErrorCategory.UNSPECIFIED
    if is_expected(error):
        category = ApplicationErrorCategory.BENIGN
    return ApplicationError(
        error.message,
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=delay,
        category=category,
    )


def typed_failures(fn: F) -> F:
    """Decorator for activity methods (sync): our errors become Temporal application errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModelferryError as e:
            if is_expected(e):
                # The activity logger appends which activity, workflow and attempt this was.
                activity.logger.warning("%s failed: %s: %s", fn.__name__, type(e).__name__, e.message)
            raise to_application_error(e) from e

    return wrapper  # type: ignore[return-value]
