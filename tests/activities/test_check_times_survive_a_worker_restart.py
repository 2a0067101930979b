"""Continuous verification records each version's check times in its state directory
(`.modelferry/checks.json`), so a restarted worker (a rolled DaemonSet pod, the next short-lived
Job) resumes the schedule: no deep check again before the deep interval, one after it. A record
that is missing, malformed or unwritable means "never checked" and never stops the loop, and the
record is never written where a download or a removal is at work."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

import activities.continuous_verify as cv
from activities.continuous_verify import ContinuousVerifier, models_roots_on_host
from modelferry.settings import Settings, load_settings
from modelferry.verify_schedule import CheckKind
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import deliver
from tests.storage.fakes import MemoryBackend

FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": bytes(range(256)) * 40}
VERIFY, DEEP = 600.0, 7 * 86400.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


@pytest.fixture
def model(settings: Settings, source: dict[str, MemoryBackend]) -> Path:
    """The served version directory of a model delivered to this node."""
    source["backend"] = MemoryBackend(dict(FILES), revision="main")
    version = deliver(settings, INPUT)
    link = settings.node.root / "raid/models/llama"
    return link.parent / ".modelferry-versions" / link.name / version


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[CheckKind]:
    """The kind of every check run, in order."""
    ran: list[CheckKind] = []
    original = cv.check_version

    def counting(held, kind, *, stop=None):
        ran.append(kind)
        return original(held, kind, stop=stop)

    monkeypatch.setattr(cv, "check_version", counting)
    return ran


class Node:
    """The node's wall clock; each worker process gets its own monotonic clock, starting anew."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.wall = 1_700_000_000.0

    def start_worker(self) -> ContinuousVerifier:
        started = self.wall
        return ContinuousVerifier(
            node="node-1",
            models_roots=models_roots_on_host(self.settings),
            verify_interval=VERIFY,
            deep_interval=DEEP,
            send=_no_send,
            clock=lambda: self.wall - started + 3.0,  # like time.monotonic: unrelated to the wall
            wall_clock=lambda: self.wall,
        )


async def _no_send(owner, report) -> None:
    raise AssertionError(f"a healthy model reported damage: {report}")


def _record(model: Path) -> Path:
    return model / ".modelferry" / "checks.json"


async def test_a_restarted_worker_deep_checks_again_only_after_the_deep_interval(settings, model, checks):
    node = Node(settings)
    first = node.start_worker()
    await first.run_pass()  # first sight: cheap
    node.wall += DEEP
    await first.run_pass()  # deep
    assert checks == [CheckKind.CHEAP, CheckKind.DEEP]
    assert json.loads(_record(model).read_text())["deep_at"] == node.wall

    node.wall += DEEP / 2
    await node.start_worker().run_pass()  # restarted: the cheap check is due, the deep one is not
    assert checks[2:] == [CheckKind.CHEAP]
    node.wall += DEEP / 2
    await node.start_worker().run_pass()  # restarted again, a deep interval after the last deep check
    assert checks[3:] == [CheckKind.DEEP]


async def test_the_deep_clock_runs_from_first_sight_across_short_lived_workers(settings, model, checks):
    """Job mode: each worker lives minutes, yet the model is hashed a deep interval after the
    first worker saw it."""
    node = Node(settings)
    for _ in range(7):
        await node.start_worker().run_pass()
        node.wall += DEEP / 7
    await node.start_worker().run_pass()
    assert checks == [CheckKind.CHEAP] * 7 + [CheckKind.DEEP]


async def test_a_record_in_the_future_or_malformed_is_never_fatal(settings, model, checks):
    node = Node(settings)
    record = _record(model)
    record.write_text('{"format": 1, "first_seen": 1e300, "cheap_at": 1e300, "deep_at": 1e300}')
    worker = node.start_worker()
    await worker.run_pass()  # clamped to now: just checked
    assert checks == []
    node.wall += VERIFY
    await worker.run_pass()
    assert checks == [CheckKind.CHEAP]  # one interval late at most

    for garbage in ("{not json", "[]", '{"format": 1}', "\xff\xfe", "[" * 5000):
        record.write_text(garbage, errors="surrogateescape")
        checks.clear()
        await node.start_worker().run_pass()  # never checked: first sight, a cheap check
        assert checks == [CheckKind.CHEAP], garbage
        assert json.loads(record.read_text())["format"] == 1  # and a good record again


async def test_an_unwritable_record_leaves_nothing_behind_and_checks_go_on(settings, model, checks, caplog):
    caplog.set_level(logging.DEBUG, logger="activities.continuous_verify")
    record = _record(model)
    record.mkdir()  # something in the way that a rename cannot replace
    node = Node(settings)
    worker = node.start_worker()
    await worker.run_pass()
    node.wall += VERIFY
    await worker.run_pass()
    assert checks == [CheckKind.CHEAP, CheckKind.CHEAP]
    assert sorted(p.name for p in record.parent.iterdir()) == ["checks.json", "lock", "manifest.json"]
    said = [r.levelno for r in caplog.records if "could not record the checks" in r.getMessage()]
    assert said == [logging.WARNING, logging.DEBUG]  # warned once, not every interval


async def test_no_record_is_written_while_a_download_holds_the_version(settings, model, monkeypatch):
    original = cv.check_version
    held: list[int] = []

    def check_while_a_download_starts(version, kind, *, stop=None):
        fd = os.open(model / ".modelferry" / "lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the engine holds it while it heals the version in place
        held.append(fd)
        return original(version, kind, stop=stop)

    monkeypatch.setattr(cv, "check_version", check_while_a_download_starts)
    try:
        await Node(settings).start_worker().run_pass()
    finally:
        for fd in held:
            os.close(fd)
    assert held and not _record(model).exists()


async def test_a_version_removed_during_its_check_is_not_recreated(settings, model, monkeypatch):
    original = cv.check_version

    def check_then_remove(version, kind, *, stop=None):
        found = original(version, kind, stop=stop)
        shutil.rmtree(model)  # e.g. removed while the link still named it
        return found

    monkeypatch.setattr(cv, "check_version", check_then_remove)
    verifier = Node(settings).start_worker()
    verifier._send = _ignore  # its disappearance is damage; not what this test is about
    await verifier.run_pass()
    assert not model.exists()


async def _ignore(owner, report) -> None:
    pass
