"""When continuous verification checks a model (cheap at first sight and every verify interval,
deep every deep interval) and when it reports the same damage again: table tests."""

from __future__ import annotations

import pytest

from modelferry.verify_schedule import (
    CheckKind,
    CheckTimes,
    damage_key,
    due_check,
    next_due_in,
    report_window,
    should_report,
)

V, D = 600.0, 7 * 86400.0
CHEAP, DEEP = CheckKind.CHEAP, CheckKind.DEEP

DUE = [
    # (now, first_seen, cheap_at, deep_at, verify, deep, expected)
    ("first sight", 0.0, 0.0, None, None, V, D, CHEAP),
    ("just checked", 10.0, 0.0, 0.0, None, V, D, None),
    ("verify interval later", V, 0.0, 0.0, None, V, D, CHEAP),
    ("deep interval after first sight", D, 0.0, D - 1, None, V, D, DEEP),
    ("deep beats cheap when both are due", D + V, 0.0, D, None, V, D, DEEP),
    ("deep interval after the last deep", 2 * D - 1, 0.0, 2 * D - 2, D, V, D, None),
    ("deep again", 2 * D, 0.0, 2 * D - 2, D, V, D, DEEP),
    ("cheap disabled: nothing at first sight", 0.0, 0.0, None, None, 0, D, None),
    ("cheap disabled, deep still runs", D, 0.0, None, None, 0, D, DEEP),
    ("deep disabled", 10 * D, 0.0, 10 * D - V, None, V, 0, CHEAP),
    ("all disabled", 10 * D, 0.0, None, None, 0, 0, None),
]


@pytest.mark.parametrize(
    ("now", "first", "cheap_at", "deep_at", "verify", "deep", "expected"),
    [row[1:] for row in DUE],
    ids=[row[0] for row in DUE],
)
def test_due_check(now, first, cheap_at, deep_at, verify, deep, expected):
    times = CheckTimes(first_seen=first, cheap_at=cheap_at, deep_at=deep_at)
    assert due_check(now=now, times=times, verify_interval=verify, deep_interval=deep) == expected


def test_next_due_in_is_the_nearest_check():
    times = CheckTimes(first_seen=0.0, cheap_at=100.0, deep_at=None)
    assert next_due_in(now=150.0, times=times, verify_interval=V, deep_interval=D) == 550.0
    assert next_due_in(now=150.0, times=CheckTimes(first_seen=0.0), verify_interval=V, deep_interval=D) == 0.0
    assert next_due_in(now=1.0, times=times, verify_interval=0, deep_interval=0) == float("inf")


def test_damage_is_keyed_by_version_and_files_in_any_order():
    assert damage_key(version_id="v1", files=["b", "a"]) == damage_key(version_id="v1", files=["a", "b"])
    assert damage_key(version_id="v1", files=["a"]) != damage_key(version_id="v2", files=["a"])


REPORTS = [
    ("never reported", None, 0.0, True),
    ("reported just now", 100.0, 100.0, False),
    ("within the window", 100.0, 100.0 + V - 1, False),
    ("a window later", 100.0, 100.0 + V, True),
]


@pytest.mark.parametrize(("at", "now", "expected"), [r[1:] for r in REPORTS], ids=[r[0] for r in REPORTS])
def test_should_report(at, now, expected):
    key = damage_key(version_id="v1", files=["a"])
    reported = {} if at is None else {key: at}
    assert should_report(now=now, key=key, reported=reported, window=V) is expected


def test_report_window_is_the_verify_interval_or_else_the_deep_one():
    assert report_window(verify_interval=V, deep_interval=D) == V
    assert report_window(verify_interval=0, deep_interval=D) == D
