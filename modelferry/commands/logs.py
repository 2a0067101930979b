"""Logging for every long-running entry point: text for people, or one JSON object a line.

`setup_logging` is the one place a process configures logging (`controller`, `worker`, `watch`,
`dev`). In JSON (`log.format: json`, `--log-format json`, `MODELFERRY_LOG_FORMAT=json`) each line
carries what is known of its context as fields:

- `workflow_id`, `run_id`, `activity_id`, `activity_type`, `attempt`, `task_queue`: from the
  `temporal_activity` / `temporal_workflow` dicts temporalio's activity and workflow loggers put
  in `extra`;
- `model` (`Kind/[namespace/]name`, as `ModelRef.display()`) and `node`: read back from the
  workflow ID (`ome/<kind>/[<ns>/]<name>[/node/<node>]`, `modelferry.names`), else from an
  explicit `extra={"model": ..., "node": ...}`, else the process's own node (a node worker);
- `trace_id`, `span_id`: the current OpenTelemetry span, when tracing is on.

In JSON temporalio's loggers stop appending their details dict to the message: the fields say it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Imported here, never inside the formatter: a workflow's log call runs it inside temporalio's
# sandbox, where an import statement would load a second, restricted copy of the module.
from opentelemetry import trace

from modelferry.names import ModelKind
from modelferry.settings import LogFormat

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TEMPORAL_FIELDS = {  # temporalio's key -> ours
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "run_id": "run_id",
    "workflow_type": "workflow_type",
    "activity_id": "activity_id",
    "activity_type": "activity_type",
    "attempt": "attempt",
    "task_queue": "task_queue",
}
_KINDS = {kind.value.lower(): kind for kind in ModelKind}
_OURS = "_modelferry_handler"  # marks the handler setup_logging installed, so a re-run replaces it


def model_and_node(workflow_id: str) -> tuple[str | None, str | None]:
    """`(Kind/[ns/]name, node)` from one of our workflow IDs; `(None, None)` for any other ID."""
    parts = workflow_id.split("/")
    if len(parts) < 3 or parts[0] != "ome" or parts[1] not in _KINDS:
        return None, None
    kind = _KINDS[parts[1]]
    width = 2 if kind.namespaced else 1
    model_parts, rest = parts[2 : 2 + width], parts[2 + width :]
    if len(model_parts) != width or not all(model_parts):
        return None, None
    model = "/".join([kind.value, *model_parts])
    if rest == []:
        return model, None
    if len(rest) == 2 and rest[0] == "node" and rest[1]:
        return model, rest[1]
    return None, None


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the context fields above."""

    def __init__(self, *, node: str | None = None) -> None:
        super().__init__()
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("temporal_workflow", "temporal_activity"):
            details = getattr(record, key, None)
            if isinstance(details, dict):
                for theirs, ours in _TEMPORAL_FIELDS.items():
                    if details.get(theirs) not in (None, ""):
                        entry.setdefault(ours, details[theirs])
        model, node = model_and_node(str(entry.get("workflow_id", "")))
        model = getattr(record, "model", None) or model
        node = getattr(record, "node", None) or node or self._node
        if model:
            entry["model"] = str(model)
        if node:
            entry["node"] = str(node)
        entry.update(_trace_fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _trace_fields() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


# Libraries that log credentials at DEBUG: never below INFO, whatever level the process runs at.
CREDENTIAL_LOGGERS = ("kubernetes.client.rest", "botocore", "urllib3.connectionpool")


def setup_logging(
    *,
    log_format: LogFormat | str = LogFormat.TEXT,
    level: int | str = logging.INFO,
    node: str | None = None,
    stream: IO[str] | None = None,
    forward_core_logs: bool = True,
) -> logging.Handler:
    """Configure the root logger once per process (a second call replaces what the first set).
    `node`: this process's node, for lines that do not name one (a node worker).
    `forward_core_logs=False` leaves the Temporal SDK's default runtime alone (tests)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    json_lines = LogFormat(log_format) is LogFormat.JSON
    handler.setFormatter(JsonFormatter(node=node) if json_lines else logging.Formatter(TEXT_FORMAT))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in CREDENTIAL_LOGGERS:
        # At DEBUG these print response bodies (a Secret's data) and request headers (S3 keys).
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
    _temporal_details_on_message(not json_lines)
    if json_lines and forward_core_logs:
        _forward_sdk_core_logs()
    return handler


def _forward_sdk_core_logs() -> None:
    """The Temporal SDK's core (Rust) writes its warnings to the console in its own format; in
    JSON they go through the logger `temporalio.core` instead, so every line is an object. Takes
    effect for clients created afterwards: the entry points set up logging before connecting."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    logging_config = LoggingConfig(filter=LoggingConfig.default.filter, forwarding=forwarding)
    runtime = Runtime(telemetry=TelemetryConfig(logging=logging_config))
    Runtime.set_default(runtime, error_if_already_set=False)


def _temporal_details_on_message(enabled: bool) -> None:
    from temporalio import activity, workflow

    activity.logger.activity_info_on_message = enabled
    workflow.logger.workflow_info_on_message = enabled


def add_log_format_flag(parser: Any) -> None:
    """`--log-format text|json` (setting `log.format`, env MODELFERRY_LOG_FORMAT)."""
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=None,
        help="log lines as text (default) or JSON objects with model, node and workflow ID",
    )


def log_format_override(args: Any) -> dict[str, object]:
    value = getattr(args, "log_format", None)
    return {} if value is None else {"log.format": value}
