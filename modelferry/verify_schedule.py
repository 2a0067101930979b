"""When continuous verification checks a model, and when it reports damage: pure decisions.

A node worker checks every model it holds (`activities.continuous_verify`): a *cheap* check
(manifest readable, every file present with its recorded size, nothing swapped for a symlink) once
when it first sees the model, then every `verify_interval`; a *deep* check (every byte hashed)
every `deep_verify_interval` from the moment it first saw the model. The times are the worker's
own (monotonic, in memory): a healthy model is never written to, so nothing records a check on
disk, and a restarted worker starts its deep clock again.

Damage is reported to the model's workflow once, and again only after `verify_interval` if it is
still there (the workflow may have missed it, or the repair failed): a report per pass would flood
the workflow's history while a repair runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CheckKind(StrEnum):
    CHEAP = "cheap"  # presence, sizes, no symlink: stat calls only
    DEEP = "deep"  # every byte hashed against the manifest's digests


@dataclass(slots=True)
class CheckTimes:
    """What the verifier remembers of one model version (monotonic seconds)."""

    first_seen: float
    cheap_at: float | None = None  # the last check of either kind (a deep check is also a cheap one)
    deep_at: float | None = None


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
