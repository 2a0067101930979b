"""Durations as operators write them (`30s`, `10m`, `2h`, `7d`, `1h30m`, seconds, `off`), and
errors that name the value and the setting or flag it came from."""

from __future__ import annotations

import pytest

from modelferry.durations import DurationError, format_duration, parse_duration

PARSES = [
    ("30s", 30.0),
    ("10m", 600.0),
    ("2h", 7200.0),
    ("7d", 604800.0),
    ("1h30m", 5400.0),
    ("1d12h", 129600.0),
    ("1d2h3m4s", 93784.0),
    ("1.5h", 5400.0),
    (" 10M ", 600.0),
    ("600", 600.0),
    ("0.5", 0.5),
    ("0", 0.0),
    ("0s", 0.0),
    ("off", 0.0),
    ("OFF", 0.0),
    (600, 600.0),
    (2.5, 2.5),
    (False, 0.0),  # YAML reads an unquoted `off` as false
]


@pytest.mark.parametrize(("value", "seconds"), PARSES, ids=[repr(v) for v, _ in PARSES])
def test_parses(value, seconds):
    assert parse_duration(value, field="node.verify_interval") == seconds


REFUSED = [
    ("", "is empty"),
    ("10x", "is not a duration"),
    ("m", "is not a duration"),
    ("10 m", "is not a duration"),
    ("30m1h", "names 'h' out of order or twice"),
    ("1h1h", "names 'h' out of order or twice"),
    ("-5", "is negative"),
    ("-5m", "is not a duration"),
    ("inf", "is not a finite duration"),
    ("nan", "is not a finite duration"),
    (-1, "is negative"),
    (True, "is not a duration"),
    (None, "is not a duration"),
    ([10], "is not a duration"),
]


@pytest.mark.parametrize(("value", "reason"), REFUSED, ids=[repr(v) for v, _ in REFUSED])
def test_refuses_naming_the_value_and_the_field(value, reason):
    with pytest.raises(DurationError) as caught:
        parse_duration(value, field="--deep-verify-interval")
    message = str(caught.value)
    assert message.startswith(f"--deep-verify-interval: {value!r} {reason}")
    assert "7d" in message  # says what would do
    assert caught.value.field == "--deep-verify-interval"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "off"),
        (30, "30s"),
        (600, "10m"),
        (5400, "1h30m"),
        (604800, "7d"),
        (93784, "1d2h3m4s"),
        (0.5, "0.5"),
    ],
)
def test_formats_what_parses_back(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text, field="x") == seconds
