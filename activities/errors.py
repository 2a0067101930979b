"""Turn our typed errors into Temporal failures at the activity boundary.

A permanent error becomes a non-retryable `ApplicationError` whose `type` is our class name, so
the workflow (and the Temporal UI) show exactly what went wrong and no retry is wasted. A temporary
error stays retryable, with `Retry-After` carried as the next retry delay.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

from modelferry.errors import ModelferryError, TemporaryError

F = TypeVar("F", bound=Callable[..., Any])


def to_application_error(error: ModelferryError) -> ApplicationError:
    delay = None
    if isinstance(error, TemporaryError) and error.retry_after:
        delay = timedelta(seconds=error.retry_after)
    return ApplicationError(
        error.message,
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=delay,
    )


def typed_failures(fn: F) -> F:
    """Decorator for activity methods (sync): our errors become Temporal application errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModelferryError as e:
            raise to_application_error(e) from e

    return wrapper  # type: ignore[return-value]
