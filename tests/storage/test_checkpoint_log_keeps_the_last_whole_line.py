"""The append-only checkpoint log: the last whole line wins, torn or foreign lines never do."""

from __future__ import annotations

from pathlib import Path

import pytest

import activities.storage.parts as parts
from activities.storage.parts import CheckpointLog, PartialPaths, load_checkpoint

SIZE = 10_000
IDENTITY = "size=10000;sha256=ab"


@pytest.fixture
def paths(tmp_path: Path) -> PartialPaths:
    data = tmp_path / "w.bin.partial"
    data.write_bytes(b"\0" * SIZE)
    return PartialPaths(data=data, checkpoint=tmp_path / "w.bin.parts.jsonl")


def load(paths: PartialPaths, *, identity: str = IDENTITY, has_digest: bool = True) -> list[tuple[int, int]]:
    return load_checkpoint(paths, identity=identity, size=SIZE, has_digest=has_digest)


def test_the_last_saved_ranges_come_back(paths: PartialPaths) -> None:
    log = CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[])
    log.save([(0, 100)])
    log.save([(0, 100), (5000, 6000)])
    log.close()
    assert load(paths) == [(0, 100), (5000, 6000)]


def test_a_line_torn_by_a_kill_falls_back_to_the_previous_one(paths: PartialPaths) -> None:
    log = CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[])
    log.save([(0, 100)])
    log.close()
    with open(paths.checkpoint, "ab") as f:
        f.write(b'{"done":[[0,100],[5000,60')  # the process died inside write()
    assert load(paths) == [(0, 100)]


def test_resuming_rewrites_the_log_so_a_torn_tail_cannot_swallow_new_lines(paths: PartialPaths) -> None:
    CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[(0, 100)]).close()
    with open(paths.checkpoint, "ab") as f:
        f.write(b'{"done":[[0,1')
    done = load(paths)
    log = CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=done)
    log.save([(0, 200)])
    log.close()
    assert load(paths) == [(0, 200)]
    assert len(paths.checkpoint.read_bytes().splitlines()) == 3  # header, resumed state, new line


def test_ranges_outside_the_file_are_not_trusted(paths: PartialPaths) -> None:
    log = CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[(0, 100)])
    log.save([(0, 100), (9000, SIZE + 1)])
    log.close()
    assert load(paths) == [(0, 100)]


def test_the_log_is_compacted_and_stays_small(paths: PartialPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "COMPACT_BYTES", 2048)
    log = CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[])
    for end in range(1, 1001):
        log.save([(0, end), (5000, 5000 + end)])
        assert paths.checkpoint.stat().st_size <= 2048
    log.close()
    assert load(paths) == [(0, 1000), (5000, 6000)]


def test_another_file_version_discards_the_partial(paths: PartialPaths) -> None:
    CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[(0, 100)]).close()
    assert load(paths, identity="size=10000;sha256=cd") == []
    assert not paths.data.exists() and not paths.checkpoint.exists()


def test_digestless_ranges_from_another_boot_are_not_trusted(
    paths: PartialPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[(0, 100)]).close()
    assert load(paths, has_digest=False) == [(0, 100)]  # same boot: trusted
    CheckpointLog(paths, identity=IDENTITY, size=SIZE, done=[(0, 100)]).close()
    monkeypatch.setattr(parts, "boot_id", lambda: "another-boot")
    assert load(paths, has_digest=False) == []


def test_a_header_that_is_not_ours_discards_the_partial(paths: PartialPaths) -> None:
    paths.checkpoint.write_text('{"format":1,"done":[[0,100]]}\n')  # the old single-object sidecar
    assert load(paths) == []
    assert not paths.data.exists()
