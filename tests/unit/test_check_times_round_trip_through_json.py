"""Continuous verification's check times are written to `.modelferry/checks.json` as wall-clock
seconds and read back onto the verifier's clock; anything that is not such a record means "never
checked", and a time in the future counts as now: table tests."""

from __future__ import annotations

import math

import pytest

from modelferry.verify_schedule import CHECKS_FORMAT, CheckTimes, decode_check_times, encode_check_times

NOW = 5_000.0
OFFSET = 1_700_000_000.0  # wall clock minus the verifier's (monotonic) clock


def test_times_round_trip_across_clocks():
    times = CheckTimes(first_seen=100.0, cheap_at=4_000.0, deep_at=None)
    written = encode_check_times(times, wall_offset=OFFSET)
    assert written == {
        "format": CHECKS_FORMAT,
        "first_seen": OFFSET + 100.0,
        "cheap_at": OFFSET + 4_000.0,
        "deep_at": None,
    }
    # A restarted worker's monotonic clock starts elsewhere: same wall times, other local ones.
    assert decode_check_times(written, now=NOW - 1_000, wall_offset=OFFSET + 1_000) == CheckTimes(
        first_seen=-900.0, cheap_at=3_000.0, deep_at=None
    )


def _record(**fields: object) -> dict[str, object]:
    return {"format": CHECKS_FORMAT, "first_seen": 10.0, "cheap_at": 20.0, "deep_at": 10.0, **fields}


DECODED = [
    # (case, data, expected times or None)
    ("a full record", _record(), CheckTimes(first_seen=10.0, cheap_at=20.0, deep_at=10.0)),
    ("never deep-checked", _record(deep_at=None), CheckTimes(first_seen=10.0, cheap_at=20.0)),
    ("missing optional times", {"format": CHECKS_FORMAT, "first_seen": 10}, CheckTimes(first_seen=10.0)),
    ("a future time is clamped to now", _record(cheap_at=NOW + 99, deep_at=NOW * 9),
     CheckTimes(first_seen=10.0, cheap_at=NOW, deep_at=NOW)),
    ("no record", None, None),
    ("not an object", [1, 2], None),
    ("another format", _record(format=CHECKS_FORMAT + 1), None),
    ("no format", {"first_seen": 10.0}, None),
    ("no first_seen", _record(first_seen=None), None),
    ("a text time", _record(cheap_at="yesterday"), None),
    ("a boolean time", _record(deep_at=True), None),
    ("not finite", _record(cheap_at=math.inf), None),
    ("not a number", _record(first_seen=math.nan), None),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [row[1:] for row in DECODED], ids=[row[0] for row in DECODED])
def test_decode_check_times(data, expected):
    assert decode_check_times(data, now=NOW, wall_offset=0.0) == expected
