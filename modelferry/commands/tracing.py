"""OpenTelemetry tracing of workflows and activities, configured from the standard `OTEL_*`
variables and carried by temporalio's `TracingInterceptor`.

Off unless asked for, so nothing needs a collector: tracing starts when `OTEL_TRACES_EXPORTER`
names an exporter (`otlp`, `console`; `none` is off) or, with it unset, when an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). `OTEL_SDK_DISABLED=true`
turns it off whatever else says. The OTLP exporter is `opentelemetry-exporter-otlp-proto-http`
(a dependency); it reads its endpoint, headers, timeout and compression from the usual
`OTEL_EXPORTER_OTLP_*` variables itself, as the SDK reads `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER[_ARG]`. `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` needs
`opentelemetry-exporter-otlp-proto-grpc` installed; without it the HTTP exporter is used, said once.

The interceptor goes on the Temporal client (`runtime.connect_temporal`): every worker built from
that client gets it too, so a signal-with-start by the watcher, the workflow run, its child
workflows and every activity on the control and node queues are spans of one trace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

_provider: Any = None  # the TracerProvider configure_tracing installed in this process, if any


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(environ)
    return bool(exporters) and exporters != ["none"]


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    named = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if named:
        return named
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return []


def configure_tracing(*, service_name: str, environ: Mapping[str, str] | None = None) -> Any:
    """Install a global TracerProvider when the environment asks for tracing; returns it, or None.
    `service_name` is the default for `OTEL_SERVICE_NAME` (`modelferry-controller`, ...)."""
    global _provider
    env = os.environ if environ is None else environ
    if _provider is not None or not tracing_enabled(env):
        return _provider
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)  # shuts down (flushes) at exit by itself
    for name in _exporter_names(env):
        exporter = _exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing on: exporters %s", ",".join(_exporter_names(env)))
    return provider


def _exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", ""
        )
        if protocol.strip().lower() == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

                return Grpc()
            except ImportError:
                log.warning(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc; "
                    "exporting over OTLP/HTTP instead"
                )
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("no OTLP exporter installed (opentelemetry-exporter-otlp-proto-http): no spans sent")
            return None
        return OTLPSpanExporter()
    if name != "none":
        log.warning("OTEL_TRACES_EXPORTER %r is not supported (otlp, console, none): ignored", name)
    return None


def tracing_interceptors(tracer_provider: Any = None) -> list[Any]:
    """The client interceptors for tracing: for `tracer_provider` (tests: an in-memory exporter),
    else for the provider `configure_tracing` installed; none when tracing is off."""
    provider = tracer_provider or _provider
    if provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(provider.get_tracer("modelferry"))]
