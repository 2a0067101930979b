"""Would a model's bytes fit on a node? Decided from what is known, and "unknown" when nothing is.

Two measures, either may be missing:

- the node's `status.allocatable["ephemeral-storage"]` (a Kubernetes quantity): what the kubelet
  offers pods on its root filesystem. A model stored on another disk (`/raid`) is not bounded by it,
  so it is a hint, never a guarantee; a value that is not a quantity is reported, not guessed.
- the free bytes under the model's models root, measured on this machine: only in `modelferry dev`,
  where a node's filesystem is a local directory. When known, it decides, with the same reserve
  the download engine keeps (`activities.storage.diskspace.RESERVE_BYTES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from modelferry.quantity import InvalidQuantityError, parse_quantity

# The engine's head-room for directories, the manifest and filesystem metadata (the same figure
# as `activities.storage.diskspace.RESERVE_BYTES`, which this layer may not import).
RESERVE_BYTES = 16 * 1024 * 1024
EPHEMERAL_STORAGE = "ephemeral-storage"

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class Fit(StrEnum):
    FITS = "fits"
    DOES_NOT_FIT = "does not fit"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class FitDecision:
    fit: Fit
    reason: str


def decide_fit(*, needed_bytes: int, allocatable: str | None, local_free: int | None) -> FitDecision:
    """Whether `needed_bytes` fit a node with ephemeral-storage `allocatable` (a quantity, None when
    the node reports none) and `local_free` bytes free under its models root (None unless known)."""
    needs = f"needs {format_bytes(needed_bytes)}"
    allocatable_note, allocatable_fits = _allocatable(needed_bytes, allocatable)
    if local_free is not None:
        free = f"{format_bytes(local_free)} free under the models root"
        if needed_bytes + RESERVE_BYTES > local_free:
            return FitDecision(Fit.DOES_NOT_FIT, f"{needs}, {free}")
        return FitDecision(Fit.FITS, f"{needs}, {free}")
    if allocatable_fits is None:
        return FitDecision(Fit.UNKNOWN, f"{needs}; {allocatable_note}")
    return FitDecision(Fit.FITS if allocatable_fits else Fit.DOES_NOT_FIT, f"{needs}, {allocatable_note}")


def _allocatable(needed_bytes: int, allocatable: str | None) -> tuple[str, bool | None]:
    """(how the allocatable reads, whether the bytes fit it; None when that cannot be told)."""
    if allocatable is None:
        return f"the node reports no allocatable {EPHEMERAL_STORAGE}", None
    try:
        value = parse_quantity(allocatable)
    except InvalidQuantityError:
        return f"allocatable {EPHEMERAL_STORAGE} {allocatable!r} is not a quantity", None
    return f"{format_bytes(int(value))} allocatable {EPHEMERAL_STORAGE}", Decimal(needed_bytes) <= value


def format_bytes(n: float) -> str:
    """`1536` -> `1.5 KiB`: binary units, one decimal above bytes (as the download engine prints)."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
