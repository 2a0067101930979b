"""Durations as operators write them: `30s`, `10m`, `2h`, `7d`, `1h30m`, or plain seconds.

Settings and flags that are intervals (`node.verify_interval`, `--deep-verify-interval`) accept
these strings so nobody has to count the seconds of a week. `0` and `off` mean "disabled" and
parse to 0. A YAML `off` (unquoted) arrives as `False`, so `False` is "disabled" too.

Every error names the value and where it came from (a settings field or a flag), because the
same parser serves both and the reader has to know which one to fix.
"""

from __future__ import annotations

import math
import re

# Units largest first; a duration names each at most once, in this order (`1h30m`, not `30m1h`).
_UNITS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DISABLED = ("off", "never", "disabled")
_EXAMPLES = "e.g. 30s, 10m, 2h, 7d, 1h30m, a number of seconds, or off"


class DurationError(ValueError):
    """A value that is not a duration; the message names the value and the field or flag."""

    def __init__(self, value: object, *, field: str, reason: str) -> None:
        super().__init__(f"{field}: {value!r} {reason} ({_EXAMPLES})")
        self.value = value
        self.field = field


def parse_duration(value: object, *, field: str) -> float:
    """Seconds in `value` (a duration string, a number of seconds, or off); 0 means disabled."""
    if isinstance(value, bool):
        if value:
            raise DurationError(value, field=field, reason="is not a duration")
        return 0.0
    if isinstance(value, int | float):
        return _checked(float(value), value, field=field)
    if not isinstance(value, str):
        raise DurationError(value, field=field, reason="is not a duration")
    text = value.strip().lower()
    if not text:
        raise DurationError(value, field=field, reason="is empty")
    if text in _DISABLED:
        return 0.0
    try:
        return _checked(float(text), value, field=field)
    except ValueError as error:
        if isinstance(error, DurationError):
            raise
    total = 0.0
    pos = 0
    last_rank = -1
    ranks = list(_UNITS)
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise DurationError(value, field=field, reason="is not a duration")
        number, unit = match.groups()
        rank = ranks.index(unit)
        if rank <= last_rank:
            raise DurationError(value, field=field, reason=f"names '{unit}' out of order or twice")
        last_rank = rank
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return _checked(total, value, field=field)


def _checked(seconds: float, value: object, *, field: str) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError(value, field=field, reason="is not a finite duration")
    if seconds < 0:
        raise DurationError(value, field=field, reason="is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest string `parse_duration` reads back as `seconds` (`off` for 0): `7d`, `1h30m`."""
    if seconds <= 0:
        return "off"
    if seconds != int(seconds):
        return repr(float(seconds))
    rest = int(seconds)
    parts = []
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, int(size))
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
