"""Free-space checks before the first byte, and byte counts people can read.

A model that cannot fit should fail at once with "needs X, Y free", not after an hour with a
half-written file and ENOSPC. The check counts only what is still missing: bytes already
allocated to resumable partial files are not needed twice.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from modelferry.errors import InsufficientDiskSpaceError

# Head-room for directories, the manifest and filesystem metadata.
RESERVE_BYTES = 16 * 1024 * 1024

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """`1536` -> `1.5 KiB`; binary units, one decimal above bytes."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent (the filesystem the files will land on)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding `path`."""
    stats = os.statvfs(existing_ancestor(path))
    return stats.f_bavail * stats.f_frsize


def allocated_bytes(path: Path) -> int:
    """Bytes the filesystem already gave to `path` (0 if it does not exist)."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def check_free_space(dest: Path, *, needed: int) -> None:
    """Raise InsufficientDiskSpaceError when `needed` bytes (plus a reserve) do not fit."""
    if needed <= 0:
        return
    free = free_bytes(dest)
    if needed + RESERVE_BYTES > free:
        raise InsufficientDiskSpaceError(
            f"{dest}: needs {human_bytes(needed)}, {human_bytes(free)} free on its filesystem"
        )


def disk_full_error(error: OSError, *, where: Path) -> InsufficientDiskSpaceError | None:
    """Map ENOSPC/EDQUOT raised mid-download to the typed error; None for other OSErrors."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientDiskSpaceError(
            f"{where}: the filesystem filled up during the download ({human_bytes(free_bytes(where))} free)"
        )
    return None
