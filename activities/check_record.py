"""Continuous verification's record of its checks: `.modelferry/checks.json` in a version.

A node worker in Job mode lives minutes and a DaemonSet pod is rolled more often than the deep
interval, so check times kept only in memory would never reach a deep check. After each check
the verifier writes the version's times here (`modelferry.verify_schedule` encodes them); a new
worker starts from them. A new version (repair, update) has its own state directory, so its
schedule starts fresh.

The rules of the write:
- only into the version's existing state directory, modelferry's own: it is never created here
  (a version being pruned or not yet complete stays as it is) and never reached through a symlink;
- atomically (`activities.storage.manifest.write_json_atomic`, as the manifest beside it), so a
  reader never sees half a record and a prune's `rmtree` never meets a stray file;
- the version directory's own mtime does not change (only its state directory's), and that is
  the one `activities.files.prune_versions` orders versions by.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

from activities.storage.manifest import StateLayout, write_json_atomic
from modelferry.verify_schedule import CHECKS_FILE_NAME, CheckTimes, decode_check_times, encode_check_times

log = logging.getLogger(__name__)

_MAX_RECORD_BYTES = 4096  # a record is ~150 bytes; anything larger is not ours


def _record_path(version_dir: Path) -> Path:
    return StateLayout(version_dir).state_dir / CHECKS_FILE_NAME


def read_check_times(version_dir: Path, *, now: float, wall_offset: float) -> CheckTimes | None:
    """The recorded times of this version on the verifier's clock; None when there is no record or
    it cannot be read or understood (the version counts as never checked)."""
    path = _record_path(version_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        log.info("ignoring the check record %s: %s", path, error)
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(_MAX_RECORD_BYTES + 1)
        data = json.loads(raw) if len(raw) <= _MAX_RECORD_BYTES else None
    except (OSError, ValueError, RecursionError) as error:
        log.info("ignoring the check record %s: %s", path, error)
        return None
    times = decode_check_times(data, now=now, wall_offset=wall_offset)
    if times is None:
        log.info("ignoring the malformed check record %s", path)
    return times


def write_check_times(version_dir: Path, times: CheckTimes, *, wall_offset: float) -> None:
    """Record `times` for this version; OSError when it cannot (nothing is left behind then)."""
    state_dir = StateLayout(version_dir).state_dir
    if not stat.S_ISDIR(os.lstat(state_dir).st_mode):  # FileNotFoundError once the version is gone
        raise NotADirectoryError(f"{state_dir} is not a directory")
    write_json_atomic(state_dir / CHECKS_FILE_NAME, encode_check_times(times, wall_offset=wall_offset))
