"""The end of every run prints one line per tier (tests/<tier>/...): how many passed, failed and
were skipped, and the seconds its tests took, so a CI log shows, for instance, that the real
control plane tier ran and passed. The `spans` fixture collects the spans of the global tracer
provider, which it installs once per process."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

_OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def _tier(nodeid: str) -> str:
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: Counter[str] = Counter()
    for outcome in _OUTCOMES:
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid:
                counts[_tier(nodeid)][outcome] += 1
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "nodeid", "") and isinstance(getattr(report, "duration", None), float):
                seconds[_tier(report.nodeid)] += report.duration
    if not counts:
        return
    terminalreporter.section("tiers")
    for tier in sorted(counts):
        said = ", ".join(f"{n} {outcome}" for outcome in _OUTCOMES if (n := counts[tier][outcome]))
        terminalreporter.line(f"{tier}: {said} ({seconds[tier]:.0f} s)")


@pytest.fixture(scope="session")
def _global_span_exporter() -> Any:
    """OpenTelemetry's global tracer provider can be set only once per process, so it is set here,
    once, for every test that reads spans made through `trace.get_tracer` (the storage engine's,
    verification's); if an SDK provider is already installed, the exporter joins it instead."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider, "another global tracer provider was set first"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_global_span_exporter: Any) -> Iterator[Any]:
    """The in-memory exporter of the global tracer provider, empty when the test starts."""
    _global_span_exporter.clear()
    yield _global_span_exporter
    _global_span_exporter.clear()
