"""When continuous verification checks a model, and when it reports damage: pure decisions.

A node worker checks every model it holds (`activities.continuous_verify`): a *cheap* check
(manifest readable, every file present with its recorded size, nothing swapped for a symlink) once
when it first sees the model, then every `verify_interval`; a *deep* check (every byte hashed)
every `deep_verify_interval` from the moment it first saw the model. The worker schedules on its
own monotonic clock and, after each check, records the times as wall-clock seconds in the
version's own state directory (`.modelferry/checks.json`, encoded and decoded here): a restarted
worker, or the next short-lived Job on the node, resumes the schedule instead of starting its
deep clock again. A record that is missing or malformed means "never checked"; a time in the
future (a clock set back, a copied directory) counts as now, so it can delay a check by one
interval at most.

Damage is reported to the model's workflow once, and again only after `verify_interval` if it is
still there (the workflow may have missed it, or the repair failed): a report per pass would flood
the workflow's history while a repair runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

CHECKS_FILE_NAME = "checks.json"  # beside manifest.json in the version's state directory
CHECKS_FORMAT = 1


class CheckKind(StrEnum):
    CHEAP = "cheap"  # presence, sizes, no symlink: stat calls only
    DEEP = "deep"  # every byte hashed against the manifest's digests


@dataclass(slots=True)
class CheckTimes:
    """What the verifier remembers of one model version (seconds on the verifier's clock)."""

    first_seen: float
    cheap_at: float | None = None  # the last check of either kind (a deep check is also a cheap one)
    deep_at: float | None = None


def encode_check_times(times: CheckTimes, *, wall_offset: float) -> dict[str, Any]:
    """`times` as the JSON of `checks.json`, in wall-clock seconds (`wall_offset`: wall clock
    minus the verifier's clock, read at one moment)."""

    def wall(t: float | None) -> float | None:
        return None if t is None else t + wall_offset

    return {
        "format": CHECKS_FORMAT,
        "first_seen": wall(times.first_seen),
        "cheap_at": wall(times.cheap_at),
        "deep_at": wall(times.deep_at),
    }


def decode_check_times(data: object, *, now: float, wall_offset: float) -> CheckTimes | None:
    """The times `encode_check_times` wrote, on the verifier's clock, none later than `now`;
    None when `data` is not such a record (another format, a missing or non-finite time)."""
    if not isinstance(data, dict) or data.get("format") != CHECKS_FORMAT:
        return None
    record: dict[str, Any] = data

    def local(key: str) -> float | None:
        value = record.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(key)
        return min(float(value) - wall_offset, now)

    try:
        first_seen, cheap_at, deep_at = local("first_seen"), local("cheap_at"), local("deep_at")
    except ValueError:
        return None
    if first_seen is None:
        return None
    return CheckTimes(first_seen=first_seen, cheap_at=cheap_at, deep_at=deep_at)


def due_check(
    *, now: float, times: CheckTimes, verify_interval: float, deep_interval: float
) -> CheckKind | None:
    """The check this model needs now, if any; an interval of 0 disables that kind of check."""
    if deep_interval > 0:
        since = times.deep_at if times.deep_at is not None else times.first_seen
        if now - since >= deep_interval:
            return CheckKind.DEEP
    if verify_interval > 0 and (times.cheap_at is None or now - times.cheap_at >= verify_interval):
        return CheckKind.CHEAP
    return None


def next_due_in(*, now: float, times: CheckTimes, verify_interval: float, deep_interval: float) -> float:
    """Seconds until this model's next check (inf when every check is disabled)."""
    waits = [float("inf")]
    if deep_interval > 0:
        since = times.deep_at if times.deep_at is not None else times.first_seen
        waits.append(since + deep_interval - now)
    if verify_interval > 0:
        waits.append(0.0 if times.cheap_at is None else times.cheap_at + verify_interval - now)
    return max(0.0, min(waits))


DamageKey = tuple[str, tuple[str, ...]]  # (version id, sorted damaged files)


def damage_key(*, version_id: str, files: list[str]) -> DamageKey:
    return (version_id, tuple(sorted(files)))


def report_window(*, verify_interval: float, deep_interval: float) -> float:
    """How long one report of a damage stands before the same damage is reported again."""
    return verify_interval if verify_interval > 0 else deep_interval


def should_report(*, now: float, key: DamageKey, reported: dict[DamageKey, float], window: float) -> bool:
    """True unless this exact damage (same version, same files) was reported within `window`."""
    at = reported.get(key)
    return at is None or now - at >= window
