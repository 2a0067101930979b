"""When `modelferry dev` restarts its Temporal dev server after a death, and when it gives up."""

from __future__ import annotations

import signal

import pytest

from modelferry.dev.temporal_server import describe_exit, should_restart


@pytest.mark.parametrize(
    ("deaths", "now", "restart"),
    [
        ([100.0], 100.0, True),  # the first death
        ([10.0, 20.0, 30.0], 30.0, True),  # the limit (3) reached, not passed
        ([10.0, 20.0, 30.0, 40.0], 40.0, False),  # a fourth death within the window
        ([0.0, 1.0, 2.0, 3.0], 3.0, False),  # a crash loop
        ([0.0, 10.0, 20.0, 400.0], 400.0, True),  # the old deaths are outside the window
        ([0.0, 100.0, 200.0, 300.0], 300.0, True),  # exactly one window later no longer counts
        ([0.0, 100.0, 200.0, 299.0], 299.0, False),  # just inside the window still does
        ([0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0], 2500.0, True),  # rare deaths, forever
    ],
)
def test_restart_unless_more_than_the_limit_died_within_the_window(
    deaths: list[float], now: float, restart: bool
) -> None:
    assert should_restart(deaths, now=now, limit=3, window=300.0) is restart


def test_the_limit_and_window_are_parameters() -> None:
    assert should_restart([1.0, 2.0], now=2.0, limit=1, window=10.0) is False
    assert should_restart([1.0, 2.0], now=12.0, limit=1, window=10.0) is True
    assert should_restart([5.0], now=5.0, limit=0, window=10.0) is False


@pytest.mark.parametrize(
    ("returncode", "words"),
    [
        (1, "exited with code 1"),
        (0, "exited with code 0"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGTERM, "was killed by SIGTERM"),
        (-200, "was killed by signal 200"),
    ],
)
def test_an_exit_is_described_by_code_or_signal(returncode: int, words: str) -> None:
    assert describe_exit(returncode) == words
