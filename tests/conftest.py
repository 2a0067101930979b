"""The end of every run prints one line per tier (tests/<tier>/...): how many passed, failed and
were skipped, and the seconds its tests took, so a CI log shows, for instance, that the real
control plane tier ran and passed."""

from __future__ import annotations

from collections import Counter, defaultdict
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
