"""Tracing is off unless the standard OTEL_* variables ask for it, so nothing needs a collector:
an exporter named in OTEL_TRACES_EXPORTER, or an OTLP endpoint, turns it on; `none` and
OTEL_SDK_DISABLED turn it off."""

from __future__ import annotations

import pytest

from modelferry.commands import tracing
from modelferry.dev.temporal_server import server_environment


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
    ],
)
def test_tracing_is_on_only_when_asked(environ: dict[str, str], enabled: bool) -> None:
    assert tracing.tracing_enabled(environ) is enabled


def test_no_interceptor_when_tracing_is_off() -> None:
    assert tracing.tracing_interceptors() == [] or tracing._provider is not None


def test_the_otlp_exporter_is_installed() -> None:
    exporter = tracing._exporter("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    assert type(exporter).__name__ == "OTLPSpanExporter"
    exporter.shutdown()


def test_the_temporal_dev_server_does_not_see_our_otel_variables() -> None:
    """It reads them too, and refuses to start on an exporter it lacks (console)."""
    env = server_environment({"OTEL_TRACES_EXPORTER": "console", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}
